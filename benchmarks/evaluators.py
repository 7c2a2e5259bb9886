"""Evaluators of converted speech that owe nothing to the model under test.

The model's own recognition network R = {Rc, Rs} (a neural classifier and strength
head on the emotion encoder's embedding) would grade its own homework: these are
trained by the benchmark, on the corpus's natural train utterances, from another
model family and other inputs (utterance-level prosodic + spectral statistics,
benchmarks.features.utterance_features):

* SpeakerNorm: each statistic beside its offset from the speaker's natural Neutral
  mean (in units of the corpus's spread). Emotion and strength are offsets from a
  voice's neutral manner, and raw pitch or loudness mostly tells speakers apart: on
  the synthetic corpus this took the rankers' RMSE from 0.15-0.24 to 0.06-0.11. The
  speaker of a converted utterance is its source's, a corpus speaker, so the offset
  needs only natural speech.
* EmotionClassifier: an RBF-kernel SVM on standardised statistics.
* StrengthRegressor (supervised, where the corpus has ground-truth strengths): one
  ridge regression per emotion, fitted on that emotion's utterances and the Neutral
  ones (strength 0).
* StrengthRanker (label-free, the reading for ESD): relative attributes (Parikh &
  Grauman, 2011), one linear ranking SVM per emotion, trained on feature differences
  of pairs of one speaker, neutral < emotional; the score w.x is scaled to [0, 1] by
  its min/max on the training data. It never sees a strength label, so its error on
  a labelled corpus says how far to trust it on one without labels.
* Speaker embeddings: Resemblyzer's pretrained speaker encoder (its weights ship in
  the wheel), or, where it cannot be imported, a clearly named fallback: cosine of
  MFCC statistics, a crude timbre proxy, not a speaker-verification model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.features import SR, TRIM_DB, quiet_import
from engine.signal import EMOTIONS

MAX_PAIRS = 20_000
"""Ranking pairs per emotion: all pairs of ESD's train split would be millions."""
NEUTRAL = EMOTIONS[0]


class SpeakerNorm:
    """Statistics x (N, F) of speakers (N,) -> (N, 2F): x beside its offset from the speaker's
    Neutral mean, divided by the spread of the training statistics. A speaker without Neutral
    training utterances is measured from the mean of all Neutral ones."""

    def fit(self, x: np.ndarray, emotions: np.ndarray, speakers: np.ndarray) -> SpeakerNorm:
        neutral = emotions == NEUTRAL
        self.fallback = x[neutral].mean(0) if neutral.any() else x.mean(0)
        self.means = {str(s): x[neutral & (speakers == s)].mean(0) for s in np.unique(speakers[neutral])}
        self.scale = x.std(0) + 1e-9
        return self

    def __call__(self, x: np.ndarray, speakers) -> np.ndarray:
        x = np.atleast_2d(x)
        speakers = np.broadcast_to(np.asarray(speakers), (len(x),))
        origin = np.stack([self.means.get(str(s), self.fallback) for s in speakers])
        return np.hstack([x, (x - origin) / self.scale])


class EmotionClassifier:
    """Utterance statistics (N, F) -> emotion names, by an RBF SVM."""

    def __init__(self, c: float = 10.0):
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        self.model = make_pipeline(StandardScaler(), SVC(C=c, gamma="scale", class_weight="balanced"))

    def fit(self, x: np.ndarray, emotions: np.ndarray) -> EmotionClassifier:
        self.model.fit(x, emotions)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(np.atleast_2d(x))

    def accuracy(self, x: np.ndarray, emotions: np.ndarray) -> float:
        return float(np.mean(self.predict(x) == emotions))


class StrengthRegressor:
    """Per-emotion ridge regressions of ground-truth strength: score(x, emotion) in [0, 1]."""

    def __init__(self):
        self.models: dict[str, object] = {}

    def fit(self, x: np.ndarray, emotions: np.ndarray, strengths: np.ndarray) -> StrengthRegressor:
        """x: (N, F); emotions, strengths: (N,), strength nan where unknown (left out)."""
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        for emotion in EMOTIONS[1:]:
            keep = ((emotions == emotion) | (emotions == NEUTRAL)) & np.isfinite(strengths)
            if (emotions[keep] == emotion).any():
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
                self.models[emotion] = model.fit(x[keep], strengths[keep])
        return self

    def score(self, x: np.ndarray, emotion: str) -> np.ndarray:
        """(N,) strengths in [0, 1] of x (N, F) or (F,) for `emotion`."""
        return np.clip(self.models[emotion].predict(np.atleast_2d(x)), 0.0, 1.0)


