"""Index of an ESD-style corpus: which wav is which speaker, emotion, split and sentence.

Layout (ESD, and the synthetic corpus which copies it)::

    ROOT/00XX/<Emotion>/{train,evaluation,test}/00XX_YYYYYY.wav
    ROOT/00XX/<Emotion>/00XX_YYYYYY.wav          (older ESD copies: no split folders)

Utterance ids come in blocks of M per emotion, in the order of engine.signal.EMOTIONS;
the position of an utterance in its block (1..M) names the sentence, so the same
position under two emotions of one speaker is a parallel pair. ESD has M = 350.

Pure python + numpy: no torch, so benchmarks and tools can index a corpus cheaply.
Transcripts (00XX.txt, mixed encodings) are never opened: the method is text-free.
"""

from __future__ import annotations

ESD_SENTENCES = 350
"""Block size M of the real ESD corpus."""

_ESD_EVALUATION = 20
_ESD_TEST = 30
SPLITS: tuple[str, ...] = ("train", "evaluation", "test")


def _round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def split_sizes(m: int) -> tuple[int, int]:
    """(evaluation, test) positions in a block of m: ESD's 20 and 30 scaled to m.

    Exactly (20, 30) at m = 350; each at least 1 when m >= 3 so that a tiny synthetic
    corpus still has every split; (0, 0) below that (everything is train).
    """
    if m < 1:
        raise ValueError(f"block size m must be >= 1, got {m}")
    n_eval = _round_half_up(_ESD_EVALUATION * m, ESD_SENTENCES)
    n_test = _round_half_up(_ESD_TEST * m, ESD_SENTENCES)
    if m >= 3:
        n_eval, n_test = max(n_eval, 1), max(n_test, 1)
    return n_eval, n_test


def split_of(position: int, m: int = ESD_SENTENCES) -> str:
    """Split of the sentence at `position` (1..m) in a block of m, as ESD splits.

    ESD (m = 350): 1-20 evaluation, 21-50 test, 51-350 train. Other m: the same
    proportions (see split_sizes). The synthetic corpus generator uses this function,
    so a corpus and its index always agree.
    """
    if not 1 <= position <= m:
        raise ValueError(f"position must be in 1..{m}, got {position}")
    n_eval, n_test = split_sizes(m)
    if position <= n_eval:
        return "evaluation"
    if position <= n_eval + n_test:
        return "test"
    return "train"
