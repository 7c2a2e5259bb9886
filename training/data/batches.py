"""In-memory corpus of log-mels and audio, and deterministic balanced batches.

Batches are a pure function of (seed, step, rank): resuming at step k draws exactly
the batches an uninterrupted run would have drawn, with no sampler state to save,
and each data-parallel rank draws its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.audio import load_audio
from engine.signal import EMOTIONS, SignalSpec
from training.data.esd import Utterance, scan
from training.features import LogMel


@dataclass
class Batch:
    """A batch of equal-length crops.

    mel: (B, n_mels, S) log-mel; audio: (B, S*hop); lengths: (B,) valid frames;
    labels: (B,) emotion index; speakers: (B,) speaker index;
    positive/negative: (B,) index of a same-emotion other-speaker item and of an
    other-emotion item (triplets); reference: (B,) index of an item of another emotion
    (Stage II conversion reference).
    """

    mel: torch.Tensor
    audio: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    speakers: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    reference: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in vars(self).items()})


class MelCorpus:
    """Every utterance of one split, loaded once: audio (N,) float32 and log-mel (n_mels, T)."""

    def __init__(self, root: str | Path, spec: SignalSpec, split: str, speakers=None):
        self.spec = spec
        self.utts: list[Utterance] = scan(root, speakers=speakers, splits=[split])
        logmel = LogMel(spec)
        self.audio = [load_audio(u.path, spec.sample_rate) for u in self.utts]
        with torch.no_grad():
            self.mels = [logmel(torch.from_numpy(a)[None])[0] for a in self.audio]
        self.labels = np.array([u.label for u in self.utts])
        names = sorted({u.speaker for u in self.utts})
        self.speakers = np.array([names.index(u.speaker) for u in self.utts])
        self.by_label = [np.flatnonzero(self.labels == k) for k in range(len(EMOTIONS))]

    def __len__(self) -> int:
        return len(self.utts)

    def item(self, i: int, frames: int | None = None, start: int = 0):
        """(mel (n_mels, S), audio (S*hop,), valid frames) of utterance i cropped at `start`.

        frames=None takes the whole utterance. Crops past the end are padded with the
        log floor (mel) and zeros (audio).
        """
        mel, audio, hop = self.mels[i], self.audio[i], self.spec.hop
        frames = mel.shape[1] if frames is None else frames
        valid = max(0, min(frames, mel.shape[1] - start))
        out_mel = torch.full((mel.shape[0], frames), float(np.log(self.spec.log_floor)))
        out_mel[:, :valid] = mel[:, start:start + valid]
        out_audio = torch.zeros(frames * hop)
        out_audio[: valid * hop] = torch.from_numpy(audio[start * hop:(start + valid) * hop])
        return out_mel, out_audio, valid


def _partner(rng, labels, speakers, i, same_label: bool) -> int:
    """Index of another item with the same label (and another speaker, when possible) or another label."""
    n = len(labels)
    if same_label:
        pool = [j for j in range(n) if j != i and labels[j] == labels[i] and speakers[j] != speakers[i]]
        pool = pool or [j for j in range(n) if j != i and labels[j] == labels[i]] or [i]
    else:
        pool = [j for j in range(n) if labels[j] != labels[i]] or [i]
    return int(pool[rng.integers(len(pool))])


TRAIN, VALIDATION = 0, 1
"""Independent random streams for training and validation batches."""


def draw_batch(corpus: MelCorpus, batch_size: int, frames: int, seed: int, step: int,
               rank: int = 0, stream: int = TRAIN) -> Batch:
    """A balanced batch: emotions cycle over the batch, utterance and crop drawn at random."""
    rng = np.random.default_rng([seed, stream, step, rank])
    present = [k for k, idx in enumerate(corpus.by_label) if len(idx)]
    chosen = [int(rng.choice(corpus.by_label[present[b % len(present)]])) for b in range(batch_size)]
    items = []
    for i in chosen:
        n = corpus.mels[i].shape[1]
        items.append(corpus.item(i, frames, int(rng.integers(max(1, n - frames + 1)))))
    labels, speakers = corpus.labels[chosen], corpus.speakers[chosen]
    idx = range(batch_size)
    return Batch(
        mel=torch.stack([m for m, _, _ in items]),
        audio=torch.stack([a for _, a, _ in items]),
        lengths=torch.tensor([v for _, _, v in items]),
        labels=torch.from_numpy(labels).long(),
        speakers=torch.from_numpy(speakers).long(),
        positive=torch.tensor([_partner(rng, labels, speakers, i, True) for i in idx]),
        negative=torch.tensor([_partner(rng, labels, speakers, i, False) for i in idx]),
        reference=torch.tensor([_partner(rng, labels, speakers, i, False) for i in idx]),
    )
