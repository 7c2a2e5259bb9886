"""The two-stage trainer and the vocoder trainer learn, resume exactly and scale out.

Trained on the tiny synthetic corpus (fixture `tiny_corpus`) with the tiny config.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import training.loop
from engine.errors import ConfigError, ModelError
from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_checkpoint, load_weights
from training.config import config_from_dict, load_train_config
from training.data.batches import VALIDATION, MelCorpus, draw_batch
from training.loop import STAGE_NETWORKS, train, training_speakers
from training.metrics import conversion_accuracy, emotion_accuracy, strength_order
from training.stages import Stage2, Vocoder

pytestmark = pytest.mark.slow


def _losses(run: Path, tag: str) -> list[float]:
    with open(run / "scalars.csv") as f:
        return [float(v) for _, t, v in csv.reader(f) if t == f"train/{tag}"]


def _models(ckpt_path, stage) -> dict:
    ckpt = load_checkpoint(ckpt_path, stage)
    cfg = ckpt["config"]
    models = build_models(cfg["models"], SignalSpec(), STAGE_NETWORKS[stage])
    load_weights(models, ckpt)
    return {n: m.eval() for n, m in models.items()}


@pytest.fixture(scope="module")
def cfg():
    return load_train_config("tiny")


STAGE1_STEPS = 600
"""Twice tiny.yaml's 300: Ee reads the log-mel through the cepstral lifter, so the pitch that
the harmonics spread over 80 bands reaches it only through 2 pitch rows, and recognition
learns slower. Held-out emotion accuracy on this corpus: 0.225 after 300 steps (0.525 before
the lifter), 0.6 after 600."""


@pytest.fixture(scope="module")
def runs(tiny_corpus, cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    s1 = train("stage1", _short(cfg, "stage1", STAGE1_STEPS, cfg.ckpt_every, log_every=cfg.log_every), tiny_corpus,
               root / "s1", progress=False)
    s2 = train("stage2", cfg, tiny_corpus, root / "s2", init=s1["checkpoint"], progress=False)
    return root, s1, s2


@pytest.fixture(scope="module")
def held_out(tiny_corpus):
    """The test split: 2 sentences × 5 emotions × 4 speakers never seen in training."""
    return MelCorpus(tiny_corpus, SignalSpec(), "test", conversion=True)


def test_stage1_loss_falls(runs):
    totals = _losses(runs[0] / "s1", "total_main")
    assert len(totals) >= 30
    assert np.mean(totals[-5:]) < 0.7 * np.mean(totals[:5]), totals


def test_stage1_recognition_beats_chance_on_held_out(runs, held_out):
    models = _models(runs[1]["checkpoint"], "stage1")
    acc = emotion_accuracy(models, held_out)
    order = strength_order(models, held_out)
    # 40 utterances: 13 or more correct has probability < 0.05 under chance (0.2).
    assert acc >= 13 / 40, f"emotion accuracy {acc:.2f} (chance 0.2)"
    assert order > 0.6, f"Rs ranks emotional above neutral in {order:.2f} of pairs"


@torch.no_grad()
def _conversion_losses(models, batch) -> dict[str, float]:
    """Stage II's consistency losses (content, category, strength) on one batch, and their weighted sum."""
    weights = load_train_config("tiny").stages["stage2"].weights
    losses = {k: float(v) for k, v in Stage2(models)(batch).items() if k in ("cc", "ecc", "esc")}
    return {**losses, "sum": sum(weights[k] * v for k, v in losses.items())}


def test_stage2_converts_toward_the_reference_emotion(runs, held_out, tiny_corpus):
    stage1, stage2 = _models(runs[1]["checkpoint"], "stage1"), _models(runs[2]["checkpoint"], "stage2")
    before, after = conversion_accuracy(stage1, held_out), conversion_accuracy(stage2, held_out)
    assert after > before, f"Rc on converted speech: {before:.2f} before Stage II, {after:.2f} after"
    train_set = MelCorpus(tiny_corpus, SignalSpec(), "train", conversion=True)
    seen = draw_batch(train_set, 20, 96, seed=1, step=0, stream=VALIDATION)
    fit_before, fit_after = _conversion_losses(stage1, seen), _conversion_losses(stage2, seen)
    # measured cc 0.217 -> 0.159 in tiny.yaml's 60 steps. The category term does not fall on this corpus
    # since Ee reads from each speaker's neutral voice (1.02 -> 1.18 on this batch; read as it was,
    # 1.58 -> 0.99): Stage I's conversions already score what Stage II reached before, while the
    # held-out accuracy above rises (0.57 -> 0.73; read as it was, 0.44 -> 0.40)
    assert fit_after["cc"] < 0.85 * fit_before["cc"], f"content consistency {fit_before} -> {fit_after}"
    unseen = draw_batch(held_out, 20, 96, seed=1, step=0, stream=VALIDATION)
    assert _conversion_losses(stage2, unseen)["sum"] < _conversion_losses(stage1, unseen)["sum"]


