"""A tiny synthetic corpus (espeak-ng), generated once per test session."""

from __future__ import annotations

import pytest

from support.corpus import SEED, SENTENCES, SPEAKERS
from training.corpus.synth import synthesize_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """4 speakers × 5 emotions × 20 sentences in ESD layout, with metadata.csv (ground-truth strength)."""
    return synthesize_corpus(tmp_path_factory.mktemp("corpus") / "synth", SPEAKERS, SENTENCES, seed=SEED,
                             jobs=2, progress=False)
