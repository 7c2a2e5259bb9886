"""The source levelling of the generator's skip (training.models.level): a causal peak follower."""

from __future__ import annotations

import math

import pytest
import torch

from training.models.level import DECAY, MAX_GAIN, LevelTracker

FLOOR = math.log(1e-5)
REF = -3.0


def _speechlike(frames: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 80, frames) log-mel: syllables of random level 0..2 nepers under REF, pauses at the floor;
    (1, 1, frames) voicing: 1 in the syllables."""
    g = torch.Generator().manual_seed(seed)
    active = (torch.arange(frames) // 15) % 3 != 2
    level = torch.where(active, REF - 2.0 * torch.rand(frames, generator=g), torch.full((frames,), FLOOR))
    return level + 0.5 * torch.randn(1, 80, frames, generator=g), active.float()[None, None]


def _voiced(frames: int) -> torch.Tensor:
    return torch.ones(1, 1, frames)


@pytest.mark.parametrize("gain", [-2.5, 0.0, 3.0])
def test_the_same_speech_at_any_microphone_level_comes_out_alike(gain):
    """A constant gain on the input (within MAX_GAIN of REF) is undone from the first frame on: the
    peak follower attacks at once and releases by DECAY per frame; the loudest frame sits at REF."""
    tracker = LevelTracker(REF, FLOOR)
    mel, voicing = _speechlike()
    out, ref_out = tracker(mel + gain, voicing), tracker(mel, voicing)
    assert (out - ref_out).abs().max() < 1e-4
    level = ref_out.mean(dim=1)[0]
    assert float(level.max()) == pytest.approx(REF, abs=1e-5)


def test_the_gain_is_clamped_and_recovers_after_a_burst_at_the_decay_rate():
    tracker = LevelTracker(REF, FLOOR)
    quiet = torch.full((1, 80, 50), REF - 7.0)
    assert (tracker(quiet, _voiced(50)) - quiet).abs().max() == pytest.approx(MAX_GAIN, abs=1e-5)  # by MAX_GAIN only
    burst = torch.cat([torch.full((1, 80, 1), REF + 2.0), torch.full((1, 80, 100), REF)], dim=-1)
    gain = (tracker(burst, _voiced(101)) - burst)[0, 0]
    assert float(gain[0]) == pytest.approx(-2.0, abs=1e-5)
    assert float(gain[100] - gain[1]) == pytest.approx(99 * DECAY, abs=1e-4)  # released linearly


def test_unvoiced_frames_hold_the_gain_and_noise_alone_keeps_its_level():
    """Only voiced frames move the peak: noise alone (never voiced) passes unchanged, and after
    speech the pause keeps the speech's gain instead of being lifted as the peak would decay."""
    tracker = LevelTracker(REF, FLOOR)
    noise = torch.full((1, 80, 60), REF - 6.0)
    assert torch.equal(tracker(noise, torch.zeros(1, 1, 60)), noise)
    speech_then_pause = torch.cat([torch.full((1, 80, 10), REF - 1.0), torch.full((1, 80, 200), REF - 6.0)], dim=-1)
    voicing = torch.cat([torch.ones(1, 1, 10), torch.zeros(1, 1, 200)], dim=-1)
    gain = (tracker(speech_then_pause, voicing) - speech_then_pause)[0, 0]
    assert float(gain[0]) == pytest.approx(1.0, abs=1e-5)
    assert float((gain - 1.0).abs().max()) < 1e-5  # held through the pause


@pytest.mark.parametrize("block", [1, 3, 8])
def test_stepwise_equals_offline(block):
    tracker, (mel, voicing) = LevelTracker(REF, FLOOR), _speechlike(seed=1)
    mel = mel - 1.0
    state, outs = tracker.init_state(1), []
    for t in range(0, mel.shape[-1], block):
        y, state = tracker.step(mel[..., t:t + block], voicing[..., t:t + block], state)
        outs.append(y)
    # within float rounding: the mean over bins of one frame and of many sums in another order
    assert (torch.cat(outs, dim=-1) - tracker(mel, voicing)).abs().max() < 1e-5
    assert [tuple(s.shape) for s in state] == tracker.state_shapes(1) and tracker.state_names("g_") == ["g_peak"]
