"""Emotion encoder Ee: a whole reference utterance → frame features F.

Non-causal by design (a reference is registered once, offline): centred convolutions
see past and future frames. Deliberately *local*, though: a frame's features describe
its neighbourhood (about 1/3 s with the defaults), not the whole utterance. The
emotional cue (training/models/recognition.py) weighs frames by their class evidence;
with a global layer (self-attention, BiGRU) every frame, silence included, can borrow
the utterance's evidence, and the cue then degenerates to a uniform average: on a toy
corpus of voiced emotional frames among silence, one self-attention layer left the cue's
mass on voiced frames at their share (0.45 vs 0.41) while the classifier was solved; the
local stack moved it to 0.75 in the same 300 steps. Utterance-level pooling is the cue's job.

Padded frames (beyond `lengths`) never influence valid ones: they are zeroed before
every convolution, so a valid frame near the end sees the same zeros an unpadded
utterance sees from the convolution's own padding; no normalisation pools over time or
batch, for the same reason.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.frames import MelLifter, with_pitch


def frame_mask(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) mask of valid frames of x (B, C, T), in x's dtype; all ones when lengths is None.

    Built from a comparison against arange(T) so that it exports to ONNX with dynamic T.
    """
    B, _, T = x.shape
    if lengths is None:
        return torch.ones(B, 1, T, dtype=x.dtype, device=x.device)
    steps = torch.arange(T, device=x.device)
    return (steps[None, :] < lengths.to(x.device)[:, None]).unsqueeze(1).to(x.dtype)


class ChannelNorm(nn.Module):
    """LayerNorm over channels of each frame of x (B, C, T): per frame, so padding-independent."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvBlock(nn.Module):
    """Residual same-padded dilated conv → GELU → channel norm, on (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)
        self.act = nn.GELU()
        self.norm = ChannelNorm(channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T), mask: (B, 1, T) → (B, C, T)."""
        return self.norm(x + self.act(self.conv(x * mask)))


class EmotionEncoder(nn.Module):
    """Ee: log-mel (B, n_mels, T), pitch (B, 2, T) [+ lengths (B,), anchor (B, n_mels + 1)] → frame
    features F (B, dim, T), zero on padding.

    anchor: the speaker's neutral voice (engine.anchor.neutral_anchor); the input is read moved by
    (anchor - centre), as the average training speaker would say it, so what Ee learns is the
    emotion's move from the speaker's own neutral voice rather than the voice. centre (n_mels + 1,)
    is the training speakers' mean anchor, set by the trainer (training.loop) and kept in the
    weights; without an anchor the input is read as it is.

    pitch rows: natural-log F0 (held through unvoiced frames) and voicing in [0, 1], as the
    generator outputs them (training/models/generator.py frame_pitch): in Stage II Ee reads
    converted frames, so the pitch the generator sets is what Ee judges. The log-mel is
    liftered (training/models/frames.py): the pitch reaches Ee through its own rows only.
    An input conv, then n_layers residual convs with dilations 1, 2, 4, ... (local
    spectral and prosodic patterns over syllables), then a 1x1 projection to dim.
    Receptive field: 1 + (kernel_size − 1)·2^n_layers frames (33 = 0.33 s by default).
    """

    def __init__(self, n_mels: int = 80, channels: int = 192, dim: int = 128, n_layers: int = 3,
                 kernel_size: int = 5):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: must be odd for same padding, got {kernel_size}")
        self.dim = dim
        self.lifter = MelLifter(n_mels)
        self.inp = nn.Conv1d(n_mels + 2, channels, kernel_size, padding=kernel_size // 2)
        self.blocks = nn.ModuleList(ConvBlock(channels, kernel_size, 2**i) for i in range(n_layers))
        self.proj = nn.Conv1d(channels, dim, 1)
        self.register_buffer("centre", torch.zeros(n_mels + 1))

    def forward(self, mel: torch.Tensor, pitch: torch.Tensor, lengths: torch.Tensor | None = None,
                anchor: torch.Tensor | None = None) -> torch.Tensor:
        """mel: (B, n_mels, T), pitch: (B, 2, T) float32, lengths: (B,) valid frames or None (all),
        anchor: (B, n_mels + 1) or None → F: (B, dim, T)."""
        if anchor is not None:
            mel, pitch = self.anchored(mel, pitch, anchor)
        mask = frame_mask(lengths, mel)
        frames = with_pitch(self.lifter(mel), pitch)
        x = self.inp(frames * mask)
        for block in self.blocks:
            x = block(x, mask)
        return self.proj(x) * mask

    def anchored(self, mel: torch.Tensor, pitch: torch.Tensor, anchor: torch.Tensor):
        """(mel, pitch) moved by (anchor - centre): the log-mel by its spectrum rows, the log-F0 row by its last."""
        shift = anchor - self.centre
        n = mel.shape[1]
        lf0 = pitch[:, :1] - shift[:, n:, None]
        return mel - shift[:, :n, None], torch.cat([lf0, pitch[:, 1:]], dim=1)
