"""The reference's pitch and loudness moves, measured and imposed on the generator's frames.

The generator learns an emotion's spectrum well but its prosody only on average: on the
benchmark its conversions widen the pitch range x1.09-1.14 where the targets widen it
x1.41-1.60, and held-out voices come out 0.6-0.7 nepers louder than their targets in every
emotion (README). The benchmark's classifier hears most of an emotion in those two cues. A
reference says them outright: against the neutral voice it was read beside (the bank's neutral
entry), its voiced log-F0 moves by ``lf0_shift`` with its spread scaled by ``exp(log_spread)``,
and it is spoken at a voiced level of its own (engine.prosody.prosody_move: ``level_target``, the
neutral entry's level moved by the strength). This module imposes the pitch move on the
generator's output relative to the source's own running register, as the DSP prosody transplant
does offline, and the reference's loudness, causally and with its state explicit::

    target_t  = reg_mean_t + lf0_shift + exp(log_spread) * (lf0_t - reg_mean_t)   (source tracker)
    shift_t   = target_t - g_t on voiced frames where it is under MAX_GAP, else shift_{t-1} (0 at first)
    lf0'_t    = g_t + pitch_weight * shift_t
    c_t       = running mean of (level_target - level(generated_t)) over the voiced frames so far
                (0 before the first; the last MEMORY frames weigh most, as the pitch tracker's register)
    mel'_t    = mel_t + level_weight * c_t

The log-F0 correction is held through the frames the source tracker calls unvoiced, so the
contour never jumps where the generator voices and the tracker does not, and through frames
whose target is more than MAX_GAP from the generator's contour.
``move = [pitch_weight, lf0_shift, log_spread, level_weight, level_target]``; all zeros is the
identity, so a model can always take it. The level is the running mean, not each frame's, so
the generated loudness contour (an emotion's stresses) stays the generator's. The level is the
reference's, not the source's moved: through the source's (the first version of this module), a
microphone's level (-40 to -6 dBFS) and a room reached the output, and accuracy through a noisy
room fell from 0.74 to 0.29 (README).
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.prosody import MOVE_SIZE
from training.models.streaming import State, StreamingModule

__all__ = ["MOVE_SIZE", "MEMORY", "ProsodyMove", "frame_level"]
MEMORY = 200
"""Voiced frames (2-3 s of speech) after which the level correction forgets at a constant rate."""
MAX_GAP = 0.35
"""Natural-log F0 (6 semitones) beyond which a frame's target is not trusted: the causal tracker's
octave errors and unsteady onsets. Imposed there, they cost DNSMOS OVRL 0.07 and voicing agreement
0.02 on 168 benchmark trials (README)."""


def frame_level(mel: Tensor) -> Tensor:
    """(B, n_mels, t) natural-log mel magnitudes -> (B, 1, t) log of their sum over bins: the graph's
    twin of engine.anchor.frame_levels, with which the bank measures the level target, so both sides
    of the level gap are on one scale."""
    return torch.logsumexp(mel, dim=1, keepdim=True)


class ProsodyMove(StreamingModule):
    """``frames (B, n_mels + 2, t), pitch (B, 4, t), move (B, MOVE_SIZE) -> frames (B, n_mels + 2, t)``:
    pitch the engine tracker's rows (voiced, lf0, reg_mean, reg_std) of the source.

    State: ``[(B, 1, 1) log-F0 correction, (B, 1, 1) level correction, (B, 1, 1) voiced frames counted]``.
    """

    def __init__(self, n_mels: int, memory: int = MEMORY, max_gap: float = MAX_GAP) -> None:
        super().__init__()
        self.n_mels, self.memory, self.max_gap = n_mels, memory, max_gap

    def state_shapes(self, batch_size: int = 1) -> list[tuple[int, ...]]:
        return [(batch_size, 1, 1)] * 3

    def state_names(self, prefix: str = "") -> list[str]:
        return [f"{prefix}pitch", f"{prefix}level", f"{prefix}count"]

    def forward(self, frames: Tensor, pitch: Tensor, move: Tensor) -> Tensor:
        """The whole sequence from a zero state (see the class docstring for shapes)."""
        return self.step(frames, pitch, move, self.init_state(frames.shape[0], frames.device, frames.dtype))[0]

    def step(self, frames: Tensor, pitch: Tensor, move: Tensor, state: State) -> tuple[Tensor, State]:
        """One block (see the class docstring) -> (frames, new state); the same frame loop offline."""
        n = self.n_mels
        m = move[:, :, None]  # (B, MOVE_SIZE, 1)
        voiced = pitch[:, 0:1] > 0.5
        mel, lf0, logit = frames[:, :n], frames[:, n:n + 1], frames[:, n + 1:]
        reg = pitch[:, 2:3]
        target = reg + m[:, 1:2] + torch.exp(m[:, 2:3]) * (pitch[:, 1:2] - reg)
        pitch_gap, level_gap = target - lf0, m[:, 4:5] - frame_level(mel)
        trusted = voiced & (pitch_gap.abs() < self.max_gap)
        shift, level, count = state
        shifts, levels = [], []
        for k in range(frames.shape[-1]):
            v = voiced[..., k:k + 1]
            count = torch.where(v, count + 1.0, count)
            shift = torch.where(trusted[..., k:k + 1], pitch_gap[..., k:k + 1], shift)
            weight = 1.0 / torch.clamp(count, 1.0, float(self.memory))
            level = torch.where(v, level + weight * (level_gap[..., k:k + 1] - level), level)
            shifts.append(shift)
            levels.append(level)
        lf0 = lf0 + m[:, 0:1] * torch.cat(shifts, dim=-1)
        mel = mel + m[:, 3:4] * torch.cat(levels, dim=-1)
        return torch.cat([mel, lf0, logit], dim=1), [shift, level, count]
