"""Causal HiFi-GAN generator: log-mel -> waveform, exactly ``hop`` samples per frame.

HiFi-GAN (Kong et al., 2020) made causal: every convolution is a ``CausalConv1d``
(left-padded, dilated in the multi-receptive-field blocks) and every upsampling is a
``CausalUpsample``, so the stepwise output equals the offline output and one mel frame
in gives ``hop`` samples out with no lookahead.

Weight norm: on by default for training (as HiFi-GAN); ``remove_weight_norm()`` folds it
into plain weights before export, which keeps the ONNX graph to plain convolutions.
A checkpoint saved with weight norm loads into a model built with it, then folds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from engine.signal import SignalSpec
from training.models.streaming import (
    CausalConv1d,
    CausalUpsample,
    State,
    StreamingModule,
    StreamingSequential,
    split_state,
)

LRELU_SLOPE = 0.1


class ResUnit(StreamingModule):
    """``x + conv2(lrelu(conv1_d(lrelu(x))))`` with causal convs; ``(B, C, T) -> (B, C, T)``.

    One (dilated conv, plain conv) pair of HiFi-GAN's ResBlock1. State: conv1's, conv2's.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(channels, channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        h = self.conv1(F.leaky_relu(x, LRELU_SLOPE))
        return x + self.conv2(F.leaky_relu(h, LRELU_SLOPE))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C, t) -> (B, C, t), new state."""
        s1, s2 = split_state(state, [self.conv1, self.conv2])
        h, s1 = self.conv1.step(F.leaky_relu(x, LRELU_SLOPE), s1)
        y, s2 = self.conv2.step(F.leaky_relu(h, LRELU_SLOPE), s2)
        return x + y, [*s1, *s2]


class MultiReceptiveField(StreamingModule):
    """HiFi-GAN's MRF: the mean of parallel residual stacks of different kernel sizes.

    ``(B, C, T) -> (B, C, T)``. Stack i has kernel ``kernel_sizes[i]`` and one ``ResUnit``
    per dilation in ``dilations[i]``. State: stack 0's, stack 1's, ...
    """

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...],
                 dilations: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        if len(kernel_sizes) != len(dilations):
            raise ValueError(f"{len(kernel_sizes)} resblock kernel sizes but {len(dilations)} dilation sets")
        self.stacks = nn.ModuleList(
            StreamingSequential(*(ResUnit(channels, k, d) for d in ds)) for k, ds in zip(kernel_sizes, dilations))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        return sum(stack(x) for stack in self.stacks) / len(self.stacks)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C, t) -> (B, C, t), new state."""
        outs, new_state = [], []
        for stack, s in zip(self.stacks, split_state(state, list(self.stacks))):
            y, s = stack.step(x, s)
            outs.append(y)
            new_state += s
        return sum(outs) / len(self.stacks), new_state


class UpsampleStage(StreamingModule):
    """lrelu -> ``CausalUpsample`` by ``rate`` -> MRF: ``(B, C_in, T) -> (B, C_out, T * rate)``.

    State: upsample's, then mrf's.
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int, kernel_sizes: tuple[int, ...],
                 dilations: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        self.upsample = CausalUpsample(in_channels, out_channels, rate)
        self.mrf = MultiReceptiveField(out_channels, kernel_sizes, dilations)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, T) -> (B, C_out, T * rate)."""
        return self.mrf(self.upsample(F.leaky_relu(x, LRELU_SLOPE)))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C_in, t) -> (B, C_out, t * rate), new state."""
        s_up, s_mrf = split_state(state, [self.upsample, self.mrf])
        h, s_up = self.upsample.step(F.leaky_relu(x, LRELU_SLOPE), s_up)
        y, s_mrf = self.mrf.step(h, s_mrf)
        return y, [*s_up, *s_mrf]


class CausalHiFiGAN(StreamingModule):
    """Causal HiFi-GAN generator: log-mel ``(B, n_mels, T)`` -> audio ``(B, 1, T * hop)`` in [-1, 1].

    causal conv_pre -> one ``UpsampleStage`` per rate (channels halve at each) -> lrelu ->
    causal conv_post -> tanh. The product of ``upsample_rates`` must equal ``hop``
    (ValueError otherwise) and ``upsample_initial_channel`` must be divisible by
    ``2 ** len(upsample_rates)``. The defaults are HiFi-GAN's V2 size.

    State order: ``conv_pre``, ``stages.0`` (upsample, then MRF stacks 0, 1, ...) ...,
    ``conv_post``.
    """

    def __init__(self, n_mels: int = 80, upsample_rates: tuple[int, ...] = (5, 4, 4, 2),
                 upsample_initial_channel: int = 128, resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
                 resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5),) * 3,
                 pre_kernel_size: int = 7, post_kernel_size: int = 7, hop: int = SignalSpec.hop,
                 use_weight_norm: bool = True) -> None:
        super().__init__()
        _check_sizes(upsample_rates, upsample_initial_channel, hop)
        self.hop = hop
        channels = [upsample_initial_channel // 2 ** i for i in range(len(upsample_rates) + 1)]
        self.conv_pre = CausalConv1d(n_mels, channels[0], pre_kernel_size)
        self.stages = StreamingSequential(*(
            UpsampleStage(channels[i], channels[i + 1], r, resblock_kernel_sizes, resblock_dilations)
            for i, r in enumerate(upsample_rates)))
        self.conv_post = CausalConv1d(channels[-1], 1, post_kernel_size)
        self.stages.apply(_init_hifigan)
        if use_weight_norm:
            for m in self.modules():
                if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                    weight_norm(m)

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain ``weight`` tensors (same outputs); a no-op without it."""
        for m in self.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight")

    def forward(self, mel: Tensor) -> Tensor:
        """mel: (B, n_mels, T) log-mel -> audio (B, 1, T * hop)."""
        x = self.stages(self.conv_pre(mel))
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def step(self, mel: Tensor, state: State) -> tuple[Tensor, State]:
        """mel: (B, n_mels, t) -> audio (B, 1, t * hop), new state."""
        s_pre, s_stages, s_post = split_state(state, [self.conv_pre, self.stages, self.conv_post])
        x, s_pre = self.conv_pre.step(mel, s_pre)
        x, s_stages = self.stages.step(x, s_stages)
        y, s_post = self.conv_post.step(F.leaky_relu(x), s_post)
        return torch.tanh(y), [*s_pre, *s_stages, *s_post]


def _check_sizes(upsample_rates: tuple[int, ...], upsample_initial_channel: int, hop: int) -> None:
    if any(r < 1 for r in upsample_rates) or math.prod(upsample_rates) != hop:
        raise ValueError(f"upsample_rates {tuple(upsample_rates)} multiply to {math.prod(upsample_rates)}, "
                         f"but one mel frame is hop={hop} samples: their product must equal hop")
    if upsample_initial_channel % 2 ** len(upsample_rates):
        raise ValueError(f"upsample_initial_channel {upsample_initial_channel} must be divisible by "
                         f"2 ** {len(upsample_rates)}: the channels halve at every upsampling stage")


def _init_hifigan(m: nn.Module) -> None:
    # HiFi-GAN's init: small weights in the upsampling stages keep the untrained output quiet.
    if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
        m.weight.data.normal_(0.0, 0.01)
