"""DNSMOS through speechmos's ONNX models: scores in MOS range, noise below clean speech-like audio."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("speechmos")

from benchmarks.naturalness import COLUMNS, Dnsmos  # noqa: E402
from support.audio import speech_like  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dnsmos():
    return Dnsmos()


def test_clean_speech_like_audio_scores_above_noise(dnsmos):
    clean = speech_like(3.0, seed=1)
    noise = np.random.default_rng(0).normal(0, 0.05, clean.size).astype(np.float32)
    a, b = dnsmos.score(clean), dnsmos.score(noise)
    assert set(a) == set(COLUMNS)
    assert all(1.0 <= v <= 5.0 for v in (*a.values(), *b.values()))
    assert a["ovrl"] > b["ovrl"] + 0.5 and a["bak"] > b["bak"] + 1.0


def test_overshoot_and_empty_audio_are_scored_not_refused(dnsmos):
    loud = dnsmos.score(5.0 * speech_like(2.5, seed=2))  # beyond [-1, 1]: clipped, as a DAC would
    empty = dnsmos.score(np.zeros(0, np.float32))
    assert all(1.0 <= v <= 5.0 for v in (*loud.values(), *empty.values()))