def test_stage2_moves_conversions_by_the_references_emotion_offset_through_the_generator(runs, tiny_corpus):
    """The emotion-move losses are finite, scored, and reach the generator only (the encoders are frozen)."""
    models = {n: m.train() for n, m in _models(runs[1]["checkpoint"], "stage1").items()}
    batch = draw_batch(MelCorpus(tiny_corpus, SignalSpec(), "train", limit=60, conversion=True), 10, 96, seed=3, step=0)
    assert batch.emotion_offset.shape == (10, SignalSpec().n_mels + 2)
    losses = Stage2(models)(batch)
    for key in ("move_mel", "move_lf0"):
        assert torch.isfinite(losses[key]) and 0.0 < losses[key].item() < 5.0, (key, losses[key])
    (losses["move_mel"] + losses["move_lf0"]).backward()
    grads = {n: sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None) for n, m in models.items()}
    assert grads["generator"] > 0.0 and grads["content_encoder"] == grads["emotion_encoder"] == 0.0, grads


def test_stage2_parallel_losses_reach_the_generator_and_are_reconstruction_for_the_item_itself(runs, tiny_corpus):
    """Against a partner under another emotion the parallel losses are finite, reach the generator
    only and the log-mel's exceeds the item's own reconstruction; with the item as its own partner
    they equal it. (The log-F0 term need not exceed: same speaker, and an encoder reading from the
    speaker's neutral voice gives the partner's contour about as well, 0.104 against 0.113.)"""
    models = {n: m.eval() for n, m in _models(runs[1]["checkpoint"], "stage1").items()}
    corpus = MelCorpus(tiny_corpus, SignalSpec(), "train", conversion=True)
    losses = Stage2(models)(draw_batch(corpus, 10, 96, seed=3, step=0))
    keys = ("rec", "lf0", "ceps_spread", "spread", "slope_spread")
    assert losses["par_rec"] > losses["rec"], losses
    sum(losses[f"par_{k}"] for k in keys).backward()
    grads = {n: sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None) for n, m in models.items()}
    assert grads["generator"] > 0.0 and grads["content_encoder"] == grads["emotion_encoder"] == 0.0, grads
    corpus.partners = [np.zeros(0, np.int64)] * len(corpus)
    with torch.no_grad():
        alone = Stage2(models)(draw_batch(corpus, 10, 96, seed=3, step=0))
    for key in (*keys, "vuv"):
        assert torch.allclose(alone[f"par_{key}"], alone[key]), (key, alone[f"par_{key}"], alone[key])


def test_stage2_noise_losses_ask_a_stage1_generator_for_silence_through_the_generator_only(runs, tiny_corpus):
    """Stage I never shows the generator noise alone: its output on it sits far above the log floor
    (measured: liftered L1 5.1 nepers, voicing BCE 0.43); the losses reach the generator only."""
    models = {n: m.train() for n, m in _models(runs[1]["checkpoint"], "stage1").items()}
    corpus = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=60, conversion=True)
    losses = Stage2(models)(draw_batch(corpus, 10, 96, seed=3, step=0))
    assert losses["noise_rec"] > 1.0 and 0.05 < losses["noise_vuv"] < 5.0, losses
    (losses["noise_rec"] + losses["noise_vuv"]).backward()
    grads = {n: sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None) for n, m in models.items()}
    assert grads["generator"] > 0.0 and grads["content_encoder"] == grads["emotion_encoder"] == 0.0, grads


