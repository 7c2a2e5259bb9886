"""Speakers and emotions of the synthetic corpus, and how an utterance is rendered.

An emotion is a profile of offsets from a speaker's neutral voice: pitch level and
range, speaking rate (through SSML prosody), loudness, and spectral tilt (a
post-filter). An utterance applies `strength` × the full offsets, strength in [0, 1]
(Neutral: 0), so emotions differ both in prosody and in spectrum, as in real speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import bilinear, lfilter, resample_poly


@dataclass(frozen=True)
class Speaker:
    """An espeak voice+variant, its base pitch (espeak 0–100), and a timbre warp factor.

    warp > 1 raises formants and pitch together (a smaller vocal tract), < 1 lowers them.
    """

    voice: str
    pitch: int
    warp: float


# Base pitches were calibrated (pyin median F0 of neutral speech) to spread the speakers
# over about 85-125 Hz (m) and 160-225 Hz (f), a semitone or more apart, keeping espeak's
# pitch parameter <= 65 so that emotions still have room to raise it (it saturates at 100).
# Voices were picked for distinct MFCC statistics: en+f2 sat too close to en-us+f3.
SPEAKERS: tuple[Speaker, ...] = (
    Speaker("en-us+m3", 45, 1.00), Speaker("en-us+f3", 48, 1.00), Speaker("en+m1", 47, 0.94),
    Speaker("en+steph", 63, 1.05), Speaker("en-us+m7", 57, 1.04), Speaker("en-us+f5", 38, 0.97),
    Speaker("en+m5", 43, 0.96), Speaker("en+f4", 52, 1.07), Speaker("en-us+m2", 62, 0.92),
    Speaker("en-us+f1", 37, 1.02), Speaker("en+m6", 65, 1.06), Speaker("en+f1", 60, 0.95),
)


@dataclass(frozen=True)
class Timbre:
    """A speaker made from a voice through WORLD (training.corpus.world_render): formant warp,
    register (an F0 factor) and breathiness in [0, 1)."""

    warp: float = 1.0
    register: float = 1.0
    breath: float = 0.0


NEUTRAL_TIMBRE = Timbre()


@dataclass(frozen=True)
class FestivalSpeaker:
    """A Festival voice (its name without 'voice_', training.corpus.festival) and the timbre that
    makes it a speaker of its own."""

    voice: str
    timbre: Timbre = NEUTRAL_TIMBRE


FESTIVAL_VOICES: tuple[str, ...] = (
    "czech_dita", "czech_krb", "czech_machac", "czech_ph", "lp_diphone", "pc_diphone", "suo_fi_lj_diphone",
    "hy_fi_mv_diphone", "msu_ru_nsh_clunits", "upc_ca_ona_hts",
)
"""Debian's Festival voices recorded from real people (festvox-czech-{dita,krb,machac,ph},
festvox-ita{lp,pc}16k, festvox-suopuhe-{lj,mv}, festvox-ru, festvox-ca-ona-hts), each reading the
English sentences with its own letter-to-sound rules. Not the Indic festvox-{hi,mr,te}-nsk
(Debian 12): they lack their *_phones.scm and render nothing, and once the Telugu one is
installed Festival cannot load its default voice, so every voice fails."""
TIMBRE_VARIANTS: tuple[Timbre, ...] = (Timbre(warp=1.12, register=1.15), Timbre(warp=0.89, register=0.85, breath=0.25))
"""Each voice also gives two speakers of their own: a shorter vocal tract and higher register, and a
longer, lower, breathier one. With 12 % warps the median nearest-other Resemblyzer cosine over the
42 speakers is 0.875 (8 % warps: 0.921; a speaker against itself on other sentences: 0.93-0.98),
`python -m benchmarks.speakers`."""
FESTIVAL_SPEAKERS: tuple[FestivalSpeaker, ...] = (
    tuple(FestivalSpeaker(v) for v in FESTIVAL_VOICES)
    + tuple(FestivalSpeaker(v, t) for t in TIMBRE_VARIANTS for v in FESTIVAL_VOICES))
CORPUS_SPEAKERS: tuple[Speaker | FestivalSpeaker, ...] = SPEAKERS + FESTIVAL_SPEAKERS
"""Corpus speakers 0011, 0012, ... in this order: the espeak voices first, so that a corpus of at most
12 speakers is the espeak-only corpus of version 2."""


@dataclass(frozen=True)
class Profile:
    """Full-strength offsets: pitch and range in %, rate in %, gain in dB, tilt in [-1, 1] (+ brighter)."""

    pitch: float
    range: float
    rate: float
    gain_db: float
    tilt: float


# espeak's SSML range saturates near +100% (its 0-100 range parameter), and a higher
# pitch narrows the range measured in semitones: offsets stay inside what it renders.
# Happy and Surprise share a high, wide pitch; Surprise is set apart by a much higher
# level and a slower rate, Happy by a faster rate and a brighter tilt.
PROFILES: dict[str, Profile] = {
    "Neutral": Profile(0, 0, 0, 0, 0),
    "Angry": Profile(pitch=15, range=70, rate=15, gain_db=7, tilt=0.9),
    "Happy": Profile(pitch=20, range=95, rate=12, gain_db=3, tilt=0.5),
    "Sad": Profile(pitch=-18, range=-65, rate=-28, gain_db=-7, tilt=-0.8),
    "Surprise": Profile(pitch=65, range=95, rate=-8, gain_db=4, tilt=0.3),
}
TARGET_RMS_DB = -27.0  # leaves headroom for +7 dB (Angry) under a 0.98 peak
TILT_DB, TILT_CENTRE_HZ = 12.0, 500.0
SAMPLE_RATE = 16000


def prosody(profile: Profile, strength: float) -> dict[str, int]:
    """The whole-percent SSML offsets espeak receives at `strength` (what metadata records as used)."""
    return {"pitch_pct": round(profile.pitch * strength), "range_pct": round(profile.range * strength),
            "rate_pct": round(profile.rate * strength)}


def ssml(text: str, profile: Profile, strength: float) -> str:
    """SSML asking espeak for the profile's pitch, range and rate at `strength`."""
    p = prosody(profile, strength)
    return (f'<speak><prosody pitch="{p["pitch_pct"]:+d}%" range="{p["range_pct"]:+d}%" '
            f'rate="{p["rate_pct"]:+d}%">{text}</prosody></speak>')


