"""A causal residual conv stack: the body of the content encoder and of the vocoder's filter net.

``(B, in_channels, T) -> (B, out_channels, T)``: causal conv_pre -> ``n_layers`` pre-norm
residual blocks with dilations 1, 2, 4, ... restarting every ``dilation_cycle`` layers ->
per-frame norm -> 1x1 projection (linear: no activation on the output).
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


class CausalStack(StreamingModule):
    """Causal ``(B, in_channels, T) -> (B, out_channels, T)``; see the module docstring.

    Receptive field: ``1 + (kernel_size - 1) * (1 + sum of dilations)`` frames of the past.
    State order: ``conv_pre``, then ``blocks.0`` ... ``blocks.{n_layers-1}``.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int, n_layers: int, kernel_size: int,
                 dilation_cycle: int = 4) -> None:
        super().__init__()
        self.conv_pre = CausalConv1d(in_channels, channels, kernel_size)
        self.blocks = StreamingSequential(
            *(EncoderBlock(channels, kernel_size, 2 ** (i % dilation_cycle)) for i in range(n_layers)))
        self.norm = FrameLayerNorm(channels)
        self.proj = nn.Conv1d(channels, out_channels, 1)

    def _head(self, x: Tensor) -> Tensor:
        return self.proj(F.leaky_relu(self.norm(x), LRELU_SLOPE))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, T) -> (B, out_channels, T)."""
        return self._head(self.blocks(self.conv_pre(x)))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, in_channels, t) -> (B, out_channels, t), new state."""
        s_pre, s_blocks = split_state(state, [self.conv_pre, self.blocks])
        h, s_pre = self.conv_pre.step(x, s_pre)
        h, s_blocks = self.blocks.step(h, s_blocks)
        return self._head(h), [*s_pre, *s_blocks]
