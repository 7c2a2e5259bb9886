"""Parity checks of an export: ONNX Runtime streaming == PyTorch streaming == PyTorch offline.

The utterance is converted three ways from the same log-mel (training.features.LogMel),
the same pitch features (engine.pitch) and the same embedding:

- offline:      Ec.forward → G.forward → vocoder.forward on the whole sequence;
- torch stream: StepGraph block by block, state carried from zeros;
- onnx stream:  step.onnx block by block in ONNX Runtime (CPU), once per optimisation level.

The vocoder graph (copy synthesis) is checked the same way on the analysed utterance.

Ragged tail: only whole blocks are streamed (``T - T % block_frames`` frames), as the
engine does; the offline output is cut to the same length. The models are causal, so
the frames after the cut do not change the ones before it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from engine.anchor import neutral_anchor
from engine.errors import ModelError
from engine.manifest import NEXT_SUFFIX, PROSODY_INPUT, STEP_OUTPUT
from export.graphs import EmotionEncoderGraph, StepGraph, VocoderGraph
from export.load import Networks
from export.reference import convert_frames, embed_mel, log_mel, ref_pitch, render_frames, source_pitch

TOLERANCE = 1e-4
SPECTRAL_TOLERANCE_DB = 0.05
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


def whole_blocks(x: Tensor, block: int) -> Tensor:
    """x (1, C, T) cut to its whole blocks: (1, C, T - T % block)."""
    return x[..., : x.shape[-1] - x.shape[-1] % block]


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
def stream_torch(graph: torch.nn.Module, frames: list[Tensor], constants: list[Tensor], block: int) -> dict:
    """graph(*frame blocks, *constants, *state) block by block -> {output: (C, T') or (T' * hop,) for audio}.

    frames: the per-frame inputs (1, C, T) in the graph's order; constants: inputs fed whole
    to every block (the emotion (1, D)); T' = whole blocks of T.
    """
    state, out = graph.init_state(), {name: [] for name in graph.OUTPUTS}
    frames = [whole_blocks(f, block) for f in frames]
    with one_torch_thread():
        for start in range(0, frames[0].shape[-1], block):
            results = graph(*(f[..., start:start + block] for f in frames), *constants, *state)
            for name, value in zip(graph.OUTPUTS, results):
                out[name].append(value[0])
            state = list(results[len(graph.OUTPUTS):])
    return {name: torch.cat(values, dim=-1).numpy() for name, values in out.items()}


def block_feeds(frames: dict[str, np.ndarray], constants: dict[str, np.ndarray], block: int):
    """The feeds of each whole block, in order: frames (name -> (1, C, T)) sliced, constants whole."""
    total = next(iter(frames.values())).shape[-1]
    for start in range(0, total - total % block, block):
        yield {**{k: np.ascontiguousarray(v[..., start:start + block]) for k, v in frames.items()}, **constants}


def stream_onnx(session: ort.InferenceSession, state_shapes: dict[str, tuple], frames: dict[str, np.ndarray],
                constants: dict[str, np.ndarray], block: int, outputs: tuple[str, ...] = (STEP_OUTPUT,)) -> dict:
    """A graph streamed block by block in ONNX Runtime, state from zeros -> {output: as stream_torch}."""
    state = {name: np.zeros(shape, np.float32) for name, shape in state_shapes.items()}
    names = [*outputs, *(n + NEXT_SUFFIX for n in state)]
    out = {name: [] for name in outputs}
    for feeds in block_feeds(frames, constants, block):
        results = session.run(names, {**feeds, **state})
        for name, value in zip(outputs, results):
            out[name].append(value[0])
        state = dict(zip(state, results[len(outputs):]))
    return {name: np.concatenate(values, axis=-1) for name, values in out.items()}


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def log_spectral_distance_db(a: np.ndarray, b: np.ndarray, n_fft: int = 512, floor_db: float = 60.0) -> float:
    """Mean |20 log10 |STFT a| - 20 log10 |STFT b|| in dB over the bins of b within floor_db of its
    loudest (n_fft window, hop n_fft / 4): how different two renderings sound, blind to a
    slight shift of the excitation's pulses that changes samples but not spectra."""
    def db(x):
        x = np.asarray(x, np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 4] * np.hanning(n_fft)
        return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)) + 1e-12)
    da, dbb = db(a), db(b)
    loud = dbb >= dbb.max() - floor_db
    return float(np.abs(da - dbb)[loud].mean())


