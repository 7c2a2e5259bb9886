"""Content encoder Ec: causal log-mel -> low-dimensional content features.

The content is what the generator keeps from the source (words, timing, voice); the
emotion comes from the reference. A narrow bottleneck (``out_dim``) leaves little room
for emotion, and the trainer's adversarial emotion classifier removes the rest.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from training.models.streaming import (
    CausalConv1d,
    FrameLayerNorm,
    State,
    StreamingModule,
    StreamingSequential,
    split_state,
)

LRELU_SLOPE = 0.1


class EncoderBlock(StreamingModule):
    """Pre-norm residual block: ``x + W2 lrelu(conv_d(lrelu(norm(x))))``, ``(B, C, T) -> (B, C, T)``.

    ``conv_d`` is a dilated causal conv; ``W2`` a 1x1 conv. State: ``conv``'s.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = FrameLayerNorm(channels)
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        h = self.conv(F.leaky_relu(self.norm(x), LRELU_SLOPE))
        return x + self.proj(F.leaky_relu(h, LRELU_SLOPE))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C, t) -> (B, C, t), new state."""
        h, state = self.conv.step(F.leaky_relu(self.norm(x), LRELU_SLOPE), state)
        return x + self.proj(F.leaky_relu(h, LRELU_SLOPE)), state


class ContentEncoder(StreamingModule):
    """Causal log-mel -> content: ``(B, n_mels, T) -> (B, out_dim, T)``.

    conv_pre (causal, kernel ``kernel_size``) -> ``n_layers`` residual blocks with
    dilations 1, 2, 4, ... restarting every ``dilation_cycle`` layers -> per-frame norm ->
    1x1 projection to the bottleneck (linear: no activation on the content).

    Receptive field: ``1 + (kernel_size - 1) * (1 + sum of dilations)`` frames of the past.
    State order: ``conv_pre``, then ``blocks.0`` ... ``blocks.{n_layers-1}``.
    """

    def __init__(self, n_mels: int = 80, channels: int = 128, out_dim: int = 32, n_layers: int = 6,
                 kernel_size: int = 5, dilation_cycle: int = 4) -> None:
        super().__init__()
        self.conv_pre = CausalConv1d(n_mels, channels, kernel_size)
        self.blocks = StreamingSequential(
            *(EncoderBlock(channels, kernel_size, 2 ** (i % dilation_cycle)) for i in range(n_layers)))
        self.norm = FrameLayerNorm(channels)
        self.proj = nn.Conv1d(channels, out_dim, 1)
        self.out_dim = out_dim

    def _head(self, x: Tensor) -> Tensor:
        return self.proj(F.leaky_relu(self.norm(x), LRELU_SLOPE))

    def forward(self, mel: Tensor) -> Tensor:
        """mel: (B, n_mels, T) log-mel -> content (B, out_dim, T)."""
        return self._head(self.blocks(self.conv_pre(mel)))

    def step(self, mel: Tensor, state: State) -> tuple[Tensor, State]:
        """mel: (B, n_mels, t) -> content (B, out_dim, t), new state."""
        s_pre, s_blocks = split_state(state, [self.conv_pre, self.blocks])
        x, s_pre = self.conv_pre.step(mel, s_pre)
        x, s_blocks = self.blocks.step(x, s_blocks)
        return self._head(x), [*s_pre, *s_blocks]
