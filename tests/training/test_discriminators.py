"""HiFi-GAN discriminators: output structure and shapes, HiFi-GAN widths, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.models.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator

N_SAMPLES = 1601  # a multiple of none of the periods: exercises the reflect padding


def tiny_mpd() -> MultiPeriodDiscriminator:
    return MultiPeriodDiscriminator(periods=(2, 3, 5), channels=4, max_channels=16)


def tiny_msd() -> MultiScaleDiscriminator:
    return MultiScaleDiscriminator(n_scales=3, channels=4, max_channels=16)


def test_mpd_outputs_one_logit_map_and_six_features_per_period() -> None:
    torch.manual_seed(0)
    logits, features = tiny_mpd()(torch.randn(2, 1, N_SAMPLES))
    assert len(logits) == len(features) == 3
    for period, scores, feats in zip((2, 3, 5), logits, features):
        folded = -(-N_SAMPLES // period)
        assert len(feats) == 6  # 5 convs + conv_post
        assert [f.shape[1] for f in feats] == [4, 16, 16, 16, 16, 1]
        assert all(f.shape[0] == 2 and f.shape[-1] == period for f in feats)
        assert feats[0].shape[2] == -(-folded // 3)  # first conv strides 3 along folded time
        assert scores.shape == (2, feats[-1][0].numel())


def test_msd_outputs_one_logit_map_and_eight_features_per_scale() -> None:
    torch.manual_seed(0)
    logits, features = tiny_msd()(torch.randn(2, 1, N_SAMPLES))
    assert len(logits) == len(features) == 3
    assert all(len(feats) == 8 for feats in features)  # 7 convs + conv_post
    assert [f.shape[1] for f in features[0]] == [4, 4, 8, 16, 16, 16, 16, 1]
    first_lengths = [feats[0].shape[-1] for feats in features]
    assert first_lengths == [N_SAMPLES, N_SAMPLES // 2 + 1, N_SAMPLES // 4 + 1]  # AvgPool1d(4, 2, pad 2)
    assert all(scores.shape == (2, feats[-1].shape[-1]) for scores, feats in zip(logits, features))


def test_default_sizes_are_hifigan_widths_and_groups() -> None:
    mpd, msd = MultiPeriodDiscriminator(), MultiScaleDiscriminator()
    assert [d.period for d in mpd.discriminators] == [2, 3, 5, 7, 11]
    assert [c.out_channels for c in mpd.discriminators[0].convs] == [32, 128, 512, 1024, 1024]
    scale = msd.discriminators[1]
    assert [c.out_channels for c in scale.convs] == [128, 128, 256, 512, 1024, 1024, 1024]
    assert [c.groups for c in scale.convs] == [1, 4, 16, 16, 16, 16, 1]


def test_first_scale_uses_spectral_norm_the_others_weight_norm() -> None:
    msd = tiny_msd()
    kinds = [type(d.convs[0].parametrizations.weight[0]).__name__ for d in msd.discriminators]
    assert kinds[0] == "_SpectralNorm" and set(kinds[1:]) == {"_WeightNorm"}


@pytest.mark.parametrize("make", [tiny_mpd, tiny_msd])
def test_gradients_reach_the_waveform_and_every_parameter(make) -> None:
    torch.manual_seed(0)
    disc: nn.Module = make()
    audio = torch.randn(2, 1, N_SAMPLES, requires_grad=True)
    logits, features = disc(audio)
    loss = sum(s.square().mean() for s in logits) + sum(f.abs().mean() for fs in features for f in fs)
    loss.backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    for name, p in disc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("make", [tiny_mpd, tiny_msd])
def test_real_and_generated_features_align_for_feature_matching(make) -> None:
    torch.manual_seed(0)
    disc = make().eval()
    with torch.no_grad():
        real_logits, real = disc(torch.randn(1, 1, N_SAMPLES))
        fake_logits, fake = disc(0.1 * torch.randn(1, 1, N_SAMPLES))
    assert [[f.shape for f in fs] for fs in real] == [[f.shape for f in fs] for fs in fake]
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(real_logits, fake_logits))
