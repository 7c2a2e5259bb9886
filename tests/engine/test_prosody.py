"""A reference's measured prosody and its move from the neutral voice (engine.prosody)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.prosody import MOVE_SIZE, prosody_move, prosody_stats
from engine.reference import analyse_reference
from support.audio import speech_like


def test_the_stats_read_pitch_and_level_of_the_voiced_frames(spec):
    """An octave up moves the mean log-F0 by log 2 and keeps the spread; half the amplitude
    lowers the level by log 2 nepers and keeps the pitch."""
    base = prosody_stats(analyse_reference(speech_like(3.0, seed=1, f0=110.0), spec))
    high = prosody_stats(analyse_reference(speech_like(3.0, seed=1, f0=220.0), spec))
    quiet = prosody_stats(analyse_reference(0.5 * speech_like(3.0, seed=1, f0=110.0), spec))
    assert base[0] == pytest.approx(np.log(110.0), abs=0.08) and 0.0 < base[1] < 0.3
    assert high[0] - base[0] == pytest.approx(np.log(2.0), abs=0.01)
    assert high[1] / base[1] == pytest.approx(1.0, abs=0.02)
    assert quiet[2] - base[2] == pytest.approx(-np.log(2.0), abs=0.01)
    assert quiet[0] == pytest.approx(base[0], abs=0.01)


def test_audio_without_a_voiced_frame_has_no_stats(spec):
    noise = 0.05 * np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    assert prosody_stats(analyse_reference(noise, spec)) is None
    assert prosody_stats(analyse_reference(np.zeros(32000, np.float32), spec)) is None


def test_the_move_is_the_difference_times_the_strength_and_the_level_on_the_way_to_the_reference():
    stats, neutral = np.array([5.2, 0.2, 1.0]), np.array([5.0, 0.1, 1.5])
    move = prosody_move(stats, neutral, 0.5, 0.8, 0.3)
    np.testing.assert_allclose(move, [0.8, 0.1, 0.5 * np.log(2.0), 0.3, 1.25], rtol=1e-6)
    assert move.dtype == np.float32 and move.shape == (MOVE_SIZE,)
    np.testing.assert_allclose(prosody_move(stats, neutral, 0.0, 1.0, 1.0)[1:], [0.0, 0.0, 1.0, 1.5])


@pytest.mark.parametrize("missing", ["stats", "neutral"])
def test_without_either_stats_the_move_is_zero(missing):
    known = np.array([5.0, 0.1, 1.0])
    args = (None, known) if missing == "stats" else (known, None)
    assert not prosody_move(*args, 1.0, 1.0, 1.0).any()