@dataclass(frozen=True)
class _Linear:
    """One emotion's ranking function: scale (mean, std), weights w, and the raw score range."""

    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    lo: float
    hi: float

    def raw(self, x: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(x) - self.mean) / self.std) @ self.w

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.clip((self.raw(x) - self.lo) / max(self.hi - self.lo, 1e-12), 0.0, 1.0)


def _pairs(speakers: np.ndarray, lower: np.ndarray, higher: np.ndarray, rng) -> np.ndarray:
    """(K, 2) index pairs (i, j), same speaker, lower[i] and higher[j], at most MAX_PAIRS drawn at random."""
    pairs = [np.stack(np.meshgrid(np.flatnonzero(lower & (speakers == s)),
                                  np.flatnonzero(higher & (speakers == s)), indexing="ij"), -1).reshape(-1, 2)
             for s in np.unique(speakers)]
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    if len(pairs) > MAX_PAIRS:
        pairs = pairs[rng.choice(len(pairs), MAX_PAIRS, replace=False)]
    return pairs


def _fit_ranker(x: np.ndarray, neutral: np.ndarray, speakers: np.ndarray, seed: int) -> _Linear:
    from sklearn.svm import LinearSVC

    mean, std = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / std
    pairs = _pairs(speakers, neutral, ~neutral, np.random.default_rng(seed))
    diff = z[pairs[:, 1]] - z[pairs[:, 0]]
    svm = LinearSVC(C=0.1, fit_intercept=False, max_iter=20_000)
    svm.fit(np.concatenate([diff, -diff]), np.repeat([1, 0], len(diff)))
    w = svm.coef_[0]
    raw = z @ w
    return _Linear(mean, std, w, float(raw.min()), float(raw.max()))


class StrengthRanker:
    """Per-emotion relative-attribute rankers, label-free: score(x, emotion) in [0, 1]."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.models: dict[str, _Linear] = {}

    def fit(self, x: np.ndarray, emotions: np.ndarray, speakers: np.ndarray) -> StrengthRanker:
        """x: (N, F) train statistics; emotions, speakers: (N,)."""
        for emotion in EMOTIONS[1:]:
            keep = (emotions == NEUTRAL) | (emotions == emotion)
            if (emotions == emotion).any() and (emotions == NEUTRAL).any():
                self.models[emotion] = _fit_ranker(x[keep], emotions[keep] == NEUTRAL, speakers[keep], self.seed)
        return self

    def score(self, x: np.ndarray, emotion: str) -> np.ndarray:
        """(N,) strengths in [0, 1] of x (N, F) or (F,) for `emotion`."""
        return self.models[emotion].score(x)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class ResemblyzerEmbedder:
    """Resemblyzer's GE2E speaker encoder (256-d, weights bundled in the package)."""

    name = "resemblyzer"

    def __init__(self):
        resemblyzer = quiet_import("resemblyzer")
        self._preprocess = resemblyzer.preprocess_wav
        self._encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)

    def embed(self, audio: np.ndarray, sr: int = SR) -> np.ndarray:
        import torch

        wav = self._preprocess(np.asarray(audio, np.float32), source_sr=sr)
        if wav.size < sr // 2:
            # Its voice-activity trim can leave nothing of noise-like audio: embed it untrimmed.
            wav = np.asarray(audio, np.float32) / max(float(np.abs(audio).max()), 1e-9)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small LSTM: more threads only wait for each other (10x slower on 2 CPUs)
        try:
            return self._encoder.embed_utterance(wav)
        finally:
            torch.set_num_threads(threads)


class MfccStatsEmbedder:
    """Fallback speaker 'embedding': means and spreads of MFCC 1..19 over active frames."""

    name = "mfcc-stats-cosine (fallback, not a speaker model)"

    def embed(self, audio: np.ndarray, sr: int = SR) -> np.ndarray:
        import librosa

        mfcc = librosa.feature.mfcc(y=np.asarray(audio, np.float32), sr=sr, n_mfcc=20, hop_length=160, n_fft=512)
        active = mfcc[0] >= mfcc[0].max() - TRIM_DB
        return np.concatenate([mfcc[1:, active].mean(1), mfcc[1:, active].std(1)])


def speaker_embedder() -> tuple[object, str | None]:
    """(Resemblyzer, None), or (the MFCC-statistics fallback, why Resemblyzer is not used)."""
    try:
        return ResemblyzerEmbedder(), None
    except Exception as e:  # an ImportError, or its weights failing to load
        return MfccStatsEmbedder(), f"Resemblyzer unavailable ({type(e).__name__}: {str(e).splitlines()[0]})"
