"""Emotion and timbre imposed after synthesis, through WORLD (for voices that take no SSML prosody).

A Festival voice renders a sentence neutrally; this turns it into another speaker
(Timbre: vocal-tract length, register, breathiness) speaking with an emotion profile
(training.corpus.profiles.Profile at a strength), the same offsets espeak receives as
SSML, with the same meaning:

* pitch: the voiced log-F0 level moves by log(1 + pitch% · s);
* range: voiced log-F0 excursions about the utterance's mean scale by 1 + range% · s;
* rate: the frames are resampled in time by 1 / (1 + rate% · s) (faster is shorter);
* loudness and tilt: afterwards, by profiles.render's own post-filter and level.

Timbre acts on the analysis too: the spectral envelope is read at f / warp (warp > 1 a
shorter vocal tract: formants up), F0 scales by `register`, and aperiodicity rises
towards 1 by `breath` (0 none, 1 whisper-like). Unvoiced frames stay unvoiced: only
voiced F0 is moved, so silence and consonants keep their place.
"""

from __future__ import annotations

import numpy as np

from training.corpus.profiles import NEUTRAL_TIMBRE, Profile, Timbre, prosody
from training.data.analysis import load_pyworld

FRAME_MS = 5.0
F0_FLOOR, F0_CEIL = 50.0, 700.0


def analyse(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0 (T,), spectral envelope (T, F), aperiodicity (T, F)) of x (N,) at FRAME_MS frames."""
    pw = load_pyworld()
    x = np.ascontiguousarray(x, np.float64)
    f0, t = pw.dio(x, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, rate)  # dio + StoneMask: clean synthetic speech needs no harvest (10x slower)
    return f0, pw.cheaptrick(x, f0, t, rate), pw.d4c(x, f0, t, rate)


def move_pitch(f0: np.ndarray, level: float, spread: float) -> np.ndarray:
    """Voiced f0 (Hz, 0 unvoiced): excursions of log-F0 about its voiced mean scaled by `spread`,
    then the whole contour multiplied by `level`."""
    voiced = f0 > 0
    out = np.zeros_like(f0)
    if voiced.any():
        lf = np.log(f0[voiced])
        out[voiced] = np.exp(lf.mean() + spread * (lf - lf.mean())) * level
    return out


def stretch(frames: np.ndarray, factor: float) -> np.ndarray:
    """(T, ...) frames resampled in time to round(T * factor) by nearest frame (keeps voicing crisp)."""
    n = max(1, round(frames.shape[0] * factor))
    idx = np.minimum((np.arange(n) / factor).round().astype(int), frames.shape[0] - 1)
    return frames[idx]


def warp_envelope(sp: np.ndarray, warp: float) -> np.ndarray:
    """(T, F) power envelope read at f / warp (linear interpolation; the top bin holds past the edge)."""
    if warp == 1.0:
        return sp
    bins = np.arange(sp.shape[1])
    src = np.clip(bins / warp, 0, sp.shape[1] - 1)
    return np.stack([np.interp(src, bins, row) for row in sp])


def impose(x: np.ndarray, rate: int, profile: Profile, strength: float,
           timbre: Timbre = NEUTRAL_TIMBRE) -> np.ndarray:
    """(N,) neutral speech → (M,) float64 speech of the timbre's speaker with the profile at `strength`.

    Loudness and tilt are left to profiles.render-like post-processing; M follows the rate offset.
    """
    p = prosody(profile, strength)  # the same whole-percent offsets an espeak voice gets
    f0, sp, ap = analyse(x, rate)
    f0 = move_pitch(f0, timbre.register * (1 + p["pitch_pct"] / 100), 1 + p["range_pct"] / 100)
    sp = warp_envelope(sp, timbre.warp)
    ap = 1.0 - (1.0 - ap) * (1.0 - timbre.breath)
    factor = 1.0 / (1.0 + p["rate_pct"] / 100)
    f0, sp, ap = stretch(f0, factor), stretch(sp, factor), stretch(ap, factor)
    y = load_pyworld().synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap),
                              rate, FRAME_MS)
    return y