def test_stage2_with_the_source_skip_restarts_the_log_mel_rows_of_a_stage1_without_it(runs):
    """A Stage I generator's log-mel rows predicted the whole log-mel; given the source skip they
    predict the change from the source: they and the spectral map restart at zero, the new quieting
    gate starts closed, the pitch rows and the rest load.
    A checkpoint trained with the skip loads as saved."""
    ckpt = load_checkpoint(runs[1]["checkpoint"], "stage1")
    skip = {**ckpt["config"]["models"], "generator": {**ckpt["config"]["models"]["generator"], "source_skip": True}}
    models = build_models(skip, SignalSpec(), STAGE_NETWORKS["stage2"])
    training.loop._initialise(models, ckpt, "stage2")
    saved, n = ckpt["models"]["generator"], SignalSpec().n_mels
    proj = models["generator"].proj
    assert proj.weight[:n].abs().max() == 0 and proj.bias[:n].abs().max() == 0
    assert models["generator"].spectral_film.weight.abs().max() == 0
    assert float(models["generator"].quiet.bias.detach()) == -8.0  # the new quieting gate, closed
    assert saved["proj.weight"][:n].abs().max() > 0.01
    assert torch.equal(proj.weight[n:], saved["proj.weight"][n:])
    assert torch.equal(models["generator"].blocks[0].conv.conv.weight, saved["blocks.0.conv.conv.weight"])
    with torch.no_grad():
        proj.weight.add_(1.0)
    trained = {**ckpt, "config": {**ckpt["config"], "models": skip},
               "models": {**ckpt["models"], "generator": models["generator"].state_dict()}}
    again = build_models(skip, SignalSpec(), STAGE_NETWORKS["stage2"])
    training.loop._initialise(again, trained, "stage2")
    assert torch.equal(again["generator"].proj.weight, proj.weight)


def test_stage2_with_the_source_view_adds_a_zero_conv_to_a_stage1_generator(runs):
    """A Stage II generator given the source view (and the skip) after a Stage I without them: the
    view's conv starts at zero, the rest loads; a generator mismatched otherwise is refused."""
    ckpt = load_checkpoint(runs[1]["checkpoint"], "stage1")
    gen_cfg = {**ckpt["config"]["models"]["generator"], "source_skip": True, "source_input": True}
    models = build_models({**ckpt["config"]["models"], "generator": gen_cfg}, SignalSpec(), STAGE_NETWORKS["stage2"])
    training.loop._initialise(models, ckpt, "stage2")
    gen, saved = models["generator"], ckpt["models"]["generator"]
    assert gen.source_pre.conv.weight.abs().max() == 0 and gen.source_pre.conv.bias.abs().max() == 0
    assert torch.equal(gen.conv_pre.conv.weight, saved["conv_pre.conv.weight"])
    wider = {**gen_cfg, "channels": gen_cfg.get("channels", 128) * 2}
    models = build_models({**ckpt["config"]["models"], "generator": wider}, SignalSpec(), STAGE_NETWORKS["stage2"])
    with pytest.raises((ModelError, RuntimeError)):
        training.loop._initialise(models, ckpt, "stage2")


def test_stage2_trains_the_levelled_skip_and_view_from_a_plain_stage1(runs, cfg, tiny_corpus, tmp_path):
    """The bundled recipe's way to the skip: Stage I without it, Stage II with the skip, the view and
    the levelled source (stages.stage2.models); its checkpoint records them and its losses are finite."""
    options = {"source_skip": True, "source_input": True, "level_ref": -4.0}
    stage2 = dataclasses.replace(cfg.stages["stage2"], steps=4, models={"generator": options})
    short = dataclasses.replace(cfg, stages={**cfg.stages, "stage2": stage2}, ckpt_every=4, log_every=2)
    result = train("stage2", short, tiny_corpus, tmp_path / "s2", init=runs[1]["checkpoint"], progress=False)
    ckpt = load_checkpoint(result["checkpoint"], "stage2")
    assert {k: ckpt["config"]["models"]["generator"][k] for k in options} == options
    assert "source_pre.conv.weight" in ckpt["models"]["generator"]
    assert all(math.isfinite(v) for v in _losses(tmp_path / "s2", "total_main"))


def test_stage2_requires_a_stage1_checkpoint(tiny_corpus, cfg, runs, tmp_path):
    with pytest.raises(ModelError, match="expected stage1"):
        train("stage2", cfg, tiny_corpus, tmp_path / "x", init=runs[2]["checkpoint"], progress=False)


def test_stage1_sets_the_encoders_centre_to_the_training_speakers_mean_neutral_voice(runs, tiny_corpus):
    centre = load_checkpoint(runs[1]["checkpoint"], "stage1")["models"]["emotion_encoder"]["centre"]
    corpus = MelCorpus(tiny_corpus, SignalSpec(), "train")
    torch.testing.assert_close(centre, corpus.anchor_centre)
    speakers = np.array([u.speaker for u in corpus.utts])
    assert len({tuple(a.tolist()) for a in corpus.anchors}) == len(set(speakers))  # one anchor per speaker
    assert float(centre[:-1].mean()) < -2 and 4.0 < float(centre[-1]) < 6.5  # a log-mel level and a log-F0


