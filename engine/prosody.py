"""A reference's prosody, measured, and the move from its neutral voice the step graph imposes.

A bank entry keeps its reference's voiced log-F0 mean and spread and its voiced level
(``prosody_stats``); an emotion's move is the entry's against the neutral entry's, scaled by
the strength knob (``prosody_move``), and the step graph applies it to the generator's output:
the pitch relative to the source's own register, the loudness as the reference's own voiced level
(the neutral entry's moved by the strength), whatever the microphone's level
(training.models.prosody.ProsodyMove).
"""

from __future__ import annotations

import numpy as np

from engine.anchor import frame_levels
from engine.reference import Reference

STATS = ("lf0_mean", "lf0_std", "level")
MOVE_SIZE = 5
"""[pitch_weight, lf0_shift, log_spread, level_weight, level_target] (training.models.prosody)."""
MIN_STD = 1e-3


def prosody_stats(ref: Reference) -> np.ndarray | None:
    """(3,) float32 [mean, standard deviation of the natural-log F0, mean log of the summed mel
    magnitudes] over the voiced frames of an analysed reference (the tracker centred); None without
    a voiced frame."""
    voiced = ref.voiced
    if not voiced.any():
        return None
    level = frame_levels(ref.mel.astype(np.float64))
    lf0 = ref.pitch[0][voiced].astype(np.float64)
    return np.array([lf0.mean(), max(lf0.std(), MIN_STD), level[voiced].mean()], np.float32)


def prosody_move(stats: np.ndarray | None, neutral: np.ndarray | None, strength: float,
                 pitch_weight: float, level_weight: float) -> np.ndarray:
    """(MOVE_SIZE,) float32: the pitch move from `neutral`'s stats to `stats` (each (3,) or None) and
    the voiced level on the way from `neutral`'s to `stats`', both times strength, imposed with the
    given weights; zeros (the generator's own prosody) when either is None."""
    if stats is None or neutral is None:
        return np.zeros(MOVE_SIZE, np.float32)
    shift = strength * (stats[0] - neutral[0])
    spread = strength * np.log(stats[1] / neutral[1])
    level = neutral[2] + strength * (stats[2] - neutral[2])
    return np.array([pitch_weight, shift, spread, level_weight, level], np.float32)
