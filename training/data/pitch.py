"""The generator's pitch input in training: the engine's causal tracker, with the register
taken from the speaker's neutral voice.

At run time the engine's tracker (engine/pitch.py) gives, per frame, voicing, the held
log-F0 and the running register (mean and spread of the log-F0 so far). The user speaks
neutrally, so the register is their neutral voice; the generator keeps it and puts the
emotion's pitch level and range on it from the emotion embedding.

An emotional training utterance would teach the opposite: its contour and running register
hold the emotion's level and range, and the generator would learn to copy them. So in
training the utterance's contour is first mapped onto the speaker's neutral register,

    lf0'(t) = mean_neutral + (lf0(t) - mean_utt) * std_neutral / std_utt

and the register rows are the tracker's running register of that contour (engine.pitch
running_register: the same prior and dynamics the engine has live). mean_utt, std_utt:
voiced log-F0 of the utterance (the tracker's); mean_neutral, std_neutral: of all the
speaker's Neutral utterances in the same corpus split. Mapping only the register rows
(reg_mean - (mean_utt - mean_neutral)) leaked the emotion: in the first second the running
mean is still near the prior, so prior minus that row is the emotion's pitch offset, and a
Stage I trained so reconstructed the level from it and ignored the embedding (conversions
to Surprise 31 cents below the source at step 1100, the targets 490 above).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from engine.pitch import MIN_STD, running_register

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


def register_offset(pitch: np.ndarray, register: tuple[float, float] | None) -> np.ndarray:
    """(2,) float32 of tracker features (4, T): the voiced log-F0's mean minus the speaker's neutral
    mean, and the log of its spread over theirs (how far the emotion moves pitch level and
    range); zeros when the speaker has no neutral register or the utterance too few voiced frames."""
    own = voiced_stats(pitch)
    if register is None or own is None:
        return np.zeros(2, np.float32)
    return np.array([own[0] - register[0], np.log(own[1] / register[1])], np.float32)


def deemotionalised(pitch: np.ndarray, register: tuple[float, float] | None) -> np.ndarray:
    """Tracker features (4, T) of the utterance's contour mapped onto the speaker's neutral register.

    Unchanged when the speaker has no neutral register or the utterance too few voiced frames.
    """
    own = voiced_stats(pitch)
    if register is None or own is None:
        return pitch
    out = pitch.copy()
    out[LF0] = register[0] + (pitch[LF0] - own[0]) * register[1] / own[1]
    out[REG_MEAN:REG_STD + 1] = running_register(pitch[VOICED], out[LF0])
    return out
