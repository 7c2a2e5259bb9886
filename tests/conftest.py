"""Shared fixtures: generated speech-like audio, a small signal contract, the tiny espeak corpus."""

from __future__ import annotations

import numpy as np
import pytest

from engine.signal import SignalSpec
from support.audio import speech_like
from support.corpus import SEED, SENTENCES, SPEAKERS


@pytest.fixture(autouse=True, scope="session")
def _private_analysis_cache(tmp_path_factory):
    """training.data.analysis caches WORLD analyses under $XDG_CACHE_HOME: point it at a
    temporary directory, so that tests never write into (nor read stale entries from) the
    user's real cache. Spawned analysis workers and subprocesses inherit the environment."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
    yield
    mp.undo()


@pytest.fixture
def spec() -> SignalSpec:
    return SignalSpec()


@pytest.fixture
def speech() -> np.ndarray:
    """3 s of speech-like audio at 16 kHz, (48000,) float32."""
    return speech_like(3.0)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """4 speakers × 5 emotions × 20 sentences in ESD layout, with metadata.csv (ground-truth
    strength), synthesised once per session by espeak-ng for every test that asks for it."""
    from training.corpus.synth import synthesize_corpus  # only the sessions that need it pay for the import

    return synthesize_corpus(tmp_path_factory.mktemp("corpus") / "synth", SPEAKERS, SENTENCES, seed=SEED,
                             jobs=2, progress=False)
