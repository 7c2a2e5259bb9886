"""Noise-alone crops of the training batches, and Stage II's losses on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import training.data.batches as batches
from engine.signal import SignalSpec
from training.data.batches import NOISE_ITEMS, MelCorpus, draw_batch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tiny_corpus):
    return MelCorpus(tiny_corpus, SignalSpec(), "train", limit=20, conversion=True)


def _power(mel: torch.Tensor) -> float:
    """Mean over frames of the log of the summed mel magnitudes (nepers)."""
    return float(torch.logsumexp(mel, dim=0).mean())


def test_noise_crops_follow_the_drawn_level(corpus, monkeypatch):
    levels = {}
    for db in (-30.0, -60.0):
        monkeypatch.setattr(batches, "NOISE_LEVELS_DBFS", (db, db))
        mel, pitch = corpus.noise_inputs(50, np.random.default_rng(7))
        assert mel.shape == (SignalSpec().n_mels, 50) and pitch.shape[1] == 50
        levels[db] = _power(mel)
    # the log-mel is of magnitudes: 30 dB is ln(10 ** 1.5) nepers in every band
    assert levels[-30.0] - levels[-60.0] == pytest.approx(1.5 * np.log(10), abs=0.1)


def test_noise_crops_are_drawn_from_the_batch_seed(corpus):
    a, b = (draw_batch(corpus, 5, 40, seed=4, step=2) for _ in range(2))
    c = draw_batch(corpus, 5, 40, seed=4, step=3)
    assert a.noise_mel.shape == (NOISE_ITEMS, SignalSpec().n_mels, 40)
    assert torch.equal(a.noise_mel, b.noise_mel) and torch.equal(a.noise_pitch, b.noise_pitch)
    assert not torch.equal(a.noise_mel, c.noise_mel)


def test_other_stages_skip_the_conversion_rows_and_draw_the_same_batches(corpus, tiny_corpus):
    plain = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=20)
    a, b = draw_batch(plain, 5, 40, seed=4, step=2), draw_batch(corpus, 5, 40, seed=4, step=2)
    assert a.noise_mel.shape == (0, SignalSpec().n_mels, 40) and a.parallel_mel.shape == (5, 0, 40)
    assert a.partner_pitch.shape == (5, 0, 40) and not a.partner_lengths.any()
    for row in ("mel", "mel_in", "pitch_in", "pitch", "labels", "reference"):
        assert torch.equal(getattr(a, row), getattr(b, row)), row
