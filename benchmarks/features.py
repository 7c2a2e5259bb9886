"""What the quality benchmark measures on an utterance.

* `analyse`: WORLD analysis (pyworld DIO + StoneMask F0, CheapTrick envelope) at 5 ms
  frames, and mel-cepstra of order 24 (c0..c24, all-pass alpha 0.42, SPTK's value for
  16 kHz) from the envelope by pysptk.sp2mc: the inputs of MCD and F0 RMSE.
* `utterance_features`: one vector of utterance-level prosodic and spectral statistics
  (F0 level/spread/range, energy, spectral tilt and centroid, MFCC means and spreads,
  a speaking-rate proxy) for the independent emotion classifier and strength ranker.

DIO rather than Harvest: Harvest is about 15x slower, and the evaluators need features
of every training utterance of the corpus.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

VERSION = 1
"""Bump when utterance_features changes: cached features and evaluators are keyed on it."""
SR = 16000
FRAME_MS = 5.0
MCEP_ORDER = 24
MCEP_ALPHA = 0.42
F0_FLOOR, F0_CEIL = 50.0, 800.0
TRIM_DB = 40.0
"""Leading/trailing frames more than this below the loudest frame are silence (trimmed for scoring)."""


def quiet_import(name: str):
    """Import a module whose import warns about its own deprecated imports (pyworld, pysptk and
    webrtcvad use pkg_resources, resemblyzer scipy.ndimage.morphology): those warnings are
    theirs to fix, and repeated on every run they bury ours. A missing module raises
    ModuleNotFoundError, which `evc` reports as one line naming the extra to install."""
    import importlib

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return importlib.import_module(name)


def _pyworld():
    return quiet_import("pyworld")


@dataclass(frozen=True)
class Analysis:
    """WORLD analysis of one utterance at FRAME_MS frames.

    f0: (T,) Hz, 0 where unvoiced; sp: (T, n_fft // 2 + 1) power envelope;
    mcep: (T, MCEP_ORDER + 1), c0 first.
    """

    f0: np.ndarray
    sp: np.ndarray
    mcep: np.ndarray

    @property
    def log_energy_db(self) -> np.ndarray:
        """(T,) frame energy of the envelope in dB."""
        return 10.0 * np.log10(self.sp.sum(axis=1) + 1e-20)

    def active_span(self) -> slice:
        """Frames from the first to the last within TRIM_DB of the loudest (the rest is silence)."""
        energy = self.log_energy_db
        loud = np.flatnonzero(energy >= energy.max() - TRIM_DB)
        return slice(int(loud[0]), int(loud[-1]) + 1)


def analyse(audio: np.ndarray, sr: int = SR) -> Analysis:
    """WORLD F0 and envelope, and mel-cepstra, of (N,) audio."""
    f0, sp, _ = world(audio, sr)
    return Analysis(f0, sp, sp2mc(sp))


@functools.lru_cache(maxsize=4)
def _freqt_matrix(n_fft: int, order: int, alpha: float) -> np.ndarray:
    """(n_fft, order + 1): SPTK's frequency warping (freqt) is linear in the cepstrum, so it is
    this matrix, built once from unit vectors instead of a C call per frame."""
    freqt = quiet_import("pysptk").freqt
    return np.stack([freqt(row, order, alpha) for row in np.eye(n_fft)])


def sp2mc(sp: np.ndarray, order: int = MCEP_ORDER, alpha: float = MCEP_ALPHA) -> np.ndarray:
    """Mel-cepstra (T, order + 1) of power envelopes sp (T, n_fft // 2 + 1), as pysptk.sp2mc computes
    them (log, real cepstrum with c0 halved, freqt), for all frames in one product."""
    c = np.fft.irfft(np.log(sp), axis=1)
    c[:, 0] /= 2.0
    return c @ _freqt_matrix(c.shape[1], order, alpha)


def world(audio: np.ndarray, sr: int = SR, aperiodicity: bool = False) -> tuple:
    """(f0 (T,), sp (T, F), ap (T, F) or None): WORLD analysis at FRAME_MS frames.

    The aperiodicity (D4C) is only needed to resynthesise and costs more than the rest.
    """
    pw = _pyworld()
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr)
    return f0, sp, (pw.d4c(x, f0, t, sr) if aperiodicity else None)


def f0_track(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """(T,) F0 in Hz at FRAME_MS frames, 0 where unvoiced (DIO + StoneMask)."""
    pw = _pyworld()
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    return pw.stonemask(x, f0, t, sr)


def tilt_db_per_octave(power: np.ndarray, freqs: np.ndarray, lo: float = 100.0, hi: float = 7000.0) -> float:
    """Slope of 10 log10(power) against log2(frequency) between lo and hi Hz: the spectral tilt."""
    band = (freqs >= lo) & (freqs <= hi)
    db = 10.0 * np.log10(power[band] + 1e-20)
    return float(np.polyfit(np.log2(freqs[band]), db, 1)[0])


N_MFCC = 13
_STFT = {"n_fft": 512, "hop_length": 160, "win_length": 400}


def _stats(x: np.ndarray) -> list[float]:
    return [float(x.mean()), float(x.std())] if x.size else [0.0, 0.0]


def _f0_features(f0: np.ndarray) -> list[float]:
    """Log-F0 mean, std, 5th and 95th percentile and their range, voiced fraction, std of its slope."""
    voiced = f0 > 0
    if voiced.sum() < 2:
        return [0.0] * 6 + [float(voiced.mean())]
    lf0 = np.log(f0[voiced])
    p5, p95 = np.percentile(lf0, [5, 95])
    return [float(lf0.mean()), float(lf0.std()), float(p5), float(p95), float(p95 - p5),
            float(np.diff(lf0).std()), float(voiced.mean())]


def _rate_proxy(energy_db: np.ndarray, active: np.ndarray, hop_s: float) -> float:
    """Energy peaks (syllable nuclei) per second of active speech."""
    from scipy.signal import find_peaks

    smooth = np.convolve(energy_db, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(smooth, prominence=6.0, distance=max(1, int(0.08 / hop_s)))
    return float(len(peaks) / max(active.sum() * hop_s, hop_s))


def utterance_features(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """(len(FEATURE_NAMES),) float64 prosodic and spectral statistics of one utterance.

    Energy, tilt, centroid and MFCC statistics are taken over active frames (within
    TRIM_DB of the loudest), so that pauses do not dilute them.
    """
    import librosa

    y = np.ascontiguousarray(audio, dtype=np.float32)
    power = np.abs(librosa.stft(y, **_STFT)) ** 2
    freqs = librosa.fft_frequencies(sr=sr, n_fft=_STFT["n_fft"])
    energy = 10.0 * np.log10(power.sum(axis=0) + 1e-12)
    active = energy >= energy.max() - TRIM_DB
    act = power[:, active]
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=act, sr=sr)), n_mfcc=N_MFCC)
    centroid = (freqs[:, None] * act).sum(0) / (act.sum(0) + 1e-12)
    e = energy[active]
    vector = (_f0_features(f0_track(y, sr))
              + [float(e.mean()), float(e.std()), float(e.max()), float(np.percentile(e, 90) - np.percentile(e, 10))]
              + [tilt_db_per_octave(act.mean(axis=1), freqs)] + _stats(centroid)
              + [float(v) for v in mfcc.mean(axis=1)] + [float(v) for v in mfcc.std(axis=1)]
              + [_rate_proxy(energy, active, _STFT["hop_length"] / sr), float(active.mean())])
    return np.asarray(vector, np.float64)


FEATURE_NAMES: tuple[str, ...] = (
    "lf0_mean", "lf0_std", "lf0_p5", "lf0_p95", "lf0_range", "lf0_slope_std", "voiced_frac",
    "energy_mean_db", "energy_std_db", "energy_max_db", "energy_range_db",
    "tilt_db_oct", "centroid_mean", "centroid_std",
    *(f"mfcc{i}_mean" for i in range(N_MFCC)), *(f"mfcc{i}_std" for i in range(N_MFCC)),
    "peaks_per_s", "active_frac",
)
