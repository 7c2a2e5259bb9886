"""benchmarks.separability: an SVM that never saw a speaker, on fabricated statistics."""

from __future__ import annotations

import numpy as np

from benchmarks.separability import cross_validate
from engine.signal import EMOTIONS


def _data(separation: float, seed: int = 0):
    """8 speakers x 5 emotions x 10 utterances of 6 statistics: a speaker offset plus an emotion offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(EMOTIONS), 6)) * separation
    x, emotions, speakers = [], [], []
    for s in range(8):
        offset = rng.normal(size=6) * 3.0  # speakers differ more than emotions: the norm must remove it
        for e, name in enumerate(EMOTIONS):
            x.append(offset + centres[e] + rng.normal(size=(10, 6)))
            emotions += [name] * 10
            speakers += [f"{s:04d}"] * 10
    return np.vstack(x), np.array(emotions), np.array(speakers)


def test_separable_emotions_are_found_in_unseen_speakers():
    x, emotions, speakers = _data(separation=4.0)
    assert np.mean(cross_validate(x, emotions, speakers, folds=4) == emotions) > 0.9


def test_inseparable_emotions_score_at_chance():
    x, emotions, speakers = _data(separation=0.0)
    assert np.mean(cross_validate(x, emotions, speakers, folds=4) == emotions) < 0.35
