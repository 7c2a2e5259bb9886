"""Microphone realism for training inputs: room, noise, microphone, level, clipping.

A user speaks into a cheap capsule in a room, at whatever level. `degrade` turns a
clean rendering into that, drawn from a seeded generator, in the order sound meets them:

    clean ─► room (generated impulse response) ─► + noise at an SNR ─► microphone EQ
          ─► level (peak in dBFS) ─► soft clipping (sometimes)

Only the model's inputs are degraded; its targets stay the clean rendering, so it
learns to clean as it converts. Nothing is written into the corpus: every draw is a
pure function of the generator, so a training step's batch is the same on resume.

The room is a stochastic impulse response (Polack's model): a direct path, a few early
reflections within 20 ms, then Gaussian noise decaying by 60 dB over RT60, its level
set by a drawn direct-to-reverberant ratio. Noise is coloured (1/f^beta spectrum),
mains hum (50 or 60 Hz and harmonics) or babble (other utterances summed). The SNR is
taken at the capsule (before its colouring) against active speech (frames within 40 dB
of the loudest), as a listener hears it, not an average diluted by pauses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve, sosfilt

ACTIVE_RANGE_DB = 40.0
"""Frames within this many dB of the loudest count as active speech."""
FRAME_S = 0.02
NOISE_KINDS = ("coloured", "hum", "babble")


@dataclass(frozen=True)
class Degradation:
    """The ranges each draw comes from (uniform unless said otherwise); p: the fraction of training
    items degraded (the rest stay clean, as a good microphone in a quiet room records them)."""

    p: float = 1.0
    snr_db: tuple[float, float] = (15.0, 40.0)
    level_dbfs: tuple[float, float] = (-40.0, -6.0)
    rt60_s: tuple[float, float] = (0.15, 0.8)
    drr_db: tuple[float, float] = (0.0, 12.0)
    reverb_p: float = 0.7
    clip_p: float = 0.2
    clip_drive_db: tuple[float, float] = (3.0, 12.0)
    highpass_hz: tuple[float, float] = (60.0, 300.0)
    eq_gain_db: tuple[float, float] = (-8.0, 8.0)
    eq_bands: int = 3
    babble_talkers: tuple[int, int] = (3, 6)


DEFAULT = Degradation()


def active_power(x: np.ndarray, rate: int) -> float:
    """Mean power of x's active frames (within ACTIVE_RANGE_DB of the loudest 20 ms frame)."""
    n = max(1, int(FRAME_S * rate))
    frames = x[: x.size // n * n].reshape(-1, n) if x.size >= n else x[None]
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    if not power.size or power.max() <= 0:
        return 0.0
    return float(power[power >= power.max() * 10 ** (-ACTIVE_RANGE_DB / 10)].mean())


def room_impulse(rate: int, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) impulse response: direct path 1.0 at sample 0, early reflections, exponential tail.

    The tail is scaled so that direct energy / reverberant energy = drr_db.
    """
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # 60 dB down at t = rt60
    tail[: int(0.002 * rate)] = 0.0  # nothing arrives before the first reflection
    for _ in range(int(rng.integers(3, 8))):
        tail[int(rng.uniform(0.002, 0.02) * rate)] += rng.uniform(-1.0, 1.0)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    tail[0] = 1.0
    return tail.astype(np.float32)


def coloured_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) noise with a 1/f^beta power spectrum (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spectrum / f ** (beta / 2), n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def hum(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) mains hum: 50 or 60 Hz and odd harmonics with random amplitudes and phases, unit RMS."""
    base = rng.choice([50.0, 60.0])
    t = np.arange(n) / rate
    y = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
            for k in (1, 3, 5, 7) if base * k < rate / 2)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def babble(n: int, others: list[np.ndarray], talkers: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) sum of `talkers` random stretches of other utterances (looped where short), unit RMS."""
    y = np.zeros(n)
    for _ in range(talkers):
        src = others[int(rng.integers(len(others)))]
        start = int(rng.integers(src.size))
        y += np.resize(np.roll(src, -start), n) / (np.sqrt(np.mean(src**2)) + 1e-12)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def microphone(x: np.ndarray, rate: int, cfg: Degradation, rng: np.random.Generator) -> np.ndarray:
    """x through a capsule: a 2nd-order high-pass and `eq_bands` random peaking bands."""
    sos = [_highpass(rng.uniform(*cfg.highpass_hz), rate)]
    for _ in range(cfg.eq_bands):
        f0 = np.exp(rng.uniform(np.log(200.0), np.log(0.45 * rate)))
        sos.append(_peaking(f0, rng.uniform(*cfg.eq_gain_db), rng.uniform(0.5, 2.0), rate))
    return sosfilt(np.array(sos), x)


def _highpass(fc: float, rate: int) -> list[float]:
    """RBJ cookbook 2nd-order Butterworth high-pass as one SOS row."""
    w = 2 * np.pi * fc / rate
    alpha = np.sin(w) / np.sqrt(2.0)
    c = np.cos(w)
    b = np.array([(1 + c) / 2, -(1 + c), (1 + c) / 2])
    a = np.array([1 + alpha, -2 * c, 1 - alpha])
    return [*(b / a[0]), *(a / a[0])]


def _peaking(f0: float, gain_db: float, q: float, rate: int) -> list[float]:
    """RBJ cookbook peaking EQ as one SOS row."""
    amp = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / rate
    alpha = np.sin(w) / (2 * q)
    c = np.cos(w)
    b = np.array([1 + alpha * amp, -2 * c, 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * c, 1 - alpha / amp])
    return [*(b / a[0]), *(a / a[0])]


def soft_clip(x: np.ndarray, drive_db: float) -> np.ndarray:
    """tanh saturation that drives x by drive_db into a ceiling of full scale."""
    g = 10 ** (drive_db / 20)
    return np.tanh(g * x) / np.tanh(g) if g > 1 else x


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rate: int) -> np.ndarray:
    """speech + noise scaled so that active speech power / mean noise power = snr_db."""
    scale = np.sqrt(active_power(speech, rate) * 10 ** (-snr_db / 10) / max(float(np.mean(noise**2)), 1e-20))
    return speech + scale * noise


def degrade(x: np.ndarray, rate: int, rng: np.random.Generator, cfg: Degradation = DEFAULT,
            others: list[np.ndarray] | None = None) -> tuple[np.ndarray, dict]:
    """(n,) clean float32 → ((n,) float32 as a microphone records it, the parameters drawn).

    others: other utterances for babble noise (without them babble is not drawn).
    params: snr_db, noise, level_dbfs (the peak before clipping), rt60_s (None: dry), drr_db,
    clip_drive_db (None: no clipping).
    """
    x = np.asarray(x, np.float64)
    params: dict = {"rt60_s": None, "drr_db": None, "clip_drive_db": None}
    if rng.random() < cfg.reverb_p:
        params["rt60_s"], params["drr_db"] = float(rng.uniform(*cfg.rt60_s)), float(rng.uniform(*cfg.drr_db))
        x = fftconvolve(x, room_impulse(rate, params["rt60_s"], params["drr_db"], rng))[: x.size]
    kinds = NOISE_KINDS if others else NOISE_KINDS[:2]
    params["noise"] = kind = str(kinds[int(rng.integers(len(kinds)))])
    noise = {"coloured": lambda: coloured_noise(x.size, rng.uniform(0.0, 2.0), rng),
             "hum": lambda: hum(x.size, rate, rng),
             "babble": lambda: babble(x.size, others, int(rng.integers(cfg.babble_talkers[0],
                                                                       cfg.babble_talkers[1] + 1)), rng)}[kind]()
    params["snr_db"] = snr = float(rng.uniform(*cfg.snr_db))
    x = mix_at_snr(x, noise, snr, rate)
    x = microphone(x, rate, cfg, rng)
    params["level_dbfs"] = level = float(rng.uniform(*cfg.level_dbfs))
    x = x * (10 ** (level / 20) / max(float(np.abs(x).max()), 1e-12))
    if rng.random() < cfg.clip_p:
        params["clip_drive_db"] = drive = float(rng.uniform(*cfg.clip_drive_db))
        x = soft_clip(x, drive)
    return np.clip(x, -1.0, 1.0).astype(np.float32), params
