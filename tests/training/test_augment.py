"""Microphone realism (training.data.augment): seeded, within its stated ranges, each part doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.signals import probe_speech
from training.data import augment
from training.data.augment import Degradation

RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return probe_speech(2.0, seed=3)


def _db(power: float) -> float:
    return 10 * np.log10(power)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_ones(speech):
    others = [probe_speech(1.0, seed=s) for s in (4, 5)]
    a, pa = augment.degrade(speech, RATE, np.random.default_rng(7), others=others)
    b, pb = augment.degrade(speech, RATE, np.random.default_rng(7), others=others)
    c, _ = augment.degrade(speech, RATE, np.random.default_rng(8), others=others)
    assert a.tobytes() == b.tobytes() and pa == pb
    assert not np.array_equal(a, c)


def test_draws_stay_in_their_ranges_and_the_peak_is_the_drawn_level(speech):
    cfg = augment.DEFAULT
    others = [probe_speech(1.0, seed=4)]
    seen_kinds, clipped, dry = set(), 0, 0
    for seed in range(60):
        y, p = augment.degrade(speech, RATE, np.random.default_rng(seed), others=others)
        assert y.dtype == np.float32 and y.shape == speech.shape and np.isfinite(y).all()
        assert cfg.snr_db[0] <= p["snr_db"] <= cfg.snr_db[1]
        assert cfg.level_dbfs[0] <= p["level_dbfs"] <= cfg.level_dbfs[1]
        peak_db = 20 * np.log10(np.abs(y).max())
        if p["clip_drive_db"] is None:
            assert peak_db == pytest.approx(p["level_dbfs"], abs=0.01)
        else:
            clipped += 1
            assert p["level_dbfs"] - 0.01 <= peak_db <= 0.0  # saturation lifts the peak towards full scale
        if p["rt60_s"] is None:
            dry += 1
        else:
            assert cfg.rt60_s[0] <= p["rt60_s"] <= cfg.rt60_s[1] and cfg.drr_db[0] <= p["drr_db"] <= cfg.drr_db[1]
        seen_kinds.add(p["noise"])
    assert seen_kinds == set(augment.NOISE_KINDS)
    assert 0 < clipped < 30 and 5 < dry < 40  # clip_p 0.2, reverb_p 0.7 over 60 draws


def test_babble_needs_other_utterances(speech):
    kinds = {augment.degrade(speech, RATE, np.random.default_rng(s))[1]["noise"] for s in range(30)}
    assert kinds == {"coloured", "hum"}


@pytest.mark.parametrize("snr", [15.0, 27.5, 40.0])
def test_noise_is_mixed_at_the_stated_snr_against_active_speech(speech, snr):
    noise = augment.coloured_noise(speech.size, 1.0, np.random.default_rng(0))
    mixed = augment.mix_at_snr(speech.astype(np.float64), noise, snr, RATE)
    added = mixed - speech
    assert _db(augment.active_power(speech, RATE) / np.mean(added**2)) == pytest.approx(snr, abs=0.01)


def test_active_power_ignores_pauses():
    tone = 0.1 * np.sin(2 * np.pi * 200 * np.arange(RATE) / RATE)
    with_pause = np.concatenate([tone, np.zeros(3 * RATE)])
    assert augment.active_power(with_pause, RATE) == pytest.approx(augment.active_power(tone, RATE), rel=1e-6)


@pytest.mark.parametrize("rt60, drr", [(0.2, 0.0), (0.5, 6.0), (0.8, 12.0)])
def test_room_impulse_decays_over_its_rt60_at_its_direct_to_reverberant_ratio(rt60, drr):
    h = augment.room_impulse(RATE, rt60, drr, np.random.default_rng(1)).astype(np.float64)
    assert h[0] == 1.0 and _db(1.0 / np.sum(h[1:] ** 2)) == pytest.approx(drr, abs=0.05)
    edc = _db(np.cumsum(h[1:][::-1] ** 2)[::-1] / np.sum(h[1:] ** 2))  # Schroeder integration
    t5, t25 = np.argmax(edc < -5) / RATE, np.argmax(edc < -25) / RATE
    assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.15)  # T20 extrapolated to 60 dB


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_coloured_noise_has_its_spectral_slope(beta):
    y = augment.coloured_noise(2**16, beta, np.random.default_rng(2))
    assert np.sqrt(np.mean(y**2)) == pytest.approx(1.0, rel=1e-6)
    power = np.abs(np.fft.rfft(y)) ** 2
    f = np.arange(power.size)
    bands = np.logspace(np.log10(20), np.log10(power.size - 1), 12).astype(int)
    centre = [np.sqrt(a * b) for a, b in zip(bands[:-1], bands[1:])]
    level = [np.log10(power[a:b].mean()) for a, b in zip(bands[:-1], bands[1:])]
    slope = np.polyfit(np.log10(centre), level, 1)[0]
    assert slope == pytest.approx(-beta, abs=0.15)
    assert f.size == power.size


def test_hum_sits_on_the_mains_frequency():
    y = augment.hum(RATE, RATE, np.random.default_rng(3))
    spectrum = np.abs(np.fft.rfft(y))
    assert int(np.argmax(spectrum)) in (50, 60)  # 1 Hz bins over one second


def test_microphone_high_pass_cuts_rumble_and_keeps_the_voice_band():
    cfg = Degradation(eq_gain_db=(0.0, 0.0), highpass_hz=(100.0, 100.0))
    t = np.arange(2 * RATE) / RATE

    def gain_db(freq: float) -> float:
        x = np.sin(2 * np.pi * freq * t)
        y = augment.microphone(x, RATE, cfg, np.random.default_rng(0))[RATE:]
        return _db(np.mean(y**2) / np.mean(x[RATE:] ** 2))

    assert gain_db(20.0) < -25.0 and abs(gain_db(2000.0)) < 0.1


def test_soft_clip_saturates_within_full_scale():
    x = np.linspace(-0.5, 0.5, 1001)
    y = augment.soft_clip(x, 12.0)
    assert np.abs(y).max() <= 1.0 and np.all(np.diff(y) > 0)
    g = 10 ** (12 / 20)
    assert y[-1] == pytest.approx(np.tanh(0.5 * g) / np.tanh(g))  # a -6 dBFS peak driven to -0.3 dBFS
    assert y[501] / x[501] == pytest.approx(g / np.tanh(g), rel=1e-4)  # quiet samples: plain gain


# ---- in training batches -------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpora(tiny_corpus):
    from engine.signal import SignalSpec
    from training.data.batches import MelCorpus

    clean = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=40)
    noisy = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=40, augment=augment.DEFAULT)
    return clean, noisy


def test_training_batches_get_degraded_inputs_and_clean_targets(corpora):
    from training.data.batches import VALIDATION, draw_batch

    clean, noisy = corpora
    a, b = draw_batch(noisy, 8, 48, seed=3, step=5), draw_batch(noisy, 8, 48, seed=3, step=5)
    ref = draw_batch(clean, 8, 48, seed=3, step=5)
    assert torch_equal(a.mel_in, b.mel_in) and torch_equal(a.pitch_in, b.pitch_in)  # a pure function of the step
    # targets and Ee's input (mel, pitch) stay clean
    for name in ("mel", "audio", "pitch", "lengths", "labels", "speakers", "reference"):
        assert torch_equal(getattr(a, name), getattr(ref, name)), name
    assert a.mel_in.shape == ref.mel_in.shape and a.pitch_in.shape == ref.pitch_in.shape
    assert float((a.mel_in - ref.mel_in).abs().mean()) > 0.5  # log-mel units: the inputs did change
    val, val_ref = (draw_batch(c, 8, 48, seed=3, step=5, stream=VALIDATION) for c in (noisy, clean))
    assert torch_equal(val.mel_in, val_ref.mel_in)  # validation stays clean


def test_a_fraction_p_of_training_items_is_degraded_and_the_rest_stays_clean(corpora):
    import copy
    import dataclasses

    from training.data.batches import draw_batch

    clean, noisy = corpora
    half = copy.copy(noisy)
    half.augment = dataclasses.replace(augment.DEFAULT, p=0.5)
    changed = []
    for step in range(4):
        a, ref = draw_batch(half, 8, 48, seed=3, step=step), draw_batch(clean, 8, 48, seed=3, step=step)
        changed += [not torch_equal(a.mel_in[k], ref.mel_in[k]) for k in range(8)]
    assert 0.25 <= np.mean(changed) <= 0.75  # 32 items at p = 0.5


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())


def test_stage_configs_take_augmentation_but_not_the_vocoder():
    from engine.errors import ConfigError
    from training.config import config_from_dict

    base = {"name": "t", "seed": 0, "models": {}}
    stage = {"steps": 1, "lr": 1e-3, "trainable": ["generator"], "weights": {}}
    cfg = config_from_dict({**base, "stages": {"stage1": {**stage, "augment": {"snr_db": [20, 30]}}}})
    assert cfg.stages["stage1"].augment == {"snr_db": [20, 30]}
    with pytest.raises(ConfigError, match="stages.vocoder.augment"):
        config_from_dict({**base, "stages": {"vocoder": {**stage, "augment": {}}}})
    with pytest.raises(ConfigError, match="stages.stage2.augment: .*unexpected keyword argument 'snr'"):
        config_from_dict({**base, "stages": {"stage2": {**stage, "augment": {"snr": 3}}}})
