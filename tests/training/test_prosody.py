"""The measured prosody move on the generator's frames (training.models.prosody)."""

from __future__ import annotations

import math

import pytest
import torch

from training.models.prosody import MAX_GAP, MEMORY, MOVE_SIZE, ProsodyMove, frame_level

N_MELS = 80


def _inputs(frames: int = 240, seed: int = 0):
    """Generated frames (1, 82, T) and tracker pitch (1, 4, T) with a voiced syllable rhythm and a
    register near 150 Hz."""
    g = torch.Generator().manual_seed(seed)
    voiced = ((torch.arange(frames) // 12) % 3 != 2).float()
    lf0 = math.log(150.0) + 0.2 * torch.sin(torch.arange(frames) / 9.0)
    pitch = torch.stack([voiced, lf0, torch.full((frames,), math.log(140.0)), torch.full((frames,), 0.15)])[None]
    gen = torch.cat([torch.randn(1, N_MELS, frames, generator=g) - 4.0,
                     math.log(170.0) + 0.05 * torch.randn(1, 1, frames, generator=g),
                     torch.randn(1, 1, frames, generator=g)], dim=1)
    return gen, pitch


def _move(pitch_weight=0.0, lf0_shift=0.0, log_spread=0.0, level_weight=0.0, level_target=0.0):
    return torch.tensor([[pitch_weight, lf0_shift, log_spread, level_weight, level_target]])


def test_a_zero_move_leaves_the_frames_as_generated():
    gen, pitch = _inputs()
    assert torch.equal(ProsodyMove(N_MELS)(gen, pitch, torch.zeros(1, MOVE_SIZE)), gen)


def test_the_pitch_follows_the_source_moved_from_its_register_where_the_source_is_voiced():
    """Weight 1: log-F0 = reg + shift + exp(log_spread) (lf0 - reg) on voiced frames; on unvoiced ones
    the generator's moved by the last voiced frame's correction (none before the first). Every target
    trusted here (max_gap infinite)."""
    gen, pitch = _inputs()
    pitch[0, 0, :3] = 0.0
    module = ProsodyMove(N_MELS, max_gap=math.inf)
    out = module(gen, pitch, _move(1.0, 0.3, math.log(1.5)))
    voiced = pitch[0, 0] > 0.5
    want = pitch[0, 2] + 0.3 + 1.5 * (pitch[0, 1] - pitch[0, 2])
    g = gen[0, N_MELS]
    assert torch.allclose(out[0, N_MELS][voiced], want[voiced], atol=1e-5)
    assert torch.equal(out[0, N_MELS][:3], g[:3])
    _assert_held(out[0, N_MELS] - g, voiced, torch.where(voiced, want - g, torch.zeros_like(g)))
    half = module(gen, pitch, _move(0.5, 0.3, math.log(1.5)))
    assert torch.allclose(half[0, N_MELS] - g, (out[0, N_MELS] - g) / 2, atol=1e-5)
    assert torch.equal(out[0, N_MELS + 1], gen[0, N_MELS + 1])


def _assert_held(correction, trusted, gap):
    """correction (T,) equals gap (T,) at the last trusted frame up to each frame (0 before the first)."""
    index = torch.cummax(torch.where(trusted, torch.arange(gap.numel()), torch.full_like(gap, -1, dtype=torch.long)),
                         0)[0]
    want = torch.where(index >= 0, gap[index.clamp(min=0)], torch.zeros_like(gap))
    assert torch.allclose(correction, want, atol=1e-5)


def test_a_target_far_from_the_generated_contour_is_not_trusted():
    """Octave errors of the tracker (a target an octave off the generator's contour) keep the last
    trusted correction."""
    gen, pitch = _inputs()
    pitch[0, 0] = 1.0
    jumps = torch.arange(gen.shape[-1]) % 7 == 3
    pitch[0, 1] = torch.where(jumps, pitch[0, 1] + math.log(2.0), pitch[0, 1])
    out = ProsodyMove(N_MELS)(gen, pitch, _move(1.0))
    g = gen[0, N_MELS]
    gap = pitch[0, 1] - g
    trusted = gap.abs() < MAX_GAP
    assert (jumps & ~trusted).sum() > 20 and trusted.sum() > 150
    _assert_held(out[0, N_MELS] - g, trusted, gap)


def test_the_running_level_settles_at_the_target_whatever_the_generated_level():
    """Generator at a constant level 2.3 (any microphone's): the correction reaches the target 0.9
    from the first voiced frame and stays (a running mean of a constant), zero before it."""
    gen, pitch = _inputs()
    gen[:, :N_MELS] = 2.3 - math.log(N_MELS)
    pitch[0, 0, :5] = 0.0
    out = ProsodyMove(N_MELS)(gen, pitch, _move(level_weight=1.0, level_target=0.9))
    level = frame_level(out[:, :N_MELS])[0, 0]
    assert torch.allclose(level[:5], torch.full((5,), 2.3), atol=1e-4)
    assert torch.allclose(level[5:], torch.full((level.numel() - 5,), 0.9), atol=1e-4)


def test_the_level_correction_is_a_mean_so_the_generated_loudness_contour_survives():
    """A frame-to-frame wobble of the generator's level passes through; only its mean moves."""
    gen, pitch = _inputs()
    pitch[0, 0] = 1.0
    wobble = 0.5 * torch.sin(torch.arange(gen.shape[-1]) / 3.0)
    gen[:, :N_MELS] = gen[:, :N_MELS] + 1.0 + wobble
    out = ProsodyMove(N_MELS, memory=MEMORY)(gen, pitch, _move(level_weight=1.0, level_target=0.4))
    gap = frame_level(out[:, :N_MELS])[0, 0] - 0.4
    late = gap[120:]
    assert float(late.std()) == pytest.approx(float((frame_level(gen[:, :N_MELS])[0, 0, 120:]).std()), rel=0.05)
    assert abs(float(late.mean())) < 0.05


@pytest.mark.parametrize("block", [1, 2, 7])
def test_stepwise_equals_offline(block):
    gen, pitch = _inputs(frames=70)
    module, move = ProsodyMove(N_MELS, max_gap=0.05), _move(0.7, -0.2, 0.3, 0.8, 0.5)
    offline = module(gen, pitch, move)
    state, parts = module.init_state(), []
    for s in range(0, gen.shape[-1], block):
        out, state = module.step(gen[..., s:s + block], pitch[..., s:s + block], move, state)
        parts.append(out)
    assert torch.allclose(torch.cat(parts, dim=-1), offline, atol=1e-6)
