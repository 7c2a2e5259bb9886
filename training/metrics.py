"""Validation metrics of the emotion side, on whole utterances of a corpus.

Used by the trainer's validation and by the tests that check each stage learns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.data.batches import MelCorpus
from training.models.generator import frame_pitch


@torch.no_grad()
def recognise(ee: nn.Module, rec: nn.Module, mel: torch.Tensor, pitch: torch.Tensor,
              anchor: torch.Tensor | None = None):
    """Recognition output of one utterance, mel (n_mels, T) and pitch (2, T), read from its speaker's
    neutral anchor (n_mels + 1,) when given: embedding, logits, strength, cue with batch 1."""
    lengths = torch.tensor([mel.shape[-1]], device=mel.device)
    return rec(ee(mel[None], pitch[None], lengths, None if anchor is None else anchor[None]), lengths)


@torch.no_grad()
def emotion_accuracy(models: dict[str, nn.Module], corpus: MelCorpus, device="cpu") -> float:
    """Share of utterances whose Rc prediction is their emotion label."""
    ee, rec = models["emotion_encoder"], models["recognition"]
    hits = [int(recognise(ee, rec, m.to(device), p.to(device), a.to(device)).logits.argmax(-1)) == int(y)
            for m, p, a, y in zip(corpus.mels, corpus.pitch, corpus.anchors, corpus.labels)]
    return float(np.mean(hits))


@torch.no_grad()
def strength_order(models: dict[str, nn.Module], corpus: MelCorpus, device="cpu") -> float:
    """Share of (neutral, emotional) pairs of one speaker where Rs(emotional) > Rs(neutral)."""
    ee, rec = models["emotion_encoder"], models["recognition"]
    s = np.array([float(recognise(ee, rec, m.to(device), p.to(device), a.to(device)).strength)
                  for m, p, a in zip(corpus.mels, corpus.pitch, corpus.anchors)])
    wins = [s[j] > s[i] for i in np.flatnonzero(corpus.labels == 0)
            for j in np.flatnonzero((corpus.labels != 0) & (corpus.speakers == corpus.speakers[i]))]
    return float(np.mean(wins)) if wins else float("nan")


@torch.no_grad()
def conversion_accuracy(models: dict[str, nn.Module], corpus: MelCorpus, device="cpu") -> float:
    """Share of conversions (each utterance to every other emotion's reference of its speaker)
    that Rc classifies as the reference's emotion."""
    ec, ee, rec, gen = (models[k] for k in ("content_encoder", "emotion_encoder", "recognition", "generator"))
    refs = {}
    for i, (y, spk) in enumerate(zip(corpus.labels, corpus.speakers)):
        refs.setdefault((int(spk), int(y)), i)
    hits, n_mels = [], corpus.spec.n_mels
    for i, (y, spk) in enumerate(zip(corpus.labels, corpus.speakers)):
        mel_in = corpus.mel_in(i).to(device)[None]
        content, anchor = ec(mel_in), corpus.anchors[i].to(device)
        for (ref_spk, ref_y), j in refs.items():
            if ref_spk != spk or ref_y == y:
                continue
            e_ref = recognise(ee, rec, corpus.mels[j].to(device), corpus.pitch[j].to(device), anchor).embedding
            converted = gen(content, corpus.pitch_in[i].to(device)[None], e_ref, mel_in)
            seen = recognise(ee, rec, converted[0, :n_mels], frame_pitch(converted, n_mels)[0], anchor)
            hits.append(int(seen.logits.argmax(-1)) == ref_y)
    return float(np.mean(hits)) if hits else float("nan")