def tilt_filter(x: np.ndarray, tilt: float) -> np.ndarray:
    """x: (N,) at 16 kHz. A first-order shelf centred at TILT_CENTRE_HZ: the band above it gains
    tilt * TILT_DB dB over the band below (tilt > 0 brighter, < 0 darker).

    A shelf rather than pre-emphasis: its effect is bounded (one number in dB) and the band of
    the fundamental stays as it was, so loudness remains gain_db's alone. (pyin still tracks
    fewer voiced frames in bright audio: low-pass below ~1 kHz before measuring F0.)
    """
    if tilt == 0:
        return x
    g = 10 ** (TILT_DB * tilt / 20)
    w = 2 * np.pi * TILT_CENTRE_HZ
    b, a = bilinear([np.sqrt(g) / w, 1.0], [1 / (np.sqrt(g) * w), 1.0], fs=SAMPLE_RATE)
    return lfilter(b, a, x)


def to_corpus_rate(samples: np.ndarray, rate: int, warp: float = 1.0) -> np.ndarray:
    """int16 samples at `rate` → (N,) float64 at 16 kHz, every frequency (formants and pitch) scaled
    by warp: the signal is reinterpreted as sampled at rate·warp before resampling."""
    x = samples.astype(np.float64) / 32768.0
    src = 50 * round(rate * warp / 50)  # a multiple of 50 Hz keeps the polyphase ratio small (fast)
    g = np.gcd(src, SAMPLE_RATE)
    return resample_poly(x, SAMPLE_RATE // g, src // g)


def render(samples: np.ndarray, rate: int, speaker: Speaker, profile: Profile, strength: float) -> np.ndarray:
    """espeak int16 samples at `rate` → (N,) float32 at 16 kHz with timbre, tilt and loudness applied."""
    return finish(to_corpus_rate(samples, rate, speaker.warp), profile, strength)


def finish(x: np.ndarray, profile: Profile, strength: float) -> np.ndarray:
    """(N,) float64 at 16 kHz → float32 with the profile's tilt and loudness at `strength`, limited to 0.98."""
    x = tilt_filter(x, profile.tilt * strength)
    rms = np.sqrt(np.mean(x ** 2)) + 1e-12
    x *= 10 ** ((TARGET_RMS_DB + profile.gain_db * strength) / 20) / rms
    peak = np.abs(x).max()
    if peak > 0.98:  # a limiter, so loud emotions stay loud without clipping
        x *= 0.98 / peak
    return x.astype(np.float32)
