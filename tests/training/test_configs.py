"""The shipped training configurations (training/configs/*.yaml) load and build their networks."""

from __future__ import annotations

import pytest

from engine.signal import SignalSpec
from training.build import NETWORKS, build_models
from training.config import CONFIG_DIR, load_train_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_the_three_configs_ship():
    assert SHIPPED == ["bundled", "default", "tiny"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_and_builds_every_network(name: str):
    cfg = load_train_config(name)
    models = build_models(cfg.models, SignalSpec(lookahead_frames=cfg.lookahead_frames), NETWORKS)
    assert set(models) == set(NETWORKS)
    assert all(sum(p.numel() for p in m.parameters()) > 0 for m in models.values())
    assert set(cfg.stages) == {"stage1", "stage2", "vocoder"}


def test_the_bundled_model_holds_out_two_speakers():
    """Issue 12: trained on eight of the ten corpus speakers, so that the benchmark can tell
    seen from unseen voices."""
    assert load_train_config("bundled").exclude_speakers == ("0019", "0020")
