"""Training targets (training/data/analysis.py, training/data/pitch.py): WORLD pitch and
envelope targets, their on-disk cache, the lookahead delay, and the neutral register that
the generator's pitch input gets in training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import training.data.analysis as analysis
from engine.pitch import FEATURES, PRIOR_LF0, running_register
from engine.signal import SignalSpec
from training.data.analysis import (
    UNVOICED_LOG_AMP,
    analyse_files,
    cache_dir,
    delayed,
    delayed_pitch,
    envelope_cepstra,
    pitch_targets,
    silent_envelope,
)
from training.data.pitch import deemotionalised, neutral_registers, register_offset, voiced_stats

SR = 16000
REG_MEAN, REG_STD = FEATURES.index("reg_mean"), FEATURES.index("reg_std")


def tone_then_silence(f0: float = 200.0) -> np.ndarray:
    """0.5 s of a harmonic tone then 0.3 s of silence, (12800,) float32."""
    t = np.arange(SR // 2) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10))
    return np.concatenate([0.4 * x / np.abs(x).max(), np.zeros(int(0.3 * SR))]).astype(np.float32)


def test_the_cache_lives_under_the_tests_private_xdg_cache():
    """tests/conftest.py points XDG_CACHE_HOME at a temporary directory: no test writes the
    user's ~/.cache."""
    assert cache_dir() == Path(os.environ["XDG_CACHE_HOME"]) / "evc" / "analysis"
    assert not cache_dir().is_relative_to(Path.home() / ".cache")


