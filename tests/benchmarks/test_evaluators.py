"""The independent evaluators on features with a known structure."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from benchmarks.evaluators import (  # noqa: E402
    EmotionClassifier,
    MfccStatsEmbedder,
    StrengthRanker,
    cosine,
    speaker_embedder,
)
from benchmarks.quality import MIN_EVALUATOR_ACCURACY, evaluator_lines  # noqa: E402
from engine.signal import EMOTIONS  # noqa: E402
from support.audio import speech_like  # noqa: E402


def _emotional_features(n_per: int, seed: int):
    """Features where emotion e moves dimension e by strength (Neutral = 0), plus noise."""
    rng = np.random.default_rng(seed)
    rows, emotions, speakers, strengths = [], [], [], []
    for label, emotion in enumerate(EMOTIONS):
        for k in range(n_per):
            s = 0.0 if label == 0 else rng.uniform(0.3, 1.0)
            x = rng.normal(0, 0.05, 8)
            if label:
                x[label] += 2.0 * s
            rows.append(x)
            emotions.append(emotion)
            speakers.append("0011" if k % 2 else "0012")
            strengths.append(s)
    return np.array(rows), np.array(emotions), np.array(speakers), np.array(strengths)


def test_classifier_learns_separable_emotions():
    x, y, _, _ = _emotional_features(30, 0)
    xt, yt, _, _ = _emotional_features(10, 1)
    assert EmotionClassifier().fit(x, y).accuracy(xt, yt) >= 0.95


@pytest.mark.parametrize("with_ground_truth", [True, False])
def test_ranker_orders_by_strength_in_0_1(with_ground_truth):
    x, y, spk, s = _emotional_features(40, 2)
    ranker = StrengthRanker().fit(x, y, spk, s if with_ground_truth else None)
    assert set(ranker.models) == set(EMOTIONS[1:])
    xt, yt, _, st = _emotional_features(20, 3)
    for emotion in EMOTIONS[1:]:
        keep = yt == emotion
        scores = ranker.score(xt[keep], emotion)
        assert scores.min() >= 0.0 and scores.max() <= 1.0
        assert np.corrcoef(scores, st[keep])[0, 1] > 0.9
        assert ranker.score(xt[yt == EMOTIONS[0]], emotion).mean() < scores.mean()


def test_speaker_embeddings_are_closer_within_a_voice():
    embedder, note = speaker_embedder()
    a, b = speech_like(2.0, seed=1, f0=110.0), speech_like(2.0, seed=2, f0=112.0)
    c = speech_like(2.0, seed=3, f0=260.0)
    ea, eb, ec = embedder.embed(a), embedder.embed(b), embedder.embed(c)
    assert cosine(ea, ea) == pytest.approx(1.0)
    assert cosine(ea, eb) > cosine(ea, ec)
    assert note is None or embedder.name.startswith("mfcc-stats")


def test_fallback_embedder_is_named_as_such():
    assert "fallback" in MfccStatsEmbedder.name
    e = MfccStatsEmbedder().embed(speech_like(1.0))
    assert e.shape == (38,) and np.isfinite(e).all()


def test_an_inaccurate_evaluator_is_announced_loudly():
    report = {"emotion_accuracy": 0.55, "emotion_accuracy_by_emotion": {"Neutral": 0.55},
              "train_utterances": 10, "checked_on": "natural test utterances (5)", "speaker_embedding": "x"}
    lines = evaluator_lines(report, None)
    assert lines[0].startswith("evaluator check") and "0.550" in lines[0]
    assert any("NOT MEANINGFUL" in line for line in lines)
    report["emotion_accuracy"] = MIN_EVALUATOR_ACCURACY
    assert not any("NOT MEANINGFUL" in line for line in evaluator_lines(report, None))
