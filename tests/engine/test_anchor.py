"""A speaker's neutral voice as the emotion encoder's anchor (engine.anchor)."""

from __future__ import annotations

import numpy as np

from engine.anchor import ACTIVE_NEPERS, active_mean, neutral_anchor

N_MELS = 80


def _utterance(level: float, frames: int = 50, pause: int = 20) -> np.ndarray:
    """(N_MELS, frames + pause): speech frames at `level` nepers per band, then a pause far below."""
    mel = np.full((N_MELS, frames + pause), level - 2 * ACTIVE_NEPERS, np.float32)
    mel[:, :frames] = level
    return mel


def _pitch(lf0: float, frames: int, voiced_every: int = 2, unvoiced_lf0: float = 9.0) -> np.ndarray:
    """(2, frames) rows [held log-F0, voicing]: every voiced_every-th frame voiced at lf0, the rest
    unvoiced holding unvoiced_lf0 (a value the anchor must not read)."""
    voiced = (np.arange(frames) % voiced_every == 0).astype(np.float32)
    return np.stack([np.where(voiced > 0, lf0, unvoiced_lf0), voiced]).astype(np.float32)


def test_the_anchor_is_the_active_spectrum_and_the_voiced_log_f0():
    anchor = neutral_anchor([_utterance(-3.0)], [_pitch(5.0, 70)])
    assert anchor.shape == (N_MELS + 1,) and anchor.dtype == np.float32
    np.testing.assert_allclose(anchor[:N_MELS], -3.0)  # the pause is not part of the voice
    assert anchor[-1] == np.float32(5.0)  # nor are the unvoiced frames' held values


def test_several_utterances_pool_their_spectra_and_voiced_frames():
    anchor = neutral_anchor([_utterance(-3.0), _utterance(-1.0, frames=10)],
                            [_pitch(5.0, 70), _pitch(5.6, 30, voiced_every=1)])
    np.testing.assert_allclose(anchor[:N_MELS], -2.0)  # one mean spectrum per utterance, then their mean
    np.testing.assert_allclose(anchor[-1], (35 * 5.0 + 30 * 5.6) / 65, rtol=1e-6)  # voiced frames pooled


def test_no_anchor_without_speech_or_voicing():
    assert neutral_anchor([np.zeros((N_MELS, 0), np.float32)], [np.zeros((2, 0), np.float32)]) is None
    unvoiced = np.stack([np.full(70, 5.0), np.zeros(70)]).astype(np.float32)
    assert neutral_anchor([_utterance(-3.0)], [unvoiced]) is None
    assert active_mean(np.zeros((N_MELS, 0))) is None