def verify_stream(offline: dict[str, np.ndarray], graph: torch.nn.Module, path: Path, frames: dict[str, Tensor],
                  constants: dict[str, Tensor], block: int) -> tuple[dict, dict]:
    """Per output of the graph, max abs errors between the offline render, torch streaming and
    ONNX streaming at every optimisation level; and the ONNX outputs (enable_all).

    offline: {output: the render of the whole blocks of frames}; frames and constants in the
    graph's input order.
    """
    streamed = stream_torch(graph, list(frames.values()), list(constants.values()), block)
    shapes = dict(zip(graph.state_names(), graph.state_shapes()))
    np_frames = {k: v.numpy() for k, v in frames.items()}
    np_constants = {k: v.numpy() for k, v in constants.items()}
    onnx_out = {lvl: stream_onnx(cpu_session(path, lvl), shapes, np_frames, np_constants, block, graph.OUTPUTS)
                for lvl in LEVELS}
    errors = {}
    for name in graph.OUTPUTS:
        errors[name] = {
            "torch_stream_vs_offline": _max_err(streamed[name], offline[name]),
            "onnx_vs_torch_stream": {lvl: _max_err(o[name], streamed[name]) for lvl, o in onnx_out.items()},
            "onnx_vs_offline": max(_max_err(o[name], offline[name]) for o in onnx_out.values()),
            "onnx_disable_all_vs_enable_all": _max_err(onnx_out["disable_all"][name], onnx_out["enable_all"][name]),
            "peak": float(np.abs(offline[name]).max()),
        }
    errors["frames_streamed"] = int(whole_blocks(next(iter(frames.values())), block).shape[-1])
    return errors, onnx_out["enable_all"]


@torch.no_grad()
def verify_emotion_encoder(graph: EmotionEncoderGraph, path: Path,
                           references: list[tuple[Tensor, Tensor, Tensor]]) -> dict:
    """Max abs error per output (embedding, probs, strength, cue) over references (mel, pitch, anchor)
    of several lengths.

    One session serves every length: this is what proves T dynamic.
    """
    session = cpu_session(path)
    errors = dict.fromkeys(graph.OUTPUTS, 0.0)
    for mel, pitch, anchor in references:
        got = session.run(list(graph.OUTPUTS), {"mel": mel.numpy(), "pitch": pitch.numpy(), "anchor": anchor.numpy()})
        for name, a, b in zip(graph.OUTPUTS, got, graph(mel, pitch, anchor)):
            if a.shape != tuple(b.shape):
                raise ParityError(f"emotion_encoder.onnx: {name} has shape {a.shape}, PyTorch {tuple(b.shape)}")
            errors[name] = max(errors[name], _max_err(a, b.numpy()))
    errors["lengths"] = [int(m.shape[-1]) for m, _, _ in references]
    return errors


@dataclass(frozen=True)
class Probe:
    """What every check feeds the graphs: log-mel (1, n_mels, T), the engine tracker's pitch
    (1, 4, T), the reference pitch (1, 2, T), the utterance's own embedding (1, D) and a prosody
    move (1, MOVE_SIZE) that changes every frame (PROBE_MOVE)."""

    mel: Tensor
    pitch_in: Tensor
    pitch: Tensor
    embedding: Tensor
    move: Tensor = field(default_factory=lambda: torch.tensor([PROBE_MOVE]))

    @property
    def constants(self) -> dict[str, Tensor]:
        """The step graph's per-stream inputs: emotion (1, D), prosody (1, MOVE_SIZE)."""
        return {"emotion": self.embedding, PROSODY_INPUT: self.move}


PROBE_MOVE = (1.0, 0.2, 0.3, 1.0, 1.2)
"""Pitch and level imposed in full, 0.2 up in log-F0 with the spread x1.35, at a voiced level of 1.2 (a
loud reference's: the bundled bank's Angry entry reads 1.3, its neutral 0.7)."""


def probe(networks: Networks, audio: np.ndarray) -> Probe:
    spec = networks.spec
    mel, pitch = log_mel(audio, spec), ref_pitch(audio, spec)
    return Probe(mel, source_pitch(audio, spec), pitch,
                 embed_mel(networks.emotion_encoder, networks.recognition, mel, pitch))


