"""Speakers and emotions of the synthetic corpus, and how an utterance is rendered.

An emotion is a profile of offsets from a speaker's neutral voice: pitch level and
range, speaking rate (through SSML prosody), loudness, and spectral tilt (a
post-filter). An utterance applies `strength` × the full offsets, strength in [0, 1]
(Neutral: 0), so emotions differ both in prosody and in spectrum, as in real speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter, resample_poly


@dataclass(frozen=True)
class Speaker:
    """An espeak voice+variant, its base pitch (espeak 0–100), and a timbre warp factor.

    warp > 1 raises formants and pitch together (a smaller vocal tract), < 1 lowers them.
    """

    voice: str
    pitch: int
    warp: float


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("en-us+m3", 45, 1.00), Speaker("en-us+f3", 55, 1.00), Speaker("en+m1", 40, 0.94),
    Speaker("en+f2", 60, 1.05), Speaker("en-us+m7", 50, 1.04), Speaker("en-us+f5", 48, 0.97),
    Speaker("en+m5", 35, 0.96), Speaker("en+f4", 62, 1.07), Speaker("en-us+m2", 55, 0.92),
    Speaker("en-us+f1", 52, 1.02), Speaker("en+m6", 42, 1.06), Speaker("en+f1", 58, 0.95),
)


@dataclass(frozen=True)
class Profile:
    """Full-strength offsets: pitch and range in %, rate in %, gain in dB, tilt in [-1, 1] (+ brighter)."""

    pitch: float
    range: float
    rate: float
    gain_db: float
    tilt: float


# espeak's SSML range saturates near +100% (its 0–100 range parameter), and a higher
# pitch narrows the range measured in semitones: offsets stay inside what it renders.
PROFILES: dict[str, Profile] = {
    "Neutral": Profile(0, 0, 0, 0, 0),
    "Angry": Profile(pitch=15, range=80, rate=15, gain_db=7, tilt=0.9),
    "Happy": Profile(pitch=25, range=95, rate=10, gain_db=3, tilt=0.4),
    "Sad": Profile(pitch=-18, range=-65, rate=-28, gain_db=-7, tilt=-0.8),
    "Surprise": Profile(pitch=45, range=95, rate=-5, gain_db=4, tilt=0.2),
}
TARGET_RMS_DB = -23.0
SAMPLE_RATE = 16000


def ssml(text: str, profile: Profile, strength: float) -> str:
    """SSML asking espeak for the profile's pitch, range and rate at `strength`."""
    def pct(v: float) -> str:
        return f"{v * strength:+.0f}%"
    return (f'<speak><prosody pitch="{pct(profile.pitch)}" range="{pct(profile.range)}" '
            f'rate="{pct(profile.rate)}">{text}</prosody></speak>')


def tilt_filter(x: np.ndarray, tilt: float) -> np.ndarray:
    """First-order spectral tilt: pre-emphasis for tilt > 0 (brighter), one-pole low-pass for < 0 (darker)."""
    if tilt > 0:
        return lfilter([1.0, -0.85 * tilt], [1.0], x)
    if tilt < 0:
        a = 0.85 * -tilt
        return lfilter([1.0 - a], [1.0, -a], x)
    return x


def render(samples: np.ndarray, rate: int, speaker: Speaker, profile: Profile, strength: float) -> np.ndarray:
    """espeak int16 samples at `rate` → (N,) float32 at 16 kHz with timbre, tilt and loudness applied.

    The timbre warp reinterprets the signal as sampled at rate·warp before resampling
    to 16 kHz, which scales every frequency (formants and pitch) by warp.
    """
    x = samples.astype(np.float64) / 32768.0
    src = int(round(rate * speaker.warp))
    g = np.gcd(src, SAMPLE_RATE)
    x = resample_poly(x, SAMPLE_RATE // g, src // g)
    x = tilt_filter(x, profile.tilt * strength)
    rms = np.sqrt(np.mean(x ** 2)) + 1e-12
    x *= 10 ** ((TARGET_RMS_DB + profile.gain_db * strength) / 20) / rms
    peak = np.abs(x).max()
    if peak > 0.98:  # a limiter, so loud emotions stay loud without clipping
        x *= 0.98 / peak
    return x.astype(np.float32)
