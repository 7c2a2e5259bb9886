"""Parity checks of an export: ONNX Runtime streaming == PyTorch streaming == PyTorch offline.

The utterance is converted three ways from the same log-mel (training.features.LogMel)
and the same embedding:

- offline:      Ec.forward → G.forward → vocoder.forward on the whole sequence;
- torch stream: StepGraph block by block, state carried from zeros;
- onnx stream:  step.onnx block by block in ONNX Runtime (CPU), once per optimisation level.

Ragged tail: only whole blocks are streamed (``T - T % block_frames`` frames), as the
engine does; the offline output is cut to the same length. The models are causal, so
the frames after the cut do not change the ones before it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from engine.errors import ModelError
from engine.manifest import NEXT_SUFFIX, STEP_OUTPUT
from export.graphs import EmotionEncoderGraph, StepGraph
from export.load import Networks
from export.reference import convert_mel, embed_mel, log_mel

TOLERANCE = 1e-4
LEVELS = {"disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "enable_basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "enable_all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class ParityError(ModelError):
    """An exported graph does not reproduce the PyTorch networks within tolerance."""


def probe_audio(seconds: float = 3.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like test audio (N,) float32: harmonics on a moving pitch, syllable envelope,
    noise bursts and silences, so that voiced, broadband and silent frames all occur."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(130.0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t))) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    noise = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 1.3 * t) > 0.8)
    x = 0.25 * voiced * syllables + 0.05 * noise
    x[: sr // 10] = 0.0
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


def cpu_session(path: str | Path, level: str = "enable_all", threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session at an optimisation level of LEVELS, with pinned threads."""
    so = ort.SessionOptions()
    so.graph_optimization_level = LEVELS[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def whole_blocks(mel: Tensor, block: int) -> Tensor:
    """mel (1, n_mels, T) cut to its whole blocks: (1, n_mels, T - T % block)."""
    return mel[..., : mel.shape[-1] - mel.shape[-1] % block]


@contextmanager
def one_torch_thread():
    """Run a block of code on one torch thread, then restore: tiny per-block convs only pay
    thread synchronisation (3 s of blocks of 2 took 7 s on two busy cores, 2 s on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def stream_torch(graph: StepGraph, mel: Tensor, embedding: Tensor, block: int) -> np.ndarray:
    """mel: (1, n_mels, T), embedding: (1, D) -> audio (T' * hop,), T' = whole blocks of T."""
    state, out = graph.init_state(), []
    mel = whole_blocks(mel, block)
    with one_torch_thread():
        for start in range(0, mel.shape[-1], block):
            audio, *state = graph(mel[..., start:start + block], embedding, *state)
            out.append(audio[0])
    return torch.cat(out).numpy()


def stream_onnx(session: ort.InferenceSession, state_shapes: dict[str, tuple], mel: np.ndarray,
                embedding: np.ndarray, block: int) -> np.ndarray:
    """mel: (1, n_mels, T), embedding: (1, D) -> audio (T' * hop,) through the step graph, state from zeros."""
    state = {name: np.zeros(shape, np.float32) for name, shape in state_shapes.items()}
    outputs = [STEP_OUTPUT, *(n + NEXT_SUFFIX for n in state)]
    frames, out = mel.shape[-1] - mel.shape[-1] % block, []
    for start in range(0, frames, block):
        feeds = {"mel": np.ascontiguousarray(mel[..., start:start + block]), "emotion": embedding, **state}
        audio, *new = session.run(outputs, feeds)
        state = dict(zip(state, new))
        out.append(audio[0])
    return np.concatenate(out)


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def verify_step(networks: Networks, graph: StepGraph, path: Path, mel: Tensor, embedding: Tensor,
                block: int) -> dict:
    """Max abs audio errors between offline, torch streaming and ONNX streaming at every level."""
    offline = convert_mel(networks, whole_blocks(mel, block), embedding)[0].numpy()
    streamed = stream_torch(graph, mel, embedding, block)
    shapes = dict(zip(graph.state_names(), graph.state_shapes()))
    onnx_out = {lvl: stream_onnx(cpu_session(path, lvl), shapes, mel.numpy(), embedding.numpy(), block)
                for lvl in LEVELS}
    return {
        "torch_stream_vs_offline": _max_err(streamed, offline),
        "onnx_vs_torch_stream": {lvl: _max_err(a, streamed) for lvl, a in onnx_out.items()},
        "onnx_vs_offline": max(_max_err(a, offline) for a in onnx_out.values()),
        "onnx_disable_all_vs_enable_all": _max_err(onnx_out["disable_all"], onnx_out["enable_all"]),
        "frames": int(whole_blocks(mel, block).shape[-1]),
        "audio_peak": float(np.abs(offline).max()),
    }


@torch.no_grad()
def verify_emotion_encoder(graph: EmotionEncoderGraph, path: Path, mels: list[Tensor]) -> dict:
    """Max abs error per output (embedding, probs, strength, cue) over references of several lengths.

    One session serves every length: this is what proves T dynamic.
    """
    session = cpu_session(path)
    errors = dict.fromkeys(graph.OUTPUTS, 0.0)
    for mel in mels:
        got = session.run(list(graph.OUTPUTS), {"mel": mel.numpy()})
        for name, a, b in zip(graph.OUTPUTS, got, graph(mel)):
            if a.shape != tuple(b.shape):
                raise ParityError(f"emotion_encoder.onnx: {name} has shape {a.shape}, PyTorch {tuple(b.shape)}")
            errors[name] = max(errors[name], _max_err(a, b.numpy()))
    errors["lengths"] = [int(m.shape[-1]) for m in mels]
    return errors


def verify_export(networks: Networks, step: tuple[StepGraph, Path], encoder: tuple[EmotionEncoderGraph, Path],
                  block: int, audio: np.ndarray | None = None) -> dict:
    """Every parity error of an export, converting `audio` (default: 3 s of probe_audio) with its own
    emotion embedding; the emotion encoder is checked on the whole utterance and its first 40 %."""
    audio = probe_audio(3.0, networks.spec.sample_rate) if audio is None else audio
    mel = log_mel(audio, networks.spec)
    embedding = embed_mel(networks.emotion_encoder, networks.recognition, mel)
    short = mel[..., : max(1, mel.shape[-1] * 2 // 5)]
    return {"audio_seconds": round(audio.size / networks.spec.sample_rate, 3), "tolerance": TOLERANCE,
            "ragged_tail": "dropped (whole blocks only)",
            "step": verify_step(networks, *step, mel, embedding, block),
            "emotion_encoder": verify_emotion_encoder(*encoder, [mel, short])}


def named_errors(errors: dict) -> dict[str, float]:
    """The errors the tolerance applies to, by a readable name."""
    s, e = errors["step"], errors["emotion_encoder"]
    return {"step torch stream vs offline": s["torch_stream_vs_offline"],
            "step onnx vs offline": s["onnx_vs_offline"],
            **{f"step onnx ({lvl}) vs torch stream": v for lvl, v in s["onnx_vs_torch_stream"].items()},
            **{f"emotion_encoder {k}": e[k] for k in EmotionEncoderGraph.OUTPUTS}}


def check(errors: dict) -> None:
    """ParityError (one line) naming the worst error above the tolerance; NaN counts as above."""
    over = {k: v for k, v in named_errors(errors).items() if not v <= errors["tolerance"]}
    if over:
        name = max(over, key=lambda k: (math.isnan(over[k]), over[k]))
        raise ParityError(f"export failed verification: {name} max abs error {over[name]:.3g} "
                          f"exceeds {errors['tolerance']:g}")
