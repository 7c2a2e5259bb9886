"""Generated audio fixtures."""

from __future__ import annotations

import numpy as np


def speech_like(seconds: float, sr: int = 16000, seed: int = 0, f0: float = 140.0) -> np.ndarray:
    """Voiced harmonics with a moving pitch and syllable envelope, plus noise bursts and silences.

    Returns (N,) float32 in [-1, 1]: exercises the log floor (silence), voiced
    frames and broadband frames, like speech does.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    pitch = f0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t) + 0.05 * rng.standard_normal())
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, np.pi)), 0, None) ** 2
    noise = rng.standard_normal(n) * (np.sin(2 * np.pi * 1.3 * t) > 0.8)
    x = 0.25 * voiced * syllables + 0.05 * noise
    x[: int(0.1 * sr)] = 0.0
    x[int(0.55 * n): int(0.6 * n)] = 0.0
    return (0.9 * x / max(1e-9, np.abs(x).max())).astype(np.float32)