def test_an_encoder_from_before_anchors_continues_in_stage1_and_is_refused_by_stage2(runs, cfg, tiny_corpus,
                                                                                     tmp_path):
    ckpt = load_checkpoint(runs[1]["checkpoint"], "stage1")
    del ckpt["models"]["emotion_encoder"]["centre"]
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    with pytest.raises(ModelError, match="without a neutral anchor"):
        train("stage2", cfg, tiny_corpus, tmp_path / "s2", init=old, progress=False)
    result = train("stage1", _short(cfg, "stage1", 2, 2), tiny_corpus, tmp_path / "s1", init=old, progress=False)
    continued = load_checkpoint(result["checkpoint"], "stage1")["models"]
    torch.testing.assert_close(continued["emotion_encoder"]["centre"],
                               MelCorpus(tiny_corpus, SignalSpec(), "train").anchor_centre)
    before, after = ckpt["models"]["emotion_encoder"]["inp.weight"], continued["emotion_encoder"]["inp.weight"]
    assert (after - before).abs().max() < 0.05 * before.abs().max()  # two steps from the old weights, not new ones


def _short(cfg, stage, steps, every, log_every=1):
    stages = {**cfg.stages, stage: dataclasses.replace(cfg.stages[stage], steps=steps)}
    return dataclasses.replace(cfg, stages=stages, ckpt_every=every, log_every=log_every)


def test_stage1_continues_a_stage2_into_a_wider_content_code(runs, tiny_corpus, cfg, tmp_path):
    """The bundled recipe's widening (training.widen): a Stage I continuation of the Stage II
    checkpoint with twice the content code; its networks train from the Stage II's (the wider code's
    generator columns leave zero), a fresh adversary beside them."""
    models = {**cfg.models, "content_encoder": {**cfg.models["content_encoder"], "out_dim": 16}}
    wide = dataclasses.replace(_short(cfg, "stage1", 20, 100), models=models)
    result = train("stage1", wide, tiny_corpus, tmp_path / "w", init=runs[2]["checkpoint"], progress=False)
    trained, before = load_checkpoint(result["checkpoint"])["models"], load_checkpoint(runs[2]["checkpoint"])["models"]
    conv = trained["generator"]["conv_pre.conv.weight"]
    assert conv.shape[1] == 16 + 4 and conv[:, 8:16].abs().max() > 0
    assert float((conv[:, :8] - before["generator"]["conv_pre.conv.weight"][:, :8]).abs().max()) < 0.1
    assert trained["adversary"]["net.0.weight"].shape[1] == 16
    with pytest.raises(ModelError, match="content code is 16 wide, the config's 8"):
        train("stage2", cfg, tiny_corpus, tmp_path / "s2", init=result["checkpoint"], progress=False)


def test_resume_is_exact(tiny_corpus, cfg, tmp_path):
    straight = train("stage1", _short(cfg, "stage1", 6, 100), tiny_corpus, tmp_path / "a", progress=False)
    train("stage1", _short(cfg, "stage1", 3, 3), tiny_corpus, tmp_path / "b", progress=False)
    resumed = train("stage1", _short(cfg, "stage1", 6, 3), tiny_corpus, tmp_path / "b", progress=False)
    a = load_checkpoint(straight["checkpoint"])["models"]
    b = load_checkpoint(resumed["checkpoint"])["models"]
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    assert _losses(tmp_path / "a", "total_main") == _losses(tmp_path / "b", "total_main")


@torch.no_grad()
def _vocoder_losses(models, batch) -> dict[str, float]:
    torch.manual_seed(0)  # the objective draws the noise table's start positions
    return {k: float(v) for k, v in Vocoder(models)(batch).items()}


def test_vocoder_stage_learns(tiny_corpus, cfg, tmp_path):
    """The vocoder objective (WORLD-envelope L1 of its filters, multi-resolution STFT of its
    audio) on a fixed held-out batch, at initialisation and after the tiny config's 120 steps
    on 80 training utterances (the envelope analyses cost 0.3 s each)."""
    order = cfg.models["vocoder"]["order"]
    held_out = MelCorpus(tiny_corpus, SignalSpec(), "test", envelope_order=order, limit=16)
    batch = draw_batch(held_out, 8, 24, seed=1, step=0, stream=VALIDATION)
    assert batch.envelope.shape == (8, 2 * order, 24)
    torch.manual_seed(cfg.seed)  # the trainer's initial weights: same seed, same construction order
    initial = build_models(cfg.models, SignalSpec(), STAGE_NETWORKS["vocoder"])
    stage = dataclasses.replace(cfg.stages["vocoder"], max_utterances=80)
    result = train("vocoder", dataclasses.replace(cfg, stages={"vocoder": stage}), tiny_corpus, tmp_path,
                   progress=False)
    trained = _models(result["checkpoint"], "vocoder")
    before, after = _vocoder_losses(initial, batch), _vocoder_losses(trained, batch)
    assert set(before) == {"env", "stft"}
    assert after["env"] < 0.7 * before["env"], f"held-out envelope L1 {before['env']:.2f} -> {after['env']:.2f}"
    assert after["stft"] < 0.9 * before["stft"], f"held-out STFT loss {before['stft']:.2f} -> {after['stft']:.2f}"
    assert set(load_checkpoint(result["checkpoint"], "vocoder")["models"]) == {"vocoder"}


