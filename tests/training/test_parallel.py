"""Parallel partners: who pairs with whom, the warping path, and the partner on a crop's frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.signal import EMOTIONS, SignalSpec
from training.data.batches import MelCorpus, draw_batch
from training.data.esd import Utterance
from training.data.parallel import aligned_frames, partners


def _utt(speaker: str, emotion: str, position: int, split: str = "train") -> Utterance:
    return Utterance(Path("x.wav"), speaker, emotion, EMOTIONS.index(emotion), split, f"{speaker}_{position:06d}",
                     position)


def test_partners_share_speaker_split_and_sentence_under_another_emotion():
    utts = [_utt("0011", "Neutral", 1), _utt("0011", "Happy", 1), _utt("0011", "Sad", 1),
            _utt("0011", "Happy", 2), _utt("0012", "Angry", 1), _utt("0011", "Angry", 1, "test")]
    got = [p.tolist() for p in partners(utts)]
    assert got == [[1, 2], [0, 2], [0, 1], [], [], []]


def _stretched(n: int, factor: float) -> np.ndarray:
    """(round(n * factor),) source frame of each frame of a nearest-frame stretch by `factor`."""
    return np.minimum((np.arange(round(n * factor)) / factor).round().astype(int), n - 1)


@pytest.mark.parametrize("factor", [0.72, 1.0, 1.35])
def test_the_warping_path_recovers_a_known_stretch(factor):
    rng = np.random.default_rng(0)
    source = rng.normal(size=(20, 150))
    index = _stretched(150, factor)
    partner = source[:, index] + 0.01 * rng.normal(size=(20, index.size))
    frames = aligned_frames(source, partner)
    assert frames.shape == (150,) and np.all(np.diff(frames) >= 0)
    # every source frame lands on a partner frame that was made from it (or a neighbour when
    # the stretch dropped it)
    assert np.abs(index[frames] - np.arange(150)).max() <= 1


def test_an_utterance_aligned_with_itself_is_the_identity():
    x = np.random.default_rng(1).normal(size=(8, 40))
    assert np.array_equal(aligned_frames(x, x), np.arange(40))


@pytest.mark.slow
def test_partners_on_the_items_frames_match_its_speech(tiny_corpus):
    """On espeak speech the warped partner is nearer the item's neutral-levelled log-mel than the
    partner stretched linearly to its length (measured 0.59 against 1.06 mean |difference| over 56 pairs)."""
    corpus = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=40)
    warped, linear = [], []
    for i, pool in enumerate(corpus.partners):
        for j in pool:
            a, b = corpus.mel_in(i).numpy(), corpus.mel_in(int(j)).numpy()
            straight = np.minimum((np.arange(a.shape[1]) * b.shape[1] / a.shape[1]).round().astype(int), b.shape[1] - 1)
            warped.append(np.abs(a - b[:, corpus.alignment(i, int(j))]).mean())
            linear.append(np.abs(a - b[:, straight]).mean())
    assert len(warped) >= 20
    assert np.mean(warped) < 0.85 * np.mean(linear), (np.mean(warped), np.mean(linear))


@pytest.mark.slow
def test_an_item_without_partners_is_its_own_parallel_target(tiny_corpus):
    """With no parallel partner the parallel rows are the item's own crop, delayed pitch included."""
    corpus = MelCorpus(tiny_corpus, SignalSpec(lookahead_frames=1), "train", limit=30, conversion=True)
    corpus.partners = [np.zeros(0, np.int64)] * len(corpus)
    b = draw_batch(corpus, 6, 120, seed=2, step=0)
    for own, parallel in ((b.mel, b.parallel_mel), (b.pitch, b.parallel_pitch), (b.mel, b.partner_mel),
                          (b.pitch, b.partner_pitch), (b.lengths, b.partner_lengths)):
        assert torch.equal(own, parallel)


@pytest.mark.slow
def test_parallel_pitch_is_voiced_only_where_item_and_partner_both_are(tiny_corpus):
    corpus = MelCorpus(tiny_corpus, SignalSpec(lookahead_frames=1), "train", limit=40)
    i = next(k for k, pool in enumerate(corpus.partners) if len(pool))
    j = int(corpus.partners[i][0])
    n = corpus.mels[i].shape[1]
    rows = corpus.parallel(i, j, n, 0)
    idx = corpus.alignment(i, j)
    assert rows["parallel_mel"].shape == corpus.mels[i].shape
    assert torch.equal(rows["parallel_mel"], corpus.mels[j][:, idx])
    voiced = rows["parallel_pitch"][1]
    assert torch.all(voiced <= corpus.pitch[i][1]) and voiced[0] == 0  # the lookahead's first frame
    partner_voiced = corpus.pitch[j][1, np.minimum(idx[:-1] + 1, corpus.pitch[j].shape[1] - 1)]
    assert torch.equal(voiced[1:], corpus.pitch[i][1, 1:] * partner_voiced)
