"""Baselines: zero effort is the identity; the DSP transplant moves pitch, tilt and loudness."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyworld")

from benchmarks.baselines import _active_rms_db, map_f0, prosody_transplant, zero_effort  # noqa: E402
from benchmarks.features import f0_track  # noqa: E402
from support.audio import speech_like  # noqa: E402


def _median_f0(x: np.ndarray) -> float:
    f0 = f0_track(x)
    return float(np.median(f0[f0 > 0]))


def test_zero_effort_returns_the_source():
    x = speech_like(0.5)
    assert zero_effort(x, speech_like(0.7, seed=1)) is x


def test_map_f0_gives_the_target_statistics_and_keeps_unvoiced_frames():
    rng = np.random.default_rng(0)
    f0 = np.where(rng.random(500) < 0.3, 0.0, np.exp(rng.normal(np.log(120), 0.1, 500)))
    voiced = f0 > 0
    lf0 = np.log(f0[voiced])
    out = map_f0(f0, (lf0.mean(), lf0.std()), (np.log(220.0), 0.2))
    np.testing.assert_array_equal(out[~voiced], 0.0)
    assert np.log(out[voiced]).mean() == pytest.approx(np.log(220.0))
    assert np.log(out[voiced]).std() == pytest.approx(0.2)


def test_transplant_takes_the_references_pitch_level_and_loudness():
    source = 0.2 * speech_like(1.5, seed=3, f0=120.0)
    reference = 0.6 * speech_like(1.2, seed=4, f0=220.0)
    out = prosody_transplant(source, reference)
    assert out.shape == source.shape and out.dtype == np.float32
    assert _median_f0(out) == pytest.approx(_median_f0(reference), rel=0.06)
    assert _active_rms_db(out, 16000) == pytest.approx(_active_rms_db(reference, 16000), abs=0.5)
