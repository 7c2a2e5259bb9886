"""Deterministic test signals: speech-like input for timing runs, clicks for delay measurement.

Benchmarks never read tests/: what they feed the engine is generated here.
"""

from __future__ import annotations

import numpy as np


def probe_speech(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Harmonics with a gliding pitch under a syllable envelope, plus noise bursts: (N,) float32.

    The engine's cost does not depend on the signal, but silence would hide NaN or
    denormal slow paths that real speech (and real noise floors) exercise.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    pitch = 150.0 * (1.0 + 0.2 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
    noise = rng.standard_normal(n) * (np.sin(2 * np.pi * 1.1 * t) > 0.7)
    x = 0.2 * voiced * syllables + 0.03 * noise + 1e-4 * rng.standard_normal(n)
    return (0.5 * x / max(1e-9, np.abs(x).max())).astype(np.float32)


def click_train(seconds: float, period_s: float, sr: int = 16000, first_s: float = 0.5,
                click_ms: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Short noise bursts every period_s, each a different one: ((N,) float32, (K,) int64 start samples).

    Burst k is click(k): a noise burst, unlike a single-sample impulse, survives a vocoder
    or a resampler with energy to spare, and since no two bursts are alike each can be
    found by cross-correlation even when it arrives after the next one was sent.
    """
    n = int(round(seconds * sr))
    starts = np.arange(int(first_s * sr), n - int(period_s * sr) // 2, int(round(period_s * sr)), dtype=np.int64)
    x = np.zeros(n, np.float32)
    for k, s in enumerate(starts):
        burst = click(k, sr, click_ms)
        x[s:s + burst.size] = burst[: n - s]
    return x, starts


def click(k: int, sr: int = 16000, ms: float = 20.0) -> np.ndarray:
    """Burst k of click_train: Hann-windowed white noise, (round(ms * sr / 1000),) float32, peak 0.8."""
    m = max(1, int(round(ms * sr / 1000)))
    burst = np.random.default_rng([1234, k]).standard_normal(m) * np.hanning(m + 2)[1:-1]
    return (0.8 * burst / max(1e-9, np.abs(burst).max())).astype(np.float32)
