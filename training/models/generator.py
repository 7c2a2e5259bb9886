"""Generator G: causal content + emotion embedding -> log-mel.

Every residual block is FiLM-conditioned on the emotion embedding (a per-channel scale
and shift from a linear map of the embedding), so the emotion acts on every layer while
the content path stays causal. The embedding is an input of ``step``, never state: the
engine may switch or crossfade it between blocks.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from training.models.streaming import CausalConv1d, FrameLayerNorm, State, StreamingModule, split_state

LRELU_SLOPE = 0.1


def film_params(film: nn.Linear, emotion: Tensor) -> tuple[Tensor, Tensor]:
    """Scale and shift ``(B, C, 1)`` from ``emotion: (B, D)``, or ``(B, C, T)`` from ``(B, D, T)``."""
    if emotion.dim() == 2:
        emotion = emotion.unsqueeze(-1)
    params = film(emotion.transpose(1, 2)).transpose(1, 2)
    # Slices, not chunk: chunk exports as Split, whose attributes differ between opsets.
    channels = film.out_features // 2
    return params[:, :channels], params[:, channels:]


class FiLMBlock(StreamingModule):
    """``x + W2 lrelu(conv_d(lrelu(FiLM(norm(x), e))))``, ``(B, C, T) -> (B, C, T)``.

    ``FiLM(h, e) = h * (1 + gamma(e)) + beta(e)``: the ``1 +`` makes a zero embedding map
    the identity. State: ``conv``'s.
    """

    def __init__(self, channels: int, emotion_dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = FrameLayerNorm(channels)
        self.film = nn.Linear(emotion_dim, 2 * channels)
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def _modulated(self, x: Tensor, emotion: Tensor) -> Tensor:
        gamma, beta = film_params(self.film, emotion)
        return F.leaky_relu(self.norm(x) * (1 + gamma) + beta, LRELU_SLOPE)

    def forward(self, x: Tensor, emotion: Tensor) -> Tensor:
        """x: (B, C, T), emotion: (B, D) or (B, D, T) -> (B, C, T)."""
        h = self.conv(self._modulated(x, emotion))
        return x + self.proj(F.leaky_relu(h, LRELU_SLOPE))

    def step(self, x: Tensor, emotion: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C, t), emotion: (B, D) -> (B, C, t), new state."""
        h, state = self.conv.step(self._modulated(x, emotion), state)
        return x + self.proj(F.leaky_relu(h, LRELU_SLOPE)), state


class Generator(StreamingModule):
    """Causal (content, emotion) -> log-mel: ``(B, content_dim, T), (B, emotion_dim) -> (B, n_mels, T)``.

    conv_pre (causal) -> ``n_layers`` FiLM residual blocks with dilations 1, 2, 4, ...
    restarting every ``dilation_cycle`` layers -> per-frame norm -> linear 1x1 output.
    Offline, the emotion may also be given per frame, ``(B, emotion_dim, T)``: stepwise
    with a different embedding per block equals offline with those embeddings per frame.

    State order: ``conv_pre``, then ``blocks.0`` ... ``blocks.{n_layers-1}``.
    """

    def __init__(self, content_dim: int, emotion_dim: int, n_mels: int = 80, channels: int = 128,
                 n_layers: int = 6, kernel_size: int = 5, dilation_cycle: int = 4) -> None:
        super().__init__()
        self.conv_pre = CausalConv1d(content_dim, channels, kernel_size)
        self.blocks = nn.ModuleList(
            FiLMBlock(channels, emotion_dim, kernel_size, 2 ** (i % dilation_cycle)) for i in range(n_layers))
        self.norm = FrameLayerNorm(channels)
        self.proj = nn.Conv1d(channels, n_mels, 1)

    def _head(self, x: Tensor) -> Tensor:
        return self.proj(F.leaky_relu(self.norm(x), LRELU_SLOPE))

    def forward(self, content: Tensor, emotion: Tensor) -> Tensor:
        """content: (B, content_dim, T), emotion: (B, D) or (B, D, T) -> log-mel (B, n_mels, T)."""
        x = self.conv_pre(content)
        for block in self.blocks:
            x = block(x, emotion)
        return self._head(x)

    def step(self, content: Tensor, emotion: Tensor, state: State) -> tuple[Tensor, State]:
        """content: (B, content_dim, t), emotion: (B, D) -> log-mel (B, n_mels, t), new state."""
        s_pre, *s_blocks = split_state(state, [self.conv_pre, *self.blocks])
        x, new_state = self.conv_pre.step(content, s_pre)
        for block, s in zip(self.blocks, s_blocks):
            x, s = block.step(x, emotion, s)
            new_state = new_state + s
        return self._head(x), new_state
