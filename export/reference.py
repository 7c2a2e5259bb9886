"""The offline PyTorch reference: what the streaming engine must reproduce.

``render_offline`` converts a whole utterance at once (LogMel and the engine's pitch
tracker → Ec.forward → G.forward → vocoder.forward), with no blocks and no state; the
engine's file conversion, which goes block by block through the exported step graph, is
tested against it. ``reference_embedding`` is the emotion embedding of a reference utterance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from engine.pitch import pitch_offline, reference_pitch
from engine.signal import SignalSpec
from export.load import Networks, load_networks, load_part
from training.features import LogMel
from training.models.generator import frame_pitch
from training.models.prosody import ProsodyMove


def log_mel(audio: np.ndarray, spec: SignalSpec) -> Tensor:
    """audio: (N,) float32 at spec.sample_rate -> log-mel (1, n_mels, N // hop)."""
    with torch.no_grad():
        return LogMel(spec)(torch.as_tensor(audio, dtype=torch.float32).reshape(1, -1))


def source_pitch(audio: np.ndarray, spec: SignalSpec) -> Tensor:
    """audio: (N,) float32 -> the engine tracker's causal features (1, 4, N // hop), as streamed."""
    return torch.from_numpy(pitch_offline(audio, spec))[None]


def ref_pitch(audio: np.ndarray, spec: SignalSpec) -> Tensor:
    """audio: (N,) float32 reference -> (1, 2, N // hop) what the emotion encoder reads (engine.pitch)."""
    return torch.from_numpy(reference_pitch(audio, spec))[None]


@torch.no_grad()
def render_frames(networks: Networks, frames: Tensor) -> Tensor:
    """The generator's frames (1, n_mels + 2, T) through the vocoder (training.models.generator.frame_pitch)
    -> audio (1, T * hop), offline."""
    n_mels = networks.generator.n_mels
    return networks.vocoder(frames[:, :n_mels], frame_pitch(frames, n_mels)).reshape(1, -1)


@torch.no_grad()
def convert_frames(networks: Networks, mel: Tensor, pitch: Tensor, embedding: Tensor,
                   move: Tensor | None = None) -> Tensor:
    """mel: (1, n_mels, T), pitch: (1, 4, T), embedding: (1, D), move: (1, MOVE_SIZE) the prosody move
    or None (the generator's own) -> the generator's frames (1, n_mels + 2, T) so moved, offline
    (whole sequence)."""
    frames = networks.generator(networks.content_encoder(mel), pitch, embedding, mel)
    return frames if move is None else ProsodyMove(networks.generator.n_mels)(frames, pitch, move)


@torch.no_grad()
def convert_mel(networks: Networks, mel: Tensor, pitch: Tensor, embedding: Tensor,
                move: Tensor | None = None) -> Tensor:
    """mel: (1, n_mels, T), pitch: (1, 4, T), embedding: (1, D), move: (1, MOVE_SIZE) or None -> audio
    (1, T * hop), offline (whole sequence)."""
    return render_frames(networks, convert_frames(networks, mel, pitch, embedding, move))


@torch.no_grad()
def embed_mel(emotion_encoder: nn.Module, recognition: nn.Module, mel: Tensor, pitch: Tensor,
              anchor: Tensor | None = None) -> Tensor:
    """mel: (1, n_mels, T), pitch: (1, 2, T), anchor: (1, n_mels + 1) the speaker's neutral voice or None
    (read as it is) -> the cue-pooled emotion embedding (1, D)."""
    return recognition(emotion_encoder(mel, pitch, anchor=anchor)).embedding


def render_offline(stage2_ckpt_path: str | Path, vocoder_ckpt_path: str | Path, audio: np.ndarray,
                   embedding: np.ndarray, move: np.ndarray | None = None) -> np.ndarray:
    """audio: (N,) float32 16 kHz, embedding: (D,), move: (MOVE_SIZE,) the prosody move or None ->
    converted audio (N - N % hop,) float32.

    Samples of a trailing partial hop end no frame (causal framing) and are not rendered.
    """
    networks = load_networks(stage2_ckpt_path, vocoder_ckpt_path)
    mel = log_mel(audio, networks.spec)
    emb = torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1)
    m = None if move is None else torch.as_tensor(move, dtype=torch.float32).reshape(1, -1)
    return convert_mel(networks, mel, source_pitch(audio, networks.spec), emb, m)[0].numpy()


def reference_embedding(stage2_ckpt_path: str | Path, audio: np.ndarray,
                        anchor: np.ndarray | None = None) -> np.ndarray:
    """audio: (N,) float32 16 kHz reference utterance, anchor: (n_mels + 1,) its speaker's neutral voice
    or None -> emotion embedding (D,) float32."""
    part = load_part(stage2_ckpt_path, "stage2")
    mel, pitch = log_mel(audio, part.spec), ref_pitch(audio, part.spec)
    a = None if anchor is None else torch.as_tensor(anchor, dtype=torch.float32)[None]
    return embed_mel(part.models["emotion_encoder"], part.models["recognition"], mel, pitch, a)[0].numpy()