def test_pitch_targets_hold_log_f0_through_unvoiced_frames(spec: SignalSpec):
    got = pitch_targets(tone_then_silence(), spec)
    assert got.shape == (2, 80) and got.dtype == np.float32
    lf0, voiced = got
    assert voiced[5:45].min() == 1.0 and voiced[55:].max() == 0.0
    assert np.median(np.abs(lf0[5:45] - np.log(200.0))) * 1200 / np.log(2) < 5.0  # cents
    np.testing.assert_array_equal(lf0[55:], lf0[np.flatnonzero(voiced)[-1]])
    assert pitch_targets(np.zeros(SR // 2, np.float32), spec)[0] == pytest.approx(PRIOR_LF0)  # never voiced


def test_envelope_cepstra_close_the_harmonic_filter_in_unvoiced_frames():
    """Unvoiced: harmonic filter flat at UNVOICED_LOG_AMP (c0 alone), noise = the whole envelope.
    Voiced: the aperiodicity (scaled by 0.5) splits the envelope between the two."""
    bins = 257
    sp, ap = np.full((2, bins), np.exp(-4.0)), np.full((2, bins), 0.4)
    ceps = envelope_cepstra(sp, ap, np.array([False, True]), order=8)
    assert ceps.shape == (16, 2)
    harm, noise = ceps[:8], ceps[8:]
    np.testing.assert_allclose(harm[:, 0], [UNVOICED_LOG_AMP] + [0] * 7, atol=1e-5)
    np.testing.assert_allclose(noise[:, 0], [-2.0] + [0] * 7, atol=1e-5)  # 0.5 log sp
    a = 0.5 * 0.4
    assert harm[0, 1] == pytest.approx(-2.0 + 0.5 * np.log(1 - a ** 2), abs=1e-5)
    assert noise[0, 1] == pytest.approx(-2.0 + np.log(a), abs=1e-5)


def test_delays_shift_targets_by_the_lookahead():
    """Frame k of a model with lookahead L renders hop k - L: targets move L frames later."""
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(delayed(x, 0, 0.0), x)
    np.testing.assert_array_equal(delayed(x, 2, [-1.0, -2.0]), [[-1, -1, 0, 1, 2, 3], [-2, -2, 6, 7, 8, 9]])
    pitch = np.array([[5.0, 5.1, 5.2], [1.0, 1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(delayed_pitch(pitch, 1), np.array([[5.0, 5.0, 5.1], [0.0, 1.0, 1.0]], np.float32))
    silent = silent_envelope(4)
    assert silent.shape == (8,) and silent[0] == silent[4] == UNVOICED_LOG_AMP
    assert np.count_nonzero(silent) == 2


def test_analyses_are_cached_per_file_and_kind_and_invalidated_by_a_change(spec, tmp_path, monkeypatch):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_then_silence(), SR, subtype="PCM_16")
    calls = []
    real = analysis.pitch_targets
    monkeypatch.setattr(analysis, "pitch_targets", lambda audio, s: calls.append(1) or real(audio, s))
    cache = tmp_path / "cache"
    first = analyse_files([wav], "pitch", spec, cache=cache)[0]
    again = analyse_files([wav], "pitch", spec, cache=cache)[0]
    assert len(calls) == 1 and len(list(cache.glob("*.npy"))) == 1
    np.testing.assert_array_equal(first, again)
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(b"torn")  # a crash mid-write elsewhere: recomputed, not an error
    np.testing.assert_array_equal(analyse_files([wav], "pitch", spec, cache=cache)[0], first)
    sf.write(wav, tone_then_silence(150.0), SR, subtype="PCM_16")  # a new file at the same path
    os.utime(wav, ns=(entry.stat().st_mtime_ns + 10**9,) * 2)
    changed = analyse_files([wav], "pitch", spec, cache=cache)[0]
    assert len(calls) == 3 and abs(np.median(changed[0, 5:45]) - np.log(150.0)) < 0.01
    analyse_files([wav], "pitch", spec, cache=None)
    assert len(calls) == 4 and len(list(cache.glob("*.npy"))) == 2


def _features(lf0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Tracker-like features (4, T): voicing, the contour and the tracker's running register of it."""
    out = np.zeros((4, lf0.size), np.float32)
    out[0], out[1] = voiced, lf0
    out[REG_MEAN:] = running_register(voiced, lf0)
    return out


def test_emotional_utterances_get_the_speakers_neutral_register():
    """An utterance a fifth higher and twice as wide as the speaker's neutral voice: its contour
    is mapped onto the neutral register (mean and spread) and its register rows are the
    tracker's running register of that mapped contour, prior transient included, so no row
    carries the emotion's level (the generator must take it from the embedding)."""
    rng = np.random.default_rng(0)
    voiced = (rng.random(200) < 0.7).astype(np.float32)
    neutral = _features(np.log(120.0) + 0.05 * rng.standard_normal(200), voiced)
    angry = _features(np.log(180.0) + 0.10 * rng.standard_normal(200), voiced)
    registers = neutral_registers([neutral, angry], ["0011", "0011"], [True, False])
    mean, std = registers["0011"]
    assert mean == pytest.approx(voiced_stats(neutral)[0]) and std == pytest.approx(voiced_stats(neutral)[1])
    moved = deemotionalised(angry, registers["0011"])
    own_mean, own_std = voiced_stats(angry)
    np.testing.assert_array_equal(moved[0], angry[0])
    np.testing.assert_allclose(moved[1], mean + (angry[1] - own_mean) * std / own_std, atol=1e-5)
    assert voiced_stats(moved) == pytest.approx((mean, std), abs=1e-5)
    np.testing.assert_allclose(moved[REG_MEAN:], running_register(voiced, moved[1]), atol=1e-6)
    # Same dynamics as the neutral utterance's own register: the first frames are as far from
    # the prior in both, so the prior's transient tells nothing about the emotion.
    np.testing.assert_allclose(moved[REG_MEAN, :20], neutral[REG_MEAN, :20], atol=0.02)
    assert moved[REG_MEAN, -1] == pytest.approx(mean, abs=0.02)
    assert deemotionalised(angry, None) is angry  # a speaker without neutral speech: unchanged


def test_the_register_offset_is_how_far_the_emotion_moves_pitch_level_and_range():
    rng = np.random.default_rng(1)
    voiced = (rng.random(200) < 0.7).astype(np.float32)
    angry = _features(np.log(180.0) + 0.10 * rng.standard_normal(200), voiced)
    own_mean, own_std = voiced_stats(angry)
    offset = register_offset(angry, (np.log(120.0), 0.05))
    assert offset.dtype == np.float32 and offset.shape == (2,)
    assert offset == pytest.approx([own_mean - np.log(120.0), np.log(own_std / 0.05)], abs=1e-5)
    assert offset[0] == pytest.approx(np.log(1.5), abs=0.02)
    assert not register_offset(angry, None).any()
    assert not register_offset(_features(np.zeros(200), np.zeros(200, np.float32)), (4.8, 0.1)).any()
