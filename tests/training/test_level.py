"""The source levelling of the generator's skip (training.models.level): a causal peak follower."""

from __future__ import annotations

import math

import pytest
import torch

from training.models.level import DECAY, MAX_GAIN, LevelTracker

FLOOR = math.log(1e-5)
REF = -3.0


def _speechlike(frames: int = 300, seed: int = 0) -> torch.Tensor:
    """(1, 80, frames) log-mel: syllables of random level 0..2 nepers under REF, pauses at the floor."""
    g = torch.Generator().manual_seed(seed)
    active = (torch.arange(frames) // 15) % 3 != 2
    level = torch.where(active, REF - 2.0 * torch.rand(frames, generator=g), torch.full((frames,), FLOOR))
    return level + 0.5 * torch.randn(1, 80, frames, generator=g)


@pytest.mark.parametrize("gain", [-2.5, 0.0, 3.0])
def test_the_same_speech_at_any_microphone_level_comes_out_alike(gain):
    """A constant gain on the input (within MAX_GAIN of REF) is undone from the first frame on: the
    peak follower attacks at once and releases by DECAY per frame; the loudest frame sits at REF."""
    tracker = LevelTracker(REF, FLOOR)
    mel = _speechlike()
    out, ref_out = tracker(mel + gain), tracker(mel)
    assert (out - ref_out).abs().max() < 1e-4
    level = ref_out.mean(dim=1)[0]
    assert float(level.max()) == pytest.approx(REF, abs=1e-5)


def test_the_gain_is_clamped_and_recovers_after_a_burst_at_the_decay_rate():
    tracker = LevelTracker(REF, FLOOR)
    quiet = torch.full((1, 80, 50), REF - 10.0)
    assert (tracker(quiet) - quiet).abs().max() == pytest.approx(MAX_GAIN, abs=1e-5)  # lifted by MAX_GAIN only
    burst = torch.cat([torch.full((1, 80, 1), REF + 2.0), torch.full((1, 80, 100), REF)], dim=-1)
    gain = (tracker(burst) - burst)[0, 0]
    assert float(gain[0]) == pytest.approx(-2.0, abs=1e-5)
    assert float(gain[100] - gain[1]) == pytest.approx(99 * DECAY, abs=1e-4)  # released linearly


@pytest.mark.parametrize("block", [1, 3, 8])
def test_stepwise_equals_offline(block):
    tracker, mel = LevelTracker(REF, FLOOR), _speechlike(seed=1) - 1.0
    state, outs = tracker.init_state(1), []
    for t in range(0, mel.shape[-1], block):
        y, state = tracker.step(mel[..., t:t + block], state)
        outs.append(y)
    # within float rounding: the mean over bins of one frame and of many sums in another order
    assert (torch.cat(outs, dim=-1) - tracker(mel)).abs().max() < 1e-5
    assert [tuple(s.shape) for s in state] == tracker.state_shapes(1) and tracker.state_names("g_") == ["g_peak"]
