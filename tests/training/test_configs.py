"""The shipped training configurations (training/configs/*.yaml) load and build their networks."""

from __future__ import annotations

import pytest
import yaml

from engine.errors import ConfigError
from engine.signal import SignalSpec
from training.build import NETWORKS, build_models
from training.config import CONFIG_DIR, config_from_dict, load_train_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_the_five_configs_ship():
    assert SHIPPED == ["bundled", "bundled_anchor", "bundled_wide", "default", "tiny"]


def test_the_anchored_continuation_is_the_bundled_recipe_but_for_its_stage1_length_rate_and_seed():
    bundled, anchor = (yaml.safe_load((CONFIG_DIR / f"{n}.yaml").read_text()) for n in ("bundled", "bundled_anchor"))
    stage1 = anchor["stages"]["stage1"]
    assert (stage1["steps"], stage1["lr"], anchor["seed"]) == (1500, 0.0005, 4321)
    for cfg in (bundled, anchor):
        del cfg["seed"], cfg["stages"]["stage1"]["steps"], cfg["stages"]["stage1"]["lr"]
    assert anchor == bundled


def test_the_widened_continuation_is_the_anchored_recipe_but_for_its_content_width_and_stage1_length():
    anchor, wide = (yaml.safe_load((CONFIG_DIR / f"{n}.yaml").read_text()) for n in ("bundled_anchor", "bundled_wide"))
    assert (wide["models"]["content_encoder"]["out_dim"], wide["stages"]["stage1"]["steps"]) == (64, 2500)
    for cfg in (anchor, wide):
        del cfg["models"]["content_encoder"]["out_dim"], cfg["stages"]["stage1"]["steps"]
    assert wide == anchor


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_and_builds_every_network(name: str):
    cfg = load_train_config(name)
    models = build_models(cfg.models, SignalSpec(lookahead_frames=cfg.lookahead_frames), NETWORKS)
    assert set(models) == set(NETWORKS)
    assert all(sum(p.numel() for p in m.parameters()) > 0 for m in models.values())
    assert set(cfg.stages) == {"stage1", "stage2", "vocoder"}


def test_the_bundled_model_holds_out_two_espeak_speakers_and_two_whole_festival_voices():
    """Issues 12 and 14: corpus v3 speakers never trained on, so that the benchmark can tell seen
    from unseen voices: 0019 and 0020 as before, and two Festival voices with every timbre made
    from them (no variant of an unseen voice is heard in training)."""
    from training.corpus.profiles import CORPUS_SPEAKERS, FestivalSpeaker

    held = load_train_config("bundled").exclude_speakers
    speakers = {f"{11 + k:04d}": s for k, s in enumerate(CORPUS_SPEAKERS)}
    espeak = [s for s in held if not isinstance(speakers[s], FestivalSpeaker)]
    voices = {speakers[s].voice for s in held if isinstance(speakers[s], FestivalSpeaker)}
    assert espeak == ["0019", "0020"] and len(voices) == 2
    for voice in voices:
        made = [n for n, s in speakers.items() if isinstance(s, FestivalSpeaker) and s.voice == voice]
        assert len(made) == 3 and set(made) <= set(held)


def test_a_stage_changes_network_options_for_its_own_run_only():
    data = {"name": "x", "seed": 0, "models": {"generator": {"channels": 16, "n_layers": 2}},
            "stages": {"stage1": {"steps": 1, "lr": 0.1, "trainable": ["generator"], "weights": {}},
                       "stage2": {"steps": 1, "lr": 0.1, "trainable": ["generator"], "weights": {},
                                  "models": {"generator": {"source_skip": True}, "vocoder": {"order": 8}}}}}
    cfg = config_from_dict(data)
    assert cfg.for_stage("stage1").models == cfg.models
    assert cfg.for_stage("stage2").models == {"generator": {"channels": 16, "n_layers": 2, "source_skip": True},
                                              "vocoder": {"order": 8}}
    assert cfg.models["generator"] == {"channels": 16, "n_layers": 2}
    data["stages"]["stage2"]["models"] = {"genrator": {"source_skip": True}}
    with pytest.raises(ConfigError, match="stages.stage2.models"):
        config_from_dict(data)