@torch.no_grad()
def test_vocoder_objective_without_stft_weight_skips_the_synthesis(held_out):
    """weights {env} alone: "stft" is reported as 0 and the audio is never rendered."""
    torch.manual_seed(0)
    models = build_models(load_train_config("tiny").models, SignalSpec(), ("vocoder",))
    batch = draw_batch(held_out, 2, 24, seed=1, step=0, stream=VALIDATION)
    batch.envelope = torch.zeros(2, 2 * models["vocoder"].synth.order, 24)  # held_out has no envelope targets
    losses = Vocoder(models, spectral=False)(batch)
    assert float(losses["stft"]) == 0.0 and float(losses["env"]) > 0.0


def test_truncated_checkpoint_is_one_line_error(runs, tmp_path):
    data = Path(runs[1]["checkpoint"]).read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable checkpoint") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)


def test_data_parallel_on_two_gloo_processes(tiny_corpus, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "engine.cli", "train", "stage1", "--config", "tiny", "--data", str(tiny_corpus),
           "--out", str(tmp_path), "--steps", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2
    assert result["max_rank_weight_diff"] == 0.0
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["last.pt", "stage1.pt"]


def test_checkpoints_record_the_training_speakers_and_exclude_speakers_are_never_loaded(tiny_corpus, cfg, tmp_path,
                                                                                       monkeypatch):
    """exclude_speakers holds speakers out (the benchmark's unseen voices): no corpus the
    trainer loads (train and evaluation splits) holds them, and the checkpoint's "speakers"
    (which export copies into the manifest) lists the others."""
    all_speakers = sorted({u.speaker for u in MelCorpus(tiny_corpus, SignalSpec(), "evaluation").utts})
    assert len(all_speakers) == 4
    held = all_speakers[-1]
    loaded = []

    class Recorded(MelCorpus):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            loaded.append(self)

    monkeypatch.setattr(training.loop, "MelCorpus", Recorded)
    short = dataclasses.replace(_short(cfg, "stage1", 2, 100), exclude_speakers=(held,))
    assert training_speakers(tiny_corpus, short) == all_speakers[:-1]
    result = train("stage1", short, tiny_corpus, tmp_path, progress=False)
    assert len(loaded) == 2 and all(len(c) > 0 for c in loaded)
    assert [sorted({u.speaker for u in c.utts}) for c in loaded] == [all_speakers[:-1]] * 2
    assert result["speakers"] == all_speakers[:-1]
    assert load_checkpoint(result["checkpoint"], "stage1")["speakers"] == all_speakers[:-1]


def test_training_speakers_are_the_configured_ones_minus_the_excluded(tiny_corpus, cfg):
    """Speakers may be written 19, "19" or "0019"; unknown names select nothing."""
    chosen = config_from_dict({**cfg.to_dict(), "speakers": [11, "12", "0013"], "exclude_speakers": ["12"]})
    assert chosen.speakers == ("0011", "0012", "0013") and chosen.exclude_speakers == ("0012",)
    assert training_speakers(tiny_corpus, chosen) == ["0011", "0013"]
    assert training_speakers(tiny_corpus, dataclasses.replace(cfg, exclude_speakers=("0099",))) == \
        ["0011", "0012", "0013", "0014"]


def test_excluding_every_speaker_is_a_config_error(tiny_corpus, cfg, tmp_path):
    short = dataclasses.replace(_short(cfg, "stage1", 2, 100), exclude_speakers=("0011", "0012", "0013", "0014"))
    with pytest.raises(ConfigError, match="no train utterance of the training speakers"):
        train("stage1", short, tiny_corpus, tmp_path, progress=False)


def test_non_positive_max_utterances_is_a_config_error(cfg):
    data = cfg.to_dict()
    data["stages"]["vocoder"]["max_utterances"] = 0
    with pytest.raises(ConfigError, match=r"stages\.vocoder\.max_utterances"):
        config_from_dict(data)
