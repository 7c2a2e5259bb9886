"""Gradient reversal and the per-frame emotion classifier on content features (intra-speech disentanglement).

The classifier sees content features through a gradient-reversal layer: minimising its
(cue-weighted) cross-entropy trains the classifier to find emotion in the content
features, while the reversed gradient trains the content encoder to remove it.
"""

from __future__ import annotations

import torch
from torch import nn


class _GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -scale."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """x unchanged in the forward pass; its gradient is multiplied by -scale in the backward pass."""
    return _GradReverse.apply(x, float(scale))


class ContentEmotionClassifier(nn.Module):
    """Per-frame emotion classifier behind gradient reversal: content (B, C, T) → frame logits (B, K, T).

    Kernel-size-1 convolutions: each frame is classified on its own, so the loss can be
    weighted frame by frame by the emotional cue, and a frame's logits depend on no
    other frame (no causality question for the content encoder it trains against).
    """

    def __init__(self, content_dim: int, n_emotions: int = 5, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(content_dim, hidden, 1), nn.GELU(),
            nn.Conv1d(hidden, hidden, 1), nn.GELU(),
            nn.Conv1d(hidden, n_emotions, 1),
        )

    def forward(self, content: torch.Tensor, reverse_scale: float = 1.0) -> torch.Tensor:
        """content: (B, C, T) → logits (B, K, T); gradients reach `content` multiplied by -reverse_scale."""
        return self.net(grad_reverse(content, reverse_scale))
