"""HiFi-GAN's discriminators for the vocoder's adversarial training (never exported).

Both take a waveform ``(B, 1, N)`` and return ``(logits, features)``: one flattened logit
map ``(B, n_i)`` per sub-discriminator, and per sub-discriminator the list of its
activations (feature matching compares them between real and generated audio).
With the default ``channels`` the widths are HiFi-GAN's (Kong et al., 2020).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

LRELU_SLOPE = 0.1

Output = tuple[list[Tensor], list[list[Tensor]]]


def _run_stack(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Leaky-ReLU conv stack then a linear post conv: -> (flattened logits (B, n), every activation)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """Looks at every ``period``-th sample: ``(B, 1, N) -> logits (B, n), features``.

    The waveform is folded into ``(B, 1, N / period, period)`` (reflect-padded to a whole
    number of periods) and 2-D convs with kernel ``(k, 1)`` run along the folded time axis,
    so each column sees one phase of the period. Widths ``channels * (1, 4, 16, 32, 32)``,
    capped at ``max_channels``.
    """

    def __init__(self, period: int, channels: int = 32, max_channels: int = 1024, kernel_size: int = 5,
                 stride: int = 3) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [min(channels * m, max_channels) for m in (1, 4, 16, 32, 32)]
        strides = [stride] * 4 + [1]
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (s, 1), padding=(pad, 0)))
            for c_in, c_out, s in zip(widths[:-1], widths[1:], strides))
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        """audio: (B, 1, N) -> logits (B, n), features [(B, C_i, N_i, period)]."""
        B, C, N = audio.shape
        if N % self.period:
            audio = F.pad(audio, (0, self.period - N % self.period), mode="reflect")
        return _run_stack(self.convs, self.conv_post, audio.view(B, C, -1, self.period))


class MultiPeriodDiscriminator(nn.Module):
    """One ``PeriodDiscriminator`` per period (primes, so their views overlap little)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channels: int = 32,
                 max_channels: int = 1024) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels, max_channels) for p in periods)

    def forward(self, audio: Tensor) -> Output:
        """audio: (B, 1, N) -> ([logits (B, n_i)] * len(periods), [[features]] * len(periods))."""
        outputs = [d(audio) for d in self.discriminators]
        return [logits for logits, _ in outputs], [features for _, features in outputs]


class ScaleDiscriminator(nn.Module):
    """Strided grouped 1-D convs over the waveform: ``(B, 1, N) -> logits (B, n), features``.

    Widths ``channels * (1, 1, 2, 4, 8, 8, 8)`` capped at ``max_channels``; HiFi-GAN's
    groups (1, 4, 16, 16, 16, 16, 1) reduced where they would not divide the widths.
    """

    def __init__(self, channels: int = 128, max_channels: int = 1024, use_spectral_norm: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        widths = [1] + [min(channels * m, max_channels) for m in (1, 1, 2, 4, 8, 8, 8)]
        kernels, strides, groups = (15, 41, 41, 41, 41, 41, 5), (1, 2, 2, 4, 4, 1, 1), (1, 4, 16, 16, 16, 16, 1)
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(c_in, c_out, k, s, groups=math.gcd(g, c_in, c_out), padding=(k - 1) // 2))
            for c_in, c_out, k, s, g in zip(widths[:-1], widths[1:], kernels, strides, groups))
        self.conv_post = norm(nn.Conv1d(widths[-1], 1, 3, 1, padding=1))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        """audio: (B, 1, N) -> logits (B, n), features [(B, C_i, N_i)]."""
        return _run_stack(self.convs, self.conv_post, audio)


class MultiScaleDiscriminator(nn.Module):
    """``ScaleDiscriminator``s on the waveform average-pooled by 1, 2, 4, ...

    The first (raw audio) uses spectral norm, the others weight norm, as in HiFi-GAN.
    """

    def __init__(self, n_scales: int = 3, channels: int = 128, max_channels: int = 1024) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels, max_channels, use_spectral_norm=i == 0) for i in range(n_scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, audio: Tensor) -> Output:
        """audio: (B, 1, N) -> ([logits (B, n_i)] * n_scales, [[features]] * n_scales)."""
        logits, features = [], []
        for i, disc in enumerate(self.discriminators):
            if i:
                audio = self.pool(audio)
            scores, feats = disc(audio)
            logits.append(scores)
            features.append(feats)
        return logits, features
