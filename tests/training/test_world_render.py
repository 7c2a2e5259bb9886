"""Emotion and timbre imposed through WORLD (training.corpus.world_render) do what their numbers say."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from training.corpus.profiles import PROFILES, Profile, Timbre
from training.corpus.world_render import analyse, impose

pytest.importorskip("pyworld")
RATE = 16000


def _vowel(f0: np.ndarray) -> np.ndarray:
    """A pulse train following f0 (per sample, Hz) through formants at 500 and 1500 Hz."""
    phase = np.cumsum(f0 / RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    y = pulses
    for fc, bw in ((500.0, 80.0), (1500.0, 120.0)):
        r, w = np.exp(-np.pi * bw / RATE), 2 * np.pi * fc / RATE
        y = lfilter([1.0 - r], [1.0, -2 * r * np.cos(w), r * r], y)
    return y


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """1 s of a vowel gliding 100 -> 140 Hz, 0.4 s of silence, 1 s more at 120 Hz."""
    glide = _vowel(np.linspace(100.0, 140.0, RATE))
    steady = _vowel(np.full(RATE, 120.0))
    x = np.concatenate([glide, np.zeros(int(0.4 * RATE)), steady])
    return 0.3 * x / np.abs(x).max()


def _voiced_f0(y: np.ndarray) -> np.ndarray:
    f0 = analyse(y, RATE)[0]
    return f0[f0 > 0]


NEUTRAL = PROFILES["Neutral"]


def test_neutral_keeps_length_pitch_and_silence(speech):
    y = impose(speech, RATE, NEUTRAL, 0.0)
    assert abs(y.size - speech.size) <= RATE * 0.005
    assert np.median(_voiced_f0(y)) == pytest.approx(np.median(_voiced_f0(speech)), rel=0.02)
    gap = y[int(1.1 * RATE):int(1.3 * RATE)]
    assert 10 * np.log10(np.mean(gap**2) / np.mean(y[: RATE] ** 2) + 1e-20) < -50


def test_pitch_level_and_range_move_as_the_profile_says(speech):
    src = np.log(_voiced_f0(speech))
    up = np.log(_voiced_f0(impose(speech, RATE, Profile(pitch=20, range=0, rate=0, gain_db=0, tilt=0), 1.0)))
    assert np.median(up) - np.median(src) == pytest.approx(np.log(1.2), abs=0.03)
    wide = np.log(_voiced_f0(impose(speech, RATE, Profile(pitch=0, range=100, rate=0, gain_db=0, tilt=0), 1.0)))
    assert np.std(wide) / np.std(src) == pytest.approx(2.0, rel=0.12)
    half = np.log(_voiced_f0(impose(speech, RATE, Profile(pitch=0, range=100, rate=0, gain_db=0, tilt=0), 0.5)))
    assert np.std(half) / np.std(src) == pytest.approx(1.5, rel=0.12)  # strength scales the offsets


def test_rate_shortens_and_lengthens(speech):
    fast = impose(speech, RATE, Profile(pitch=0, range=0, rate=25, gain_db=0, tilt=0), 1.0)
    slow = impose(speech, RATE, Profile(pitch=0, range=0, rate=-20, gain_db=0, tilt=0), 1.0)
    assert fast.size / speech.size == pytest.approx(1 / 1.25, rel=0.01)
    assert slow.size / speech.size == pytest.approx(1 / 0.8, rel=0.01)


def _first_formant(y: np.ndarray) -> float:
    f0, sp, _ = analyse(y, RATE)
    envelope = sp[f0 > 0].mean(axis=0)
    freqs = np.linspace(0, RATE / 2, envelope.size)
    band = (freqs > 300) & (freqs < 1000)
    return float(freqs[band][np.argmax(envelope[band])])


def test_timbre_warps_formants_shifts_register_and_adds_breath(speech):
    y = impose(speech, RATE, NEUTRAL, 0.0, Timbre(warp=1.15, register=0.8, breath=0.5))
    assert _first_formant(y) / _first_formant(speech) == pytest.approx(1.15, rel=0.05)
    assert np.median(_voiced_f0(y)) / np.median(_voiced_f0(speech)) == pytest.approx(0.8, rel=0.03)
    f0_src, _, ap_src = analyse(speech, RATE)
    f0_out, _, ap_out = analyse(y, RATE)
    assert ap_out[f0_out > 0].mean() > ap_src[f0_src > 0].mean() + 0.1  # breathier: more aperiodic energy
