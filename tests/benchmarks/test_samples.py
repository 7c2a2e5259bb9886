"""python -m benchmarks.samples: the numbers it prints about a signal."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.samples import describe

pytest.importorskip("pyworld")


def test_describe_reads_a_half_silent_tone():
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.1 * np.sin(2 * np.pi * 150.0 * t)  # -23.0 dBFS
    x = np.concatenate([tone, np.zeros(sr)]).astype(np.float32)
    d = describe(x, sr)
    assert d["level_db"] == pytest.approx(-23.0, abs=0.1)  # silence is not averaged in
    assert d["voiced"] == pytest.approx(0.5, abs=0.05)
    assert d["f0_hz"] == pytest.approx(150.0, abs=2.0)
    assert d["range_st"] < 0.5
