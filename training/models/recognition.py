"""Recognition network R = {Rc, Rs} and the emotional cue M (attention by class activation mapping).

Rc is one linear map W (K, D), b (K,). Applied to a frame feature F_t it gives the class
activation map CAM_k(t) = W_k · F_t; applied to the pooled embedding e it gives the
category logits. Using the same W for both makes the cue and the classifier agree.

The cue, for F (B, D, T) and valid-frame mask m (B, T)::

    p       = softmax(mean_t[m] W F_t + b)                    class probabilities by global average pooling
    cam(t)  = Σ_k p_k CAM_k(t) − mean_k CAM_k(t)              probability-weighted, class-centred evidence
    M       = softmax_t[m](cam / temperature)                 (B, T), Σ_t M = 1 over valid frames, 0 on padding
    e       = Σ_t M_t F_t                                     (B, D) instance-level emotion embedding
    logits  = W e + b,   strength = sigmoid(MLP(e)) ∈ [0, 1]

Why the class-centring: a frame that raises every class's activation equally (silence,
breath, any emotion-neutral sound) carries no class evidence, and the classification
loss does not constrain that common offset (softmax is shift-invariant), so an
uncentred CAM could put weight on silence; centred, such a frame scores exactly 0
whatever the encoder maps it to. Everything is differentiable (no argmax), so the
cue's sharpness is learnt through the classification loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from training.models.emotion_encoder import frame_mask


class EmotionOutput(NamedTuple):
    """What R reads from frame features: embedding (B, D), logits (B, K), strength (B,), cue (B, T)."""

    embedding: torch.Tensor
    logits: torch.Tensor
    strength: torch.Tensor
    cue: torch.Tensor


def masked_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of x (B, T) restricted to mask (B, T) of 0/1: exactly 0 where mask is 0.

    The fill is finite so an all-masked row gives zeros, not NaN.
    """
    x = x.float().masked_fill(mask == 0, -1e9)
    return torch.softmax(x, dim=-1) * mask


class Recognition(nn.Module):
    """R = {Rc, Rs}: frame features F (B, dim, T) [+ lengths (B,)] → EmotionOutput."""

    def __init__(self, dim: int, n_emotions: int = 5, strength_hidden: int = 64, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature: must be positive, got {temperature}")
        self.temperature = temperature
        self.rc = nn.Linear(dim, n_emotions)
        self.rs = nn.Sequential(nn.Linear(dim, strength_hidden), nn.GELU(), nn.Linear(strength_hidden, 1))

    def classify(self, e: torch.Tensor) -> torch.Tensor:
        """Rc: embeddings e (B, D) → category logits (B, K) = W e + b."""
        return self.rc(e)

    def strength(self, e: torch.Tensor) -> torch.Tensor:
        """Rs: embeddings e (B, D) → strength (B,) in [0, 1]."""
        return torch.sigmoid(self.rs(e)).squeeze(-1)

    def cue(self, F: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Emotional cue M (B, T) of frame features F (B, D, T): sums to 1 over valid frames, 0 on padding."""
        mask = frame_mask(lengths, F)[:, 0]  # (B, T)
        cam = torch.einsum("kd,bdt->bkt", self.rc.weight, F)  # (B, K, T) CAM_k(t)
        pooled = (cam * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True).clamp(min=1)
        p = torch.softmax(pooled + self.rc.bias, dim=-1)  # (B, K)
        evidence = (p[:, :, None] * cam).sum(1) - cam.mean(1)  # (B, T)
        return masked_softmax(evidence / self.temperature, mask)

    def forward(self, F: torch.Tensor, lengths: torch.Tensor | None = None) -> EmotionOutput:
        """F: (B, D, T), lengths: (B,) valid frames or None (all) → EmotionOutput."""
        M = self.cue(F, lengths)
        e = torch.einsum("bdt,bt->bd", F, M.to(F.dtype))
        return EmotionOutput(embedding=e, logits=self.classify(e), strength=self.strength(e), cue=M)
