"""Every named loss on hand-made tensors whose value is computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from training import losses as L
from training.models.recognition import Recognition
from training.models.vocoder import SourceFilter


def test_mel_l1_is_the_mean_over_bins_and_valid_frames():
    pred = torch.zeros(2, 3, 4)
    target = torch.full((2, 3, 4), 2.0)
    target[1, :, :2] = 1.0
    target[1, :, 2:] = 100.0  # padding: must not count
    # (2·3·4 + 1·3·2) / ((4 + 2)·3) = 30 / 18
    assert float(L.mel_l1(pred, target, torch.tensor([4, 2]))) == pytest.approx(30 / 18)
    assert float(L.mel_l1(pred, torch.full((2, 3, 4), -0.5))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        L.mel_l1(pred, target[:, :, :3])


def test_content_consistency_is_the_masked_l1():
    c_src = torch.zeros(1, 2, 3)
    c_conv = torch.tensor([[[1.0, -3.0, 50.0], [0.0, 1.0, 50.0]]])
    assert float(L.content_consistency(c_conv, c_src, torch.tensor([2]))) == pytest.approx(5 / 4)


def test_cross_entropies():
    logits = torch.log(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
    labels = torch.tensor([1, 0])
    want = (-math.log(0.75) - math.log(0.5)) / 2
    assert float(L.emotion_ce(logits, labels)) == pytest.approx(want)
    assert float(L.emotion_category_consistency(logits, labels)) == pytest.approx(want)


def test_triplet_is_cosine_and_zero_once_separated_by_the_margin():
    a = torch.tensor([[1.0, 0.0]])
    same, other = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(L.triplet_strength(a, same, other, 0.2)) == 0.0  # 0 − 1 + 0.2 < 0
    assert float(L.triplet_strength(a, other, same, 0.2)) == pytest.approx(1.2)  # 1 − 0 + 0.2
    assert float(L.triplet_strength(a, 10 * other, 0.1 * same, 0.2)) == pytest.approx(1.2)  # scale-free
    both = L.triplet_strength(torch.cat([a, a]), torch.cat([same, other]), torch.cat([other, same]), 0.2)
    assert float(both) == pytest.approx(0.6)


def test_strength_ranking_hinge():
    s_neu = torch.tensor([0.1, 0.5])
    s_emo = torch.tensor([0.5, 0.55])
    # pair 1 ordered by 0.4 > margin: 0; pair 2 by only 0.05: 0.2 − 0.05
    assert float(L.strength_ranking(s_neu, s_emo, 0.2)) == pytest.approx(0.15 / 2)
    assert float(L.strength_ranking(s_neu[:1], s_emo[:1], 0.2)) == 0.0
    assert float(L.strength_ranking(s_emo[:1], s_neu[:1], 0.2)) == pytest.approx(0.6)


def test_mixup_regresses_to_the_interpolated_strength_with_detached_endpoints():
    s_neu = torch.tensor([0.2, 0.1], requires_grad=True)
    s_emo = torch.tensor([0.8, 0.9], requires_grad=True)
    s_mix = torch.tensor([0.6, 0.1], requires_grad=True)
    lam = torch.tensor([0.5, 0.25])
    loss = L.mixup_strength(s_mix, lam, s_neu, s_emo)
    # targets 0.5 and 0.3: (|0.6 − 0.5| + |0.1 − 0.3|) / 2
    assert loss.item() == pytest.approx(0.15)
    loss.backward()
    assert s_neu.grad is None and s_emo.grad is None
    assert torch.allclose(s_mix.grad, torch.tensor([0.5, -0.5]))


def test_contrastive_strength_loss_combines_the_named_parts():
    torch.manual_seed(0)
    rec = Recognition(6, strength_hidden=4)
    e = torch.randn(4, 6)
    neu, emo, lam = torch.randn(3, 6), torch.randn(3, 6), torch.tensor([0.0, 0.5, 1.0])
    parts = L.contrastive_strength_loss(rec, e, e.flip(0), e.roll(1, 0), neu, emo, margin=0.3, lam=lam)
    assert set(parts) == {"triplet", "rank", "mixup"}
    s_neu, s_emo = rec.strength(neu), rec.strength(emo)
    mixed = rec.strength(torch.stack([neu[0], (neu[1] + emo[1]) / 2, emo[2]]))
    assert torch.allclose(parts["triplet"], L.triplet_strength(e, e.flip(0), e.roll(1, 0), 0.3))
    assert torch.allclose(parts["rank"], L.strength_ranking(s_neu, s_emo, 0.3))
    assert torch.allclose(parts["mixup"], L.mixup_strength(mixed, lam, s_neu, s_emo))
    sum(parts.values()).backward()
    assert rec.rs[0].weight.grad.abs().sum() > 0
    drawn = L.contrastive_strength_loss(rec, e, e, e, neu, emo)
    assert all(torch.isfinite(v) for v in drawn.values())


def test_cue_weighted_adversarial_weights_frames_by_the_normalised_detached_cue():
    # label 0; frame CEs: ln 2, −ln(3/4), and a padded frame that must not count
    frame_logits = torch.tensor([[[0.0, math.log(3.0), -50.0], [0.0, 0.0, 50.0]]], requires_grad=True)
    labels = torch.tensor([0])
    want = 0.25 * math.log(2) + 0.75 * -math.log(0.75)
    cue = torch.tensor([[0.25, 0.75, 0.0]], requires_grad=True)
    loss = L.cue_weighted_adversarial(frame_logits, labels, cue, torch.tensor([2]))
    assert loss.item() == pytest.approx(want)
    unnormalised = torch.tensor([[1.0, 3.0, 5.0]])
    again = L.cue_weighted_adversarial(frame_logits, labels, unnormalised, torch.tensor([2]))
    assert again.item() == pytest.approx(want)
    loss.backward()
    assert cue.grad is None and frame_logits.grad[0, :, 2].abs().max() == 0
    # per-utterance normalisation, then the mean over the batch: item 2 has CE ln 2 on its one frame
    pair = L.cue_weighted_adversarial(frame_logits.detach().repeat(2, 1, 1), torch.tensor([0, 0]),
                                      torch.tensor([[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([2, 1]))
    assert float(pair) == pytest.approx((want + math.log(2)) / 2)


def test_adversarial_loss_trains_the_classifier_and_reverses_into_the_content():
    from training.models.adversary import ContentEmotionClassifier

    torch.manual_seed(0)
    clf = ContentEmotionClassifier(4, 3, 8)
    content = torch.randn(2, 4, 6, requires_grad=True)
    args = (torch.tensor([1, 2]), torch.softmax(torch.randn(2, 6), -1), torch.tensor([6, 4]))
    L.cue_weighted_adversarial(clf(content, reverse_scale=1.0), *args).backward()
    reversed_grad = content.grad.clone()
    plain = content.detach().clone().requires_grad_(True)
    L.cue_weighted_adversarial(clf.net(plain), *args).backward()
    assert torch.allclose(reversed_grad, -plain.grad, atol=1e-7)
    assert reversed_grad[1, :, 4:].abs().max() == 0  # padded frames get no gradient


def test_strength_consistency():
    got = L.emotion_strength_consistency(torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.5]))
    assert float(got) == pytest.approx(0.35)


def test_multi_resolution_stft():
    torch.manual_seed(0)
    x = torch.randn(2, 4000)
    assert float(L.multi_resolution_stft(x, x)) == 0.0
    # half the amplitude: every magnitude halves, so SC = 0.5 and log-magnitude L1 = ln 2 at each resolution
    assert float(L.multi_resolution_stft(0.5 * x, x)) == pytest.approx(0.5 + math.log(2), rel=1e-4)
    assert float(L.multi_resolution_stft(x[:, None], torch.roll(x, 7, -1)[:, None])) > 0.1
    short = torch.randn(1, 300)  # shorter than the largest n_fft / 2: zero padding copes
    assert float(L.multi_resolution_stft(short, 2 * short)) == pytest.approx(0.5 + math.log(2), rel=1e-4)


def test_lf0_l1_averages_over_voiced_valid_frames():
    """Unvoiced frames have no F0 to learn (their target only holds the last value)."""
    pred = torch.zeros(2, 1, 4)
    target = torch.tensor([[[1.0, 2.0, 3.0, 100.0]], [[-1.0, -1.0, 5.0, 5.0]]])
    voiced = torch.tensor([[[1.0, 1.0, 0.0, 1.0]], [[1.0, 0.0, 1.0, 1.0]]])
    # item 0: frames 0, 1 (frame 2 unvoiced, frame 3 padding) = 1 + 2; item 1: frames 0, 2, 3 = 1 + 5 + 5
    assert float(L.lf0_l1(pred, target, voiced, torch.tensor([3, 4]))) == pytest.approx(14 / 5)
    assert float(L.lf0_l1(pred, target, torch.zeros_like(voiced))) == 0.0  # nothing voiced: no loss, no NaN


def test_lf0_spread_compares_each_utterances_voiced_spread():
    """A contour squeezed toward its mean by a factor 0.5 costs half its spread; a shifted one
    costs nothing; unvoiced and padded frames count for neither; nothing voiced is no loss, no NaN."""
    target = torch.tensor([[[1.0, 3.0, 50.0, 1.0, 3.0]]])  # voiced values 1, 3, 1, 3: spread 1
    voiced = torch.tensor([[[1.0, 1.0, 0.0, 1.0, 1.0]]])
    squeezed = torch.tensor([[[1.5, 2.5, -9.0, 1.5, 2.5]]])
    assert float(L.lf0_spread(squeezed, target, voiced)) == pytest.approx(0.5, abs=1e-4)
    assert float(L.lf0_spread(target + 0.7, target, voiced)) == pytest.approx(0.0, abs=1e-3)
    pred, goal = (torch.cat([target, torch.tensor([[[v]]])], dim=2) for v in (40.0, 0.0))
    ones = torch.cat([voiced, torch.ones(1, 1, 1)], dim=2)
    assert float(L.lf0_spread(pred, goal, ones, torch.tensor([5]))) == pytest.approx(0.0, abs=1e-3)
    pred = squeezed.clone().requires_grad_()
    loss = L.lf0_spread(pred, target, torch.zeros_like(voiced))
    loss.backward()
    assert loss.item() < 1e-3 and torch.isfinite(pred.grad).all()


def test_lf0_slope_spread_compares_frame_to_frame_changes_over_voiced_pairs():
    """A contour moving half as much between voiced frames costs half the spread of its changes;
    changes into or out of an unvoiced frame, and past the length, count for nothing; a shifted
    contour costs nothing; nothing voiced is no loss, no NaN."""
    target = torch.tensor([[[0.0, 2.0, 0.0, 2.0, 0.0, 9.0, 5.0]]])  # changes +2 -2 +2 -2: spread 2
    voiced = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]]])
    lengths = torch.tensor([6])
    slow = torch.tensor([[[0.0, 1.0, 0.0, 1.0, 0.0, -30.0, 40.0]]])  # changes +1 -1 +1 -1: spread 1
    assert float(L.lf0_slope_spread(slow, target, voiced, lengths)) == pytest.approx(1.0, abs=1e-4)
    assert float(L.lf0_slope_spread(target + 0.7, target, voiced, lengths)) == pytest.approx(0.0, abs=1e-3)
    pred = slow.clone().requires_grad_()
    loss = L.lf0_slope_spread(pred, target, torch.zeros_like(voiced))
    loss.backward()
    assert loss.item() < 1e-3 and torch.isfinite(pred.grad).all()


def test_cepstral_spread_compares_each_coefficients_spread_over_active_frames():
    """Coefficients moving half as much as the target's cost half their spread; an offset costs
    nothing; inactive frames count for neither."""
    torch.manual_seed(0)
    target = torch.randn(2, 5, 40)
    active = torch.ones(2, 1, 40)
    active[:, :, 30:] = 0.0
    mean = target[..., :30].mean(dim=2, keepdim=True)
    smooth = mean + 0.5 * (target - mean) + 3.0
    smooth[..., 30:] = 100.0
    std = target[..., :30].std(dim=2, unbiased=False)
    assert L.cepstral_spread(smooth, target, active).item() == pytest.approx(0.5 * std.mean().item(), rel=1e-4)
    assert L.cepstral_spread(target + 1.0, target, active).item() == pytest.approx(0.0, abs=1e-4)


def test_least_squares_adversarial_losses_average_over_valid_frames():
    """The critic's loss is mean (real - 1)^2 + mean fake^2 and the generator's mean (fake - 1)^2, each
    over the valid frames of its own lengths; padding never counts."""
    real = torch.tensor([[1.0, 0.0, 9.0], [3.0, 9.0, 9.0]])  # valid: 2 frames, then 1
    fake = torch.tensor([[0.5, 9.0, 9.0], [-1.0, 1.0, 9.0]])  # valid: 1 frame, then 2
    real_len, fake_len = torch.tensor([2, 1]), torch.tensor([1, 2])
    critic = L.critic_lsgan(real, fake, real_len, fake_len)
    assert critic.item() == pytest.approx((0 + 1 + 4) / 3 + (0.25 + 1 + 1) / 3)
    assert L.generator_lsgan(fake, fake_len).item() == pytest.approx((0.25 + 4 + 0) / 3)
    assert L.generator_lsgan(torch.ones(2, 5), None).item() == 0.0


def test_active_frames_are_the_valid_ones_near_the_loudest():
    mel = torch.full((1, 4, 6), -10.0)
    mel[0, :, 1] = 0.0
    mel[0, :, 2] = -3.0
    mel[0, :, 5] = 5.0  # padding: neither active nor the loudest
    mask = L.active_frames(mel, torch.tensor([5]), nepers=3.45)
    assert mask.tolist() == [[[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]]]


def test_the_emotion_move_compares_the_conversions_move_with_the_wanted_one():
    """A conversion 0.5 louder in every band, 0.2 higher and twice as wide in pitch, scored
    against exactly that move: no loss; asked for nothing: the mean absolute moves."""
    torch.manual_seed(0)
    src_mel, src_lf0 = torch.randn(2, 8, 30), 5.0 + 0.1 * torch.randn(2, 1, 30)
    active = torch.ones(2, 1, 30)
    voiced = (torch.rand(2, 1, 30) < 0.6).float()
    centre = (src_lf0 * voiced).sum(dim=2, keepdim=True) / voiced.sum(dim=2, keepdim=True)
    conv_lf0 = centre + 0.2 + 2.0 * (src_lf0 - centre)
    wanted = torch.cat([torch.full((2, 8), 0.5), torch.tensor([[0.2, math.log(2.0)]] * 2)], dim=1)
    exact = L.emotion_move(src_mel + 0.5, conv_lf0, src_mel, src_lf0, active, voiced, wanted)
    assert exact["spectrum"].item() == pytest.approx(0.0, abs=1e-5)
    assert exact["pitch"].item() == pytest.approx(0.0, abs=1e-4)
    none = L.emotion_move(src_mel + 0.5, conv_lf0, src_mel, src_lf0, active, voiced, torch.zeros(2, 10))
    assert none["spectrum"].item() == pytest.approx(0.5, abs=1e-5)
    assert none["pitch"].item() == pytest.approx(0.2 + math.log(2.0), abs=1e-4)
    silent = L.emotion_move(src_mel, src_lf0, src_mel, src_lf0, active, torch.zeros_like(voiced), wanted)
    assert silent["pitch"].item() == 0.0 and torch.isfinite(silent["spectrum"])


def test_voicing_bce_is_the_binary_cross_entropy_over_valid_frames():
    logits = torch.tensor([[[0.0, math.log(3.0), -math.log(3.0), 100.0]]])
    target = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    # ln 2 at logit 0; -ln sigmoid(ln 3) = -ln(1 - sigmoid(-ln 3)) = -ln 0.75; frame 3 is padding
    want = (math.log(2.0) - 2 * math.log(0.75)) / 3
    assert float(L.voicing_bce(logits, target, torch.tensor([3]))) == pytest.approx(want, rel=1e-6)


def test_envelope_l1_is_the_mean_log_amplitude_difference_over_filters_bins_and_valid_frames():
    basis = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -2.0]])  # order 2 -> 3 bins
    pred = torch.zeros(1, 4, 2)  # two filters of order 2, two frames
    target = torch.tensor([[1.0, 0.0, 0.0, 0.5], [50.0, 50.0, 50.0, 50.0]]).T[None]  # frame 1 is padding
    # harmonic: |[-1, 0] @ basis| = [1, 1, 1]; noise: |[0, -0.5] @ basis| = [1, 0, 1] -> 5 / 6
    assert float(L.envelope_l1(pred, target, basis, torch.tensor([1]))) == pytest.approx(5 / 6)


def test_envelope_l1_of_a_gain_difference_is_that_gain():
    """With the synthesiser's own basis, c_0 is the log gain of every bin: cepstra that differ
    by d in c_0 alone are d apart (in nepers) whatever the rest of the envelope."""
    basis = SourceFilter(order=16).ceps_cos
    torch.manual_seed(0)
    target = torch.randn(2, 32, 5)
    pred = target.clone()
    pred[:, 0] += 0.3
    pred[:, 16] -= 0.3
    assert float(L.envelope_l1(pred, target, basis)) == pytest.approx(0.3, rel=1e-5)


def test_weighted_sum():
    a = torch.tensor(2.0, requires_grad=True)
    losses = {"a": a, "b": torch.tensor(3.0), "logged": torch.tensor(100.0)}
    total = L.weighted_sum(losses, {"a": 0.5, "b": 0.0})
    assert total.item() == pytest.approx(1.0)
    total.backward()
    assert float(a.grad) == pytest.approx(0.5)
    assert L.weighted_sum(losses, {"a": 1.0, "b": 2.0}).item() == pytest.approx(8.0)
    with pytest.raises(KeyError, match="'c'"):
        L.weighted_sum(losses, {"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="zero"):
        L.weighted_sum(losses, {"a": 0.0})
