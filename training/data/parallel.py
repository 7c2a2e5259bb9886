"""Parallel partners of an ESD-style corpus and their alignment to a source's timing.

ESD (and the synthetic corpus that copies it) has every speaker read the same sentences
under every emotion: the utterance at the same position of another emotion is what the
source would sound like with that emotion, in the partner's timing. The engine keeps
the speaker's timing, so Stage II compares a conversion with the partner warped onto
the source's frames by dynamic time warping (training.stages.Stage2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numba
import numpy as np

from training.data.esd import Utterance


def partners(utts: Sequence[Utterance]) -> list[np.ndarray]:
    """Per utterance, the indices of the utterances of the same speaker, split and sentence under
    another emotion (empty when the corpus lacks them)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        groups[(u.speaker, u.split, u.position)].append(i)
    return [np.array([j for j in groups[(u.speaker, u.split, u.position)] if utts[j].label != u.label], np.int64)
            for u in utts]


def aligned_frames(source: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """source (C, T), partner (C, U) features → (T,) int64: for each source frame, the partner frame
    the minimum-cost warping path pairs with it (the middle one where it pairs several).

    Features should not carry what the emotion changes in the whole utterance (level, tilt):
    pass log-mels with those removed (MelCorpus.mel_in)."""
    a = np.ascontiguousarray(source.T, np.float64)
    b = np.ascontiguousarray(partner.T, np.float64)
    cost = np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T, 0.0)
    return _path_frames(_accumulated(cost))


@numba.njit(cache=True)
def _accumulated(cost: np.ndarray) -> np.ndarray:
    """(T, U) frame distances → accumulated cost of the best path from (0, 0), steps (1,0), (0,1), (1,1)."""
    T, U = cost.shape
    acc = np.full((T, U), np.inf)
    acc[0, 0] = cost[0, 0]
    for t in range(T):
        for u in range(U):
            if t == 0 and u == 0:
                continue
            best = np.inf
            if t > 0:
                best = min(best, acc[t - 1, u])
            if u > 0:
                best = min(best, acc[t, u - 1])
            if t > 0 and u > 0:
                best = min(best, acc[t - 1, u - 1])
            acc[t, u] = cost[t, u] + best
    return acc


@numba.njit(cache=True)
def _path_frames(acc: np.ndarray) -> np.ndarray:
    """Backtrack acc (T, U) from (T-1, U-1); per source frame the middle of its partner frames."""
    T, U = acc.shape
    lo = np.full(T, U, np.int64)
    hi = np.zeros(T, np.int64)
    t, u = T - 1, U - 1
    while True:
        lo[t] = min(lo[t], u)
        hi[t] = max(hi[t], u)
        if t == 0 and u == 0:
            break
        if t == 0:
            u -= 1
        elif u == 0:
            t -= 1
        else:
            diag, up, left = acc[t - 1, u - 1], acc[t - 1, u], acc[t, u - 1]
            if diag <= up and diag <= left:
                t, u = t - 1, u - 1
            elif up <= left:
                t -= 1
            else:
                u -= 1
    return (lo + hi) // 2
