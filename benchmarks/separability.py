"""Are a corpus's emotions separable for speakers a classifier never saw?
`python -m benchmarks.separability CORPUS [--folds K] [--jobs N]`

The quality benchmark's emotion evaluator (speaker-normalised utterance statistics, RBF
SVM), cross-validated by speaker: K folds of whole speakers, each fold's speakers
classified by an SVM fitted on the others. Each speaker's statistics are measured from
its own Neutral mean, as the benchmark does for the speakers it knows. Prints accuracy
overall, per emotion and per voice family (the metadata's voice: espeak or festival).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.evaluators import EmotionClassifier, SpeakerNorm
from benchmarks.features import SR, utterance_features
from benchmarks.pool import parallel_map
from benchmarks.trials import voice_families
from engine.audio import load_audio
from engine.signal import EMOTIONS
from training.data.esd import scan


def _features(path: Path) -> np.ndarray:
    return utterance_features(load_audio(path, SR))


def cross_validate(x: np.ndarray, emotions: np.ndarray, speakers: np.ndarray, folds: int) -> np.ndarray:
    """(N,) predicted emotion of every utterance by an SVM that never saw its speaker."""
    z = SpeakerNorm().fit(x, emotions, speakers)(x, speakers)
    names = np.unique(speakers)
    fold_of = {s: i % folds for i, s in enumerate(np.random.default_rng(0).permutation(names))}
    fold = np.array([fold_of[s] for s in speakers])
    predicted = np.empty(len(x), dtype=object)
    for k in range(folds):
        test = fold == k
        predicted[test] = EmotionClassifier().fit(z[~test], emotions[~test]).predict(z[test])
    return predicted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.separability")
    p.add_argument("corpus")
    p.add_argument("--folds", type=int, default=6)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    root = Path(args.corpus)
    utts = scan(root)
    x = np.stack(parallel_map(_features, [u.path for u in utts], args.jobs))
    emotions = np.array([u.emotion for u in utts])
    speakers = np.array([u.speaker for u in utts])
    hit = cross_validate(x, emotions, speakers, args.folds) == emotions
    families = voice_families(root)
    family = np.array([families.get(s, "espeak") for s in speakers])
    print(f"{len(utts)} utterances of {len(np.unique(speakers))} speakers, {args.folds} folds of whole speakers: "
          f"emotion accuracy {hit.mean():.3f}")
    present = [e for e in EMOTIONS if (emotions == e).any()]
    print("per emotion: " + ", ".join(f"{e} {hit[emotions == e].mean():.2f}" for e in present))
    print("per family: " + ", ".join(f"{f} {hit[family == f].mean():.3f} ({len(np.unique(speakers[family == f]))} "
                                     f"speakers)" for f in sorted(set(family))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