def verify_export(networks: Networks, step: tuple[StepGraph, Path], encoder: tuple[EmotionEncoderGraph, Path],
                  vocoder: tuple[VocoderGraph, Path], block: int, audio: np.ndarray | None = None) -> dict:
    """Every parity error of an export, converting `audio` (default: 3 s of probe_audio) with its own
    emotion embedding; the emotion encoder is checked on the whole utterance and its first 40 %.

    The step graph's audio is compared three ways: sample by sample with the offline render
    (reported, not bounded: the excitation's phase integrates F0, so the last-bit differences
    of the generator's log-F0 between any two implementations shift later pulses a little),
    sample by sample with the offline vocoder rendering the streamed frames (bounded: the
    audio is exactly the vocoder of the frames), and by log-spectral distance to the offline
    render (bounded: it must sound the same).
    """
    audio = probe_audio(3.0, networks.spec.sample_rate) if audio is None else audio
    p = probe(networks, audio)
    cut = lambda x: whole_blocks(x, block)  # noqa: E731
    with torch.no_grad():
        voc_offline = {"audio": networks.vocoder(cut(p.mel), cut(p.pitch)).reshape(-1).numpy()}
    short = max(1, p.mel.shape[-1] * 2 // 5)
    anchor = torch.from_numpy(neutral_anchor([p.mel[0].numpy()], [p.pitch[0].numpy()]))[None]
    return {"audio_seconds": round(audio.size / networks.spec.sample_rate, 3), "tolerance": TOLERANCE,
            "spectral_tolerance_db": SPECTRAL_TOLERANCE_DB, "ragged_tail": "dropped (whole blocks only)",
            "step": verify_step(networks, step, block, p),
            "vocoder": verify_stream(voc_offline, *vocoder, {"mel": p.mel, "pitch": p.pitch}, {}, block)[0],
            "emotion_encoder": verify_emotion_encoder(*encoder, [(p.mel, p.pitch, anchor),
                                                                 (p.mel[..., :short], p.pitch[..., :short], anchor)])}


def verify_step(networks: Networks, step: tuple[StepGraph, Path], block: int, p: Probe) -> dict:
    """The step graph's parity errors streaming probe `p` in blocks of `block` frames (see verify_export)."""
    cut = lambda x: whole_blocks(x, block)  # noqa: E731
    pitch = cut(p.pitch_in)
    with torch.no_grad():
        frames = convert_frames(networks, cut(p.mel), pitch, p.embedding, p.move)
        offline = {"audio": render_frames(networks, frames)[0].numpy(), "frames": frames[0].numpy()}
    errors, onnx_out = verify_stream(offline, *step, {"mel": p.mel, "pitch": p.pitch_in}, p.constants, block)
    with torch.no_grad():
        onnx_frames = torch.from_numpy(onnx_out["frames"])[None]
        of_frames = render_frames(networks, onnx_frames)[0].numpy()
    errors["audio"]["onnx_vs_vocoder_of_onnx_frames"] = _max_err(onnx_out["audio"], of_frames)
    errors["audio"]["log_spectral_distance_db"] = log_spectral_distance_db(onnx_out["audio"], offline["audio"])
    return errors


def _stream_errors(label: str, e: dict) -> dict[str, float]:
    return {f"{label} torch stream vs offline": e["torch_stream_vs_offline"], f"{label} onnx vs offline":
            e["onnx_vs_offline"], **{f"{label} onnx ({lvl}) vs torch stream": v
                                     for lvl, v in e["onnx_vs_torch_stream"].items()}}


def named_errors(errors: dict) -> dict[str, float]:
    """The errors the sample tolerance applies to, by a readable name (see verify_export)."""
    named = {f"emotion_encoder {k}": errors["emotion_encoder"][k] for k in EmotionEncoderGraph.OUTPUTS}
    named.update(_stream_errors("step frames", errors["step"]["frames"]))
    named.update(_stream_errors("vocoder audio", errors["vocoder"]["audio"]))
    named["step audio onnx vs vocoder of its frames"] = errors["step"]["audio"]["onnx_vs_vocoder_of_onnx_frames"]
    return named


def check(errors: dict) -> None:
    """ParityError (one line) naming the worst error above the tolerance; NaN counts as above."""
    spectral = errors["step"]["audio"]["log_spectral_distance_db"]
    if not spectral <= errors["spectral_tolerance_db"]:
        raise ParityError(f"export failed verification: step audio log-spectral distance to the offline render "
                          f"{spectral:.3g} dB exceeds {errors['spectral_tolerance_db']:g} dB")
    over = {k: v for k, v in named_errors(errors).items() if not v <= errors["tolerance"]}
    if over:
        name = max(over, key=lambda k: (math.isnan(over[k]), over[k]))
        raise ParityError(f"export failed verification: {name} max abs error {over[name]:.3g} "
                          f"exceeds {errors['tolerance']:g}")
