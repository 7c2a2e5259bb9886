"""How distinct the corpus's speakers are: `python -m benchmarks.speakers [N_SENTENCES]`.

Renders N neutral sentences (default 3) per corpus speaker (training.corpus.profiles.
CORPUS_SPEAKERS) with the corpus synthesiser, embeds each speaker's concatenated speech
with the quality benchmark's speaker embedder (Resemblyzer), and prints, per speaker,
its nearest other speaker and their cosine, then the summary: the largest, median and
smallest nearest-neighbour cosine. Same-speaker cosines across sentences are printed
beside them, so that "distinct" has a yardstick.
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.evaluators import cosine, speaker_embedder
from training.corpus.profiles import CORPUS_SPEAKERS, PROFILES
from training.corpus.sentences import sentences
from training.corpus.synth import FIRST_SPEAKER, render_utterance


def _name(i: int) -> str:
    s = CORPUS_SPEAKERS[i]
    return f"{FIRST_SPEAKER + i:04d} {getattr(s, 'voice', '')}" + (
        f" {s.timbre}" if hasattr(s, "timbre") and s.timbre.warp != 1.0 else "")


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 3
    embedder, note = speaker_embedder()
    if note:
        print(f"note: {note}")
    texts = sentences(2 * n, 0)
    halves, whole = [], []
    for speaker in CORPUS_SPEAKERS:
        audio = [render_utterance(speaker, t, PROFILES["Neutral"], 0.0) for t in texts]
        halves.append((embedder.embed(np.concatenate(audio[:n])), embedder.embed(np.concatenate(audio[n:]))))
        whole.append(embedder.embed(np.concatenate(audio)))
    k = len(whole)
    sim = np.array([[cosine(whole[a], whole[b]) for b in range(k)] for a in range(k)])
    np.fill_diagonal(sim, -1.0)
    nearest = sim.max(axis=1)
    self_sim = np.array([cosine(a, b) for a, b in halves])
    for i in range(k):
        j = int(sim[i].argmax())
        print(f"{_name(i):60s} nearest {FIRST_SPEAKER + j:04d} cos {nearest[i]:.3f}; itself on other sentences "
              f"{self_sim[i]:.3f}")
    print(f"{k} speakers: nearest-other cosine max {nearest.max():.3f}, median {np.median(nearest):.3f}, "
          f"min {nearest.min():.3f}; same speaker on other sentences min {self_sim.min():.3f}, "
          f"median {np.median(self_sim):.3f}; pairs closer than the least self-similar speaker: "
          f"{int((sim > self_sim.min()).sum() // 2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
