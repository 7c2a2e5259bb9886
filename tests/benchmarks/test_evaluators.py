"""The independent evaluators on features with a known structure."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from benchmarks.evaluators import (  # noqa: E402
    EmotionClassifier,
    MfccStatsEmbedder,
    SpeakerNorm,
    StrengthRanker,
    StrengthRegressor,
    cosine,
    speaker_embedder,
)
from benchmarks.quality_tables import MAX_STRENGTH_RMSE, MIN_EVALUATOR_ACCURACY, evaluator_lines  # noqa: E402
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


def test_label_free_ranker_orders_by_strength_in_0_1():
    x, y, spk, _ = _emotional_features(40, 2)
    ranker = StrengthRanker().fit(x, y, spk)
    assert set(ranker.models) == set(EMOTIONS[1:])
    xt, yt, _, st = _emotional_features(20, 3)
    for emotion in EMOTIONS[1:]:
        keep = yt == emotion
        scores = ranker.score(xt[keep], emotion)
        assert scores.min() >= 0.0 and scores.max() <= 1.0
        assert np.corrcoef(scores, st[keep])[0, 1] > 0.9
        assert ranker.score(xt[yt == EMOTIONS[0]], emotion).mean() < scores.mean()


def _linear_strength(n_per: int, seed: int):
    """Ten statistics, of which a fixed mix moves linearly with strength (another mix per
    emotion), the rest noise; Neutral at strength 0."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).normal(0, 1, (len(EMOTIONS), 10))
    x, emotions, strengths = [], [], []
    for label, emotion in enumerate(EMOTIONS):
        s = np.zeros(n_per) if label == 0 else rng.uniform(0.3, 1.0, n_per)
        x.append(s[:, None] * mix[label] + rng.normal(0, 0.05, (n_per, 10)))
        emotions += [emotion] * n_per
        strengths.append(s)
    return np.concatenate(x), np.array(emotions), np.concatenate(strengths)


def test_supervised_regressor_recovers_a_linear_strength():
    x, y, s = _linear_strength(80, 0)
    regressor = StrengthRegressor().fit(x, y, s)
    xt, yt, st = _linear_strength(40, 1)
    for emotion in EMOTIONS[1:]:
        keep = yt == emotion
        rmse = np.sqrt(np.mean((regressor.score(xt[keep], emotion) - st[keep]) ** 2))
        assert rmse < 0.05, (emotion, rmse)
        assert regressor.score(xt[yt == EMOTIONS[0]], emotion).mean() < 0.05


def test_regressor_leaves_out_utterances_without_a_label():
    x, y, s = _linear_strength(60, 2)
    s_partial = s.copy()
    s_partial[::3] = np.nan
    xt, yt, st = _linear_strength(30, 3)
    keep = yt == "Sad"
    score = StrengthRegressor().fit(x, y, s_partial).score(xt[keep], "Sad")
    assert np.sqrt(np.mean((score - st[keep]) ** 2)) < 0.05


def test_speaker_norm_measures_each_voice_from_its_own_neutral():
    x = np.array([[100.0, 1.0], [110.0, 1.0], [200.0, 2.0], [210.0, 2.0]])
    emotions = np.array(["Neutral", "Angry", "Neutral", "Angry"])
    speakers = np.array(["0011", "0011", "0012", "0012"])
    z = SpeakerNorm().fit(x, emotions, speakers)(x, speakers)
    assert z.shape == (4, 4)
    np.testing.assert_allclose(z[:, :2], x)
    np.testing.assert_allclose(z[0, 2:], 0.0)
    np.testing.assert_allclose(z[1, 2:], z[3, 2:])  # the same offset from each speaker's neutral
    assert z[1, 2] == pytest.approx(10.0 / x[:, 0].std(), rel=1e-6)
    unknown = SpeakerNorm().fit(x, emotions, speakers)(x[:1], "0099")  # measured from the mean neutral
    assert unknown[0, 2] == pytest.approx(-50.0 / x[:, 0].std(), rel=1e-6)


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


def _report(**changes) -> dict:
    report = {"emotion_accuracy": 0.95, "emotion_accuracy_by_emotion": {"Neutral": 0.95}, "source": "fitted",
              "checked_on": "natural test utterances (5)", "speaker_embedding": "x", "labels_note": None,
              "strength_sup_rmse_by_emotion": {"Sad": 0.05, "all": 0.05},
              "strength_rank_rmse_by_emotion": {"Sad": 0.2, "all": 0.2}}
    return {**report, **changes}


def test_an_inaccurate_evaluator_is_announced_loudly():
    lines = evaluator_lines(_report(emotion_accuracy=0.55))
    assert lines[0].startswith("evaluator check") and "0.550" in lines[0]
    assert any("NOT MEANINGFUL" in line for line in lines)
    good = evaluator_lines(_report(emotion_accuracy=MIN_EVALUATOR_ACCURACY))
    assert not any("NOT MEANINGFUL" in line for line in good)


def test_an_inaccurate_strength_evaluator_is_announced_loudly():
    assert "supervised Sad 0.050, all 0.050" in evaluator_lines(_report())[1]
    bad = _report(strength_sup_rmse_by_emotion={"Sad": 0.2, "all": MAX_STRENGTH_RMSE + 0.01})
    assert any("STRENGTH COLUMNS" in line for line in evaluator_lines(bad))
    assert not any("STRENGTH COLUMNS" in line for line in evaluator_lines(_report()))
