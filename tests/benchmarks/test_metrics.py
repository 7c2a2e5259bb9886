"""MCD with DTW, log-F0 RMSE and the mel-cepstra they are computed on."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyworld")
pytest.importorskip("pysptk")

from benchmarks.features import Analysis, analyse, quiet_import, sp2mc, world  # noqa: E402
from benchmarks.metrics import MCD_SCALE, dtw_path, f0_rmse_cents, mcd  # noqa: E402
from support.audio import speech_like  # noqa: E402


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    return speech_like(1.5, seed=2)


def _flat(mcep: np.ndarray, f0: np.ndarray) -> Analysis:
    """An analysis whose envelope is equally loud in every frame (nothing is trimmed as silence)."""
    return Analysis(f0=f0, sp=np.ones((len(mcep), 513)), mcep=mcep)


def test_mcd_and_f0_rmse_of_an_utterance_with_itself_are_zero(utterance):
    a = analyse(utterance)
    assert mcd(a, a) == 0.0 and mcd(a, a, dtw=False) == 0.0
    assert f0_rmse_cents(a, a) == 0.0
    assert (a.f0 > 0).sum() > 50  # the zero is over voiced frames, not over none


def test_mcd_is_the_textbook_formula_without_c0():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 25))
    y = x.copy()
    y[:, 0] += 5.0  # c0 (energy) is excluded
    y[:, 3] += 0.2
    expected = 10.0 / np.log(10.0) * np.sqrt(2.0 * 0.2 ** 2)
    assert MCD_SCALE * 0.2 == pytest.approx(expected)
    assert mcd(_flat(x, np.zeros(40)), _flat(y, np.zeros(40)), dtw=False) == pytest.approx(expected)


def test_f0_rmse_of_an_octave_is_1200_cents_over_frames_voiced_in_both():
    mcep = np.random.default_rng(1).standard_normal((30, 25))
    f0 = np.where(np.arange(30) % 3 == 0, 0.0, 150.0)
    other = 2.0 * f0
    other[1] = 0.0  # unvoiced in one: not scored
    assert f0_rmse_cents(_flat(mcep, f0), _flat(mcep, other)) == pytest.approx(1200.0)
    assert np.isnan(f0_rmse_cents(_flat(mcep, np.zeros(30)), _flat(mcep, f0)))


def test_dtw_path_undoes_a_frame_repetition():
    x = np.random.default_rng(2).standard_normal((20, 5))
    y = np.repeat(x, 2, axis=0)
    i, j = dtw_path(x, y)
    np.testing.assert_array_equal(i, j // 2)
    np.testing.assert_array_equal(j, np.arange(40))


def test_dtw_scores_a_time_stretched_copy_closer_than_frame_by_frame(utterance):
    import librosa

    a, b = analyse(utterance), analyse(librosa.effects.time_stretch(utterance, rate=0.8))
    assert mcd(a, b) < 0.5 * mcd(a, b, dtw=False)


def test_sp2mc_equals_pysptk(utterance):
    _, sp, _ = world(utterance)
    np.testing.assert_allclose(sp2mc(sp), quiet_import("pysptk").sp2mc(sp, 24, 0.42), atol=1e-10)


def test_silence_around_speech_is_trimmed(utterance):
    padded = np.concatenate([np.zeros(8000, np.float32), utterance, np.zeros(4000, np.float32)])
    span = analyse(padded).active_span()
    assert 0.45 <= span.start * 0.005 <= 0.65  # speech_like starts with 0.1 s of silence of its own
    assert span.stop * 0.005 <= 2.05
