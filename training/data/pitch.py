"""The generator's pitch input in training: the engine's causal tracker, with the register
taken from the speaker's neutral voice.

At run time the engine's tracker (engine/pitch.py) gives, per frame, voicing, the held
log-F0 and the running register (mean and spread of the log-F0 so far). The user speaks
neutrally, so the register is their neutral voice; the generator keeps it and puts the
emotion's pitch level and range on it from the emotion embedding.

An emotional training utterance would teach the opposite: its running register already
holds the emotion's level and range, and the generator would learn to copy them. So in
training the register rows are de-emotionalised: shifted by the utterance's distance from
the speaker's neutral mean and scaled by the ratio of their spreads. They keep the
tracker's running dynamics (the prior at the start, settling within a second), so the
generator sees in training what it will see live::

    reg_mean'(t) = reg_mean(t) - (mean_utt - mean_neutral)
    reg_std'(t)  = reg_std(t)  * std_neutral / std_utt

mean_utt, std_utt: voiced log-F0 of the utterance (the tracker's); mean_neutral,
std_neutral: of all the speaker's Neutral utterances in the same corpus split.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from engine.pitch import MIN_STD

VOICED, LF0, REG_MEAN, REG_STD = range(4)
"""Rows of the tracker's features (engine.pitch.FEATURES)."""


def voiced_stats(pitch: np.ndarray) -> tuple[float, float] | None:
    """(mean, std) of the voiced log-F0 of tracker features (4, T); None with fewer than 2 voiced frames."""
    lf0 = pitch[LF0][pitch[VOICED] > 0]
    if lf0.size < 2:
        return None
    return float(lf0.mean()), max(float(lf0.std()), MIN_STD)


def neutral_registers(pitches: list[np.ndarray], speakers: list[str], neutral: list[bool]) -> dict[str, tuple]:
    """speaker -> (mean, std) of the voiced log-F0 of all their neutral utterances pooled."""
    pooled = defaultdict(list)
    for p, s, is_neutral in zip(pitches, speakers, neutral):
        if is_neutral:
            pooled[s].append(p[LF0][p[VOICED] > 0])
    return {s: (float(np.concatenate(v).mean()), max(float(np.concatenate(v).std()), MIN_STD))
            for s, v in pooled.items() if sum(a.size for a in v) >= 2}


def deemotionalised(pitch: np.ndarray, register: tuple[float, float] | None) -> np.ndarray:
    """Tracker features (4, T) with the register rows moved to the speaker's neutral register.

    Unchanged when the speaker has no neutral register or the utterance too few voiced frames.
    """
    own = voiced_stats(pitch)
    if register is None or own is None:
        return pitch
    out = pitch.copy()
    out[REG_MEAN] -= own[0] - register[0]
    out[REG_STD] = np.maximum(out[REG_STD] * register[1] / own[1], MIN_STD)
    return out
