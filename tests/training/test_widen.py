"""A trained content code widened for a Stage I continuation (training.widen, training.loop._initialise)."""

from __future__ import annotations

import copy

import pytest
import torch

import training.loop
from engine.errors import ModelError
from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_weights
from training.config import load_train_config
from training.loop import STAGE_NETWORKS
from training.widen import content_width, widen_checkpoint

NARROW, WIDE = 8, 20


def _models(width: int, stage: str = "stage1", seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = copy.deepcopy(load_train_config("tiny").models)
    cfg["content_encoder"]["out_dim"] = width
    return build_models(cfg, SignalSpec(), STAGE_NETWORKS[stage])


def _checkpoint(stage: str = "stage1") -> dict:
    """A narrow checkpoint with trained-looking (random, non-zero) weights."""
    models = _models(NARROW, seed=1)
    return {"stage": stage, "models": {n: m.state_dict() for n, m in models.items()}}


def _frames(models: dict, mel: torch.Tensor, pitch: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
    return models["generator"](models["content_encoder"](mel), pitch, emotion, mel)


def _inputs(frames: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel (1, n_mels, T), tracker features (1, 4, T), embedding (1, D)."""
    g = torch.Generator().manual_seed(2)
    mel = torch.randn(1, SignalSpec().n_mels, frames, generator=g) - 4.0
    lf0 = 5.0 + 0.1 * torch.randn(frames, generator=g)
    pitch = torch.stack([torch.ones(frames), lf0, torch.full((frames,), 5.0), torch.full((frames,), 0.1)])[None]
    return mel, pitch, torch.randn(1, 16, generator=g)


def test_a_widened_checkpoint_converts_exactly_as_the_narrow_one():
    ckpt = _checkpoint()
    narrow = _models(NARROW)
    load_weights(narrow, ckpt)
    wide = _models(WIDE)
    training.loop._initialise(wide, copy.deepcopy(ckpt), "stage1")
    with torch.no_grad():
        a = _frames({n: m.eval() for n, m in narrow.items()}, *_inputs())
        b = _frames({n: m.eval() for n, m in wide.items()}, *_inputs())
    assert b.shape == a.shape
    assert float((a - b).abs().max()) < 1e-5
    proj = wide["content_encoder"].stack.proj
    assert proj.weight[NARROW:].abs().min() > 0 and proj.bias[NARROW:].abs().max() == 0
    conv = wide["generator"].conv_pre.conv.weight  # (C, content + 4 pitch rows, k)
    assert conv[:, NARROW:WIDE].abs().max() == 0
    assert torch.equal(conv[:, WIDE:], ckpt["models"]["generator"]["conv_pre.conv.weight"][:, NARROW:])


def test_the_new_rows_of_the_code_learn():
    """The reconstruction's gradient reaches the generator's new columns at once (the code's new rows
    are non-zero), and the code's new rows as soon as those columns have weight."""
    wide = _models(WIDE)
    training.loop._initialise(wide, _checkpoint(), "stage1")
    mel, pitch, emotion = _inputs()
    frames = _frames(wide, mel, pitch, emotion)
    (frames[:, : SignalSpec().n_mels] - mel).abs().mean().backward()
    conv = wide["generator"].conv_pre.conv.weight
    assert conv.grad[:, NARROW:WIDE].abs().max() > 1e-6
    with torch.no_grad():
        conv[:, NARROW:WIDE].normal_(0.0, 0.01)
    wide["content_encoder"].zero_grad()
    (_frames(wide, mel, pitch, emotion)[:, : SignalSpec().n_mels] - mel).abs().mean().backward()
    assert wide["content_encoder"].stack.proj.weight.grad[NARROW:].abs().max() > 1e-6


def test_the_adversary_restarts_with_the_wider_code():
    ckpt = _checkpoint()
    states = widen_checkpoint(copy.deepcopy(ckpt), _models(WIDE))
    assert "adversary" not in states
    assert content_width({"models": states}) == WIDE and content_width(ckpt) == NARROW


@pytest.mark.parametrize("stage, width", [("stage2", WIDE), ("stage1", NARROW - 4)])
def test_widths_that_cannot_meet_are_refused_in_one_line(stage, width):
    """Stage II trains no content encoder, so it needs a checkpoint of its width; no stage narrows."""
    with pytest.raises(ModelError, match=f"content code is {NARROW} wide, the config's {width}") as err:
        training.loop._initialise(_models(width, stage), _checkpoint(), stage)
    assert "\n" not in str(err.value)
