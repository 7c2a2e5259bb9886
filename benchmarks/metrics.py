"""Distances between a converted utterance and its parallel target: MCD and log-F0 RMSE.

MCD (dB) = 10 / ln 10 * sqrt(2 * sum_{d=1..24} (c_d - c'_d)^2), averaged over the
frames of a DTW path on mel-cepstra c1..c24 (c0, the energy, excluded: loudness is
scored by other metrics). Mel-cepstra: order 24, alpha 0.42, from WORLD's CheapTrick
envelope (benchmarks.features.analyse) at 5 ms frames, leading and trailing silence
trimmed. DTW: librosa.sequence.dtw, Euclidean frame cost, steps (1,1), (1,0), (0,1).
"""

from __future__ import annotations

import numpy as np

from benchmarks.features import Analysis

MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)
CENTS_PER_LN = 1200.0 / np.log(2.0)


def dtw_path(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (i, j) of the minimum-cost alignment of x (T, D) and y (U, D), in time order."""
    import librosa

    _, path = librosa.sequence.dtw(X=x.T, Y=y.T, metric="euclidean", backtrack=True)
    path = path[::-1]
    return path[:, 0].astype(np.int64), path[:, 1].astype(np.int64)


def frame_mcd(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-frame MCD (dB) of paired mel-cepstra x, y (N, D) without c0: (N,)."""
    return MCD_SCALE * np.sqrt(np.sum((x - y) ** 2, axis=1))


def aligned(a: Analysis, b: Analysis, dtw: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Frame pairs (i, j) of a and b after trimming silence: the DTW path on c1..c24, or
    frame k with frame k over the shorter length when dtw is False."""
    sa, sb = a.active_span(), b.active_span()
    if dtw:
        i, j = dtw_path(a.mcep[sa, 1:], b.mcep[sb, 1:])
    else:
        n = min(sa.stop - sa.start, sb.stop - sb.start)
        i = j = np.arange(n)
    return i + sa.start, j + sb.start


def mcd(a: Analysis, b: Analysis, dtw: bool = True) -> float:
    """Mel-cepstral distortion in dB between two analysed utterances (see module docstring)."""
    i, j = aligned(a, b, dtw)
    return float(frame_mcd(a.mcep[i, 1:], b.mcep[j, 1:]).mean())


def f0_rmse_cents(a: Analysis, b: Analysis) -> float:
    """RMSE of log-F0 in cents over DTW-aligned frame pairs voiced in both; nan when none are."""
    i, j = aligned(a, b)
    both = (a.f0[i] > 0) & (b.f0[j] > 0)
    if not both.any():
        return float("nan")
    diff = np.log(a.f0[i][both]) - np.log(b.f0[j][both])
    return float(CENTS_PER_LN * np.sqrt(np.mean(diff ** 2)))


def voicing_agreement(a: Analysis, b: Analysis) -> float:
    """Share of frames voiced (DIO) in both or in neither, over b's active span and the common
    length: for time-aligned renderings (a conversion and its source), not a DTW path."""
    span = b.active_span()
    stop = min(span.stop, a.f0.size)
    if stop <= span.start:
        return float("nan")
    return float(np.mean((a.f0[span.start:stop] > 0) == (b.f0[span.start:stop] > 0)))
