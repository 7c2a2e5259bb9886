"""The quality benchmark's evaluators, fitted on a corpus's natural train utterances and cached.

Fitting needs the statistics of every train utterance (about 6 CPU-minutes on the
10x300 synthetic corpus) and then seconds of SVM and ridge fits; both are cached
(benchmarks.cache): statistics by the files and benchmarks.features.VERSION, the
fitted evaluators by the train files, the labels (metadata.csv's bytes) and
EVALUATOR_VERSION. The check on natural held-out utterances is recomputed each run
from their cached statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import evaluators as ev
from benchmarks import features
from benchmarks.cache import Cache, content_digest, digest, files_key
from benchmarks.pool import parallel_map
from engine.errors import EVCError
from engine.signal import EMOTIONS

EVALUATOR_VERSION = 2
"""Bump when a change to benchmarks.evaluators or to this module changes what a fit produces.
2: speaker-normalised statistics, supervised strength regressor, label-free ranker."""
NEUTRAL = EMOTIONS[0]


@dataclass
class Evaluators:
    """Fitted on natural train speech; read(x, speakers, emotions) grades utterances."""

    norm: ev.SpeakerNorm
    classifier: ev.EmotionClassifier
    ranker: ev.StrengthRanker
    regressor: ev.StrengthRegressor | None

    def read(self, x: np.ndarray, speakers, emotions) -> dict[str, np.ndarray]:
        """Statistics x (N, F) of utterances by speakers (N,) meant as emotions (N,) ->
        predicted emotion, and strength for the meant emotion by the regressor (nan without
        one, or for Neutral) and the ranker, each (N,)."""
        z = self.norm(x, speakers)
        emotions = np.broadcast_to(np.asarray(emotions), (len(z),))
        sup, rank = np.full(len(z), np.nan), np.full(len(z), np.nan)
        for emotion in set(emotions) - {NEUTRAL}:
            keep = emotions == emotion
            rank[keep] = self.ranker.score(z[keep], emotion)
            if self.regressor is not None:
                sup[keep] = self.regressor.score(z[keep], emotion)
        return {"predicted": self.classifier.predict(z), "strength_sup": sup, "strength_rank": rank}


def fit(x: np.ndarray, emotions: np.ndarray, speakers: np.ndarray, strengths: np.ndarray | None) -> Evaluators:
    """Evaluators from train statistics x (N, F), labels (N,), strengths (N,) (nan unknown) or None."""
    norm = ev.SpeakerNorm().fit(x, emotions, speakers)
    z = norm(x, speakers)
    has_labels = strengths is not None and np.isfinite(strengths).any()
    return Evaluators(norm, ev.EmotionClassifier().fit(z, emotions), ev.StrengthRanker().fit(z, emotions, speakers),
                      ev.StrengthRegressor().fit(z, emotions, strengths) if has_labels else None)


def _features_of_path(path) -> np.ndarray:
    from engine.audio import load_audio

    return features.utterance_features(load_audio(path, features.SR))


def features_of(paths: list, jobs: int | None) -> np.ndarray:
    """(len(paths), F) utterance statistics, in `jobs` processes."""
    return np.stack(parallel_map(_features_of_path, paths, jobs, chunksize=16, min_per_job=4))


def cached_features(paths: list, root: Path, jobs: int | None, cache: Cache) -> np.ndarray:
    key = digest({"features": features.VERSION, "files": files_key(paths, root)})
    return cache.get("features", key, lambda: features_of(paths, jobs))[0]


def _labels(utts: list, gt: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """emotions, speakers (N,) and ground-truth strengths (N,) (nan where missing), None without labels."""
    emotions = np.array([u.emotion for u in utts])
    speakers = np.array([u.speaker for u in utts])
    strengths = np.array([gt.get(u.utt_id, np.nan) for u in utts], np.float64) if gt else None
    return emotions, speakers, strengths


def evaluator_key(root: Path, train: list) -> str:
    """What a fit depends on: the train files, the labels, the code and sklearn's pickle format."""
    import sklearn

    return digest({"version": EVALUATOR_VERSION, "features": features.VERSION, "sklearn": sklearn.__version__,
                   "train": files_key([u.path for u in train], root),
                   "labels": content_digest(Path(root) / "metadata.csv")})


def corpus_evaluators(root: Path, utts: list, gt: dict, jobs: int | None, cache: Cache) -> tuple[Evaluators, str, str]:
    """(Evaluators fitted on the corpus's natural train utterances, their cache key, where they came from)."""
    train = [u for u in utts if u.split == "train"]
    if not train:
        raise EVCError("the corpus has no train split: the evaluators need natural train utterances")
    key = evaluator_key(root, train)

    def make() -> Evaluators:
        x = cached_features([u.path for u in train], root, jobs, cache)
        return fit(x, *_labels(train, gt))

    evals, hit = cache.get("evaluators", key, make)
    where = cache.path("evaluators", key)
    if hit:
        return evals, key, f"loaded from {where}"
    return evals, key, f"fitted on {len(train)} natural train utterances" + (
        f", cached in {where}" if where else " (cache off)")


def check(evals: Evaluators, root: Path, held: list, gt: dict, jobs: int | None, cache: Cache) -> dict:
    """The evaluators' own accuracy on natural utterances `held`: emotion accuracy (overall, per
    emotion) and, with labels, each strength reader's RMSE against ground truth on each
    emotion's utterances (Neutral excluded: its 0 is easy and would flatter them)."""
    x = cached_features([u.path for u in held], root, jobs, cache)
    emotions, speakers, strengths = _labels(held, gt)
    pred = evals.classifier.predict(evals.norm(x, speakers))
    report = {"emotion_accuracy": float(np.mean(pred == emotions)), "checked_utterances": len(held),
              "emotion_accuracy_by_emotion": {e: float(np.mean(pred[emotions == e] == e))
                                              for e in EMOTIONS if (emotions == e).any()}}
    if strengths is None:
        return report
    readings = evals.read(x, speakers, emotions)
    for reader in ("strength_sup", "strength_rank"):
        if np.isfinite(readings[reader]).any():
            report[f"{reader}_rmse_by_emotion"] = _rmse_by_emotion(readings[reader], strengths, emotions)
    return report


def _rmse_by_emotion(reading: np.ndarray, truth: np.ndarray, emotions: np.ndarray) -> dict[str, float]:
    """{emotion: RMSE, ..., "all": pooled RMSE} over the emotional utterances with a label."""
    keep = (emotions != NEUTRAL) & np.isfinite(truth) & np.isfinite(reading)
    err = reading - truth
    out = {e: float(np.sqrt(np.mean(err[keep & (emotions == e)] ** 2)))
           for e in EMOTIONS[1:] if (keep & (emotions == e)).any()}
    out["all"] = float(np.sqrt(np.mean(err[keep] ** 2))) if keep.any() else float("nan")
    return out
