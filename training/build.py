"""Build the AINN networks from a config's `models` section.

Sizes shared between networks (content and embedding dimensions) are derived here
from their producers, so a config cannot make them disagree.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from engine.signal import SignalSpec
from training.models.adversary import ContentEmotionClassifier
from training.models.content_encoder import ContentEncoder
from training.models.critic import MelCritic
from training.models.emotion_encoder import EmotionEncoder
from training.models.generator import Generator
from training.models.recognition import Recognition
from training.models.vocoder import SourceFilterVocoder

NETWORKS = ("content_encoder", "emotion_encoder", "recognition", "generator", "adversary", "vocoder", "mel_critic")


def _kwargs(models: dict[str, dict[str, Any]], spec: SignalSpec) -> dict[str, dict[str, Any]]:
    kw = {name: dict(models.get(name) or {}) for name in NETWORKS}
    content_dim = kw["content_encoder"].setdefault("out_dim", 32)
    emotion_dim = kw["emotion_encoder"].setdefault("dim", 128)
    for name in ("content_encoder", "emotion_encoder", "generator", "vocoder", "mel_critic"):
        kw[name]["n_mels"] = spec.n_mels
    kw["recognition"]["dim"] = emotion_dim
    kw["generator"].update(content_dim=content_dim, emotion_dim=emotion_dim)
    kw["adversary"]["content_dim"] = content_dim
    return kw


def build_models(models: dict[str, dict[str, Any]], spec: SignalSpec, names=NETWORKS) -> dict[str, nn.Module]:
    """The named networks, freshly initialised from constructor keyword arguments."""
    classes = {
        "content_encoder": ContentEncoder, "emotion_encoder": EmotionEncoder,
        "recognition": Recognition, "generator": Generator, "adversary": ContentEmotionClassifier,
        "vocoder": SourceFilterVocoder, "mel_critic": MelCritic,
    }
    kw = _kwargs(models, spec)
    return {name: classes[name](**kw[name]) for name in names}
