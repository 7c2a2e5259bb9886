"""Baselines the model is compared with, given what the model is given: a source
utterance and a reference utterance of the target emotion (another sentence).

* zero effort: the source unchanged. Any useful conversion must beat it.
* prosody transplant (DSP): WORLD analysis-resynthesis of the source with the
  reference's global statistics: log-F0 mean and standard deviation (pitch level and
  range), long-term spectral tilt, and active-speech loudness. Timing is kept, as the
  streaming model keeps it.

And the floor every table shows beside them (it is given the target, so it is a
reference, not a baseline):

* oracle: the target itself through WORLD analysis and synthesis (DIO + StoneMask,
  CheapTrick, D4C): what a perfect conversion loses to a WORLD-quality synthesiser.
"""

from __future__ import annotations

import numpy as np

from benchmarks.features import FRAME_MS, SR, TRIM_DB, quiet_import, tilt_db_per_octave, world


def zero_effort(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return source


def _log_f0_stats(f0: np.ndarray) -> tuple[float, float] | None:
    voiced = f0[f0 > 0]
    if voiced.size < 2:
        return None
    lf0 = np.log(voiced)
    return float(lf0.mean()), float(lf0.std())


def _active(sp: np.ndarray) -> np.ndarray:
    """(T,) bool: frames within TRIM_DB of the loudest."""
    energy = 10.0 * np.log10(sp.sum(1) + 1e-20)
    return energy >= energy.max() - TRIM_DB


def _tilt(sp: np.ndarray, sr: int) -> float:
    freqs = np.linspace(0, sr / 2, sp.shape[1])
    return tilt_db_per_octave(sp[_active(sp)].mean(0), freqs)


def _active_rms_db(audio: np.ndarray, sr: int) -> float:
    n = int(sr * FRAME_MS / 1000)
    frames = audio[: audio.size // n * n].reshape(-1, n).astype(np.float64)
    power = (frames ** 2).mean(1)
    db = 10 * np.log10(power + 1e-20)
    return float(10 * np.log10(power[db >= db.max() - TRIM_DB].mean() + 1e-20))


def map_f0(f0: np.ndarray, source: tuple[float, float], target: tuple[float, float]) -> np.ndarray:
    """Voiced log-F0 standardised by source (mean, std) and rescaled to target's; 0 stays 0."""
    out = np.zeros_like(f0)
    voiced = f0 > 0
    (ms, ss), (mt, st) = source, target
    out[voiced] = np.exp((np.log(f0[voiced]) - ms) / max(ss, 1e-6) * st + mt)
    return out


def tilt_filter(sp: np.ndarray, db_per_octave: float, sr: int) -> np.ndarray:
    """sp (T, F) power envelope with db_per_octave added to its slope (0 dB at 1 kHz)."""
    freqs = np.maximum(np.linspace(0, sr / 2, sp.shape[1]), 50.0)
    return sp * 10.0 ** (db_per_octave * np.log2(freqs / 1000.0) / 10.0)


def _synthesize(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, n: int, sr: int) -> np.ndarray:
    """WORLD synthesis of FRAME_MS frames, cut or zero-padded to n samples: (n,) float64."""
    y = quiet_import("pyworld").synthesize(f0, sp, ap, sr, FRAME_MS)[:n]
    return np.pad(y, (0, n - y.size))


def world_resynthesis(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """audio (N,) through WORLD analysis and synthesis: (N,) float32."""
    return _synthesize(*world(audio, sr, aperiodicity=True), audio.size, sr).astype(np.float32)


def prosody_transplant(source: np.ndarray, reference: np.ndarray, sr: int = SR) -> np.ndarray:
    """The source resynthesised with the reference's pitch level/range, tilt and loudness: (N,) float32."""
    f0, sp, ap = world(source, sr, aperiodicity=True)
    f0_ref, sp_ref, _ = world(reference, sr)
    stats, stats_ref = _log_f0_stats(f0), _log_f0_stats(f0_ref)
    if stats is not None and stats_ref is not None:
        f0 = map_f0(f0, stats, stats_ref)
    sp = tilt_filter(sp, _tilt(sp_ref, sr) - _tilt(sp, sr), sr)
    y = _synthesize(f0, sp, ap, source.size, sr)
    gain_db = _active_rms_db(reference, sr) - _active_rms_db(y, sr)
    return (y * 10.0 ** (gain_db / 20.0)).astype(np.float32)
