"""The offline PyTorch reference: what the streaming engine must reproduce.

``render_offline`` converts a whole utterance at once (LogMel → Ec.forward →
G.forward → vocoder.forward), with no blocks and no state; the engine's file
conversion, which goes block by block through the exported step graph, is tested
against it. ``reference_embedding`` is the emotion embedding of a reference utterance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from engine.signal import SignalSpec
from export.load import Networks, load_networks, load_part
from training.features import LogMel


def log_mel(audio: np.ndarray, spec: SignalSpec) -> Tensor:
    """audio: (N,) float32 at spec.sample_rate -> log-mel (1, n_mels, N // hop)."""
    with torch.no_grad():
        return LogMel(spec)(torch.as_tensor(audio, dtype=torch.float32).reshape(1, -1))


@torch.no_grad()
def convert_mel(networks: Networks, mel: Tensor, embedding: Tensor) -> Tensor:
    """mel: (1, n_mels, T), embedding: (1, D) -> audio (1, T * hop), offline (whole sequence)."""
    content = networks.content_encoder(mel)
    return networks.vocoder(networks.generator(content, embedding)).reshape(1, -1)


@torch.no_grad()
def embed_mel(emotion_encoder: nn.Module, recognition: nn.Module, mel: Tensor) -> Tensor:
    """mel: (1, n_mels, T) -> the cue-pooled emotion embedding (1, D)."""
    return recognition(emotion_encoder(mel)).embedding


def render_offline(stage2_ckpt_path: str | Path, vocoder_ckpt_path: str | Path, audio: np.ndarray,
                   embedding: np.ndarray) -> np.ndarray:
    """audio: (N,) float32 16 kHz, embedding: (D,) -> converted audio (N - N % hop,) float32.

    Samples of a trailing partial hop end no frame (causal framing) and are not rendered.
    """
    networks = load_networks(stage2_ckpt_path, vocoder_ckpt_path)
    mel = log_mel(audio, networks.spec)
    emb = torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1)
    return convert_mel(networks, mel, emb)[0].numpy()


def reference_embedding(stage2_ckpt_path: str | Path, audio: np.ndarray) -> np.ndarray:
    """audio: (N,) float32 16 kHz reference utterance -> emotion embedding (D,) float32."""
    models, spec, _ = load_part(stage2_ckpt_path, "stage2")
    mel = log_mel(audio, spec)
    return embed_mel(models["emotion_encoder"], models["recognition"], mel)[0].numpy()
