"""A hand-built exported model directory (manifest + ONNX graphs) for engine tests.

The step graph is a tiny causal function with one state tensor, simple enough to
compute in numpy:  audio[f] = mean_mels(mel[:, f]) + sum(emotion) + mean(state),
repeated over the frame's hop samples; the new state is the last 3 mel frames. Its inputs
are the real step graph's (engine.manifest.STEP_INPUTS): the pitch block (1, 4, N) is
declared, so the engine binds and feeds it, but the formula ignores it. The encoder graph
likewise takes the reference pitch (1, 2, T) and ignores it; it reads the reference from its
anchor (1, n_mels + 1) as the real one does, by subtracting (anchor - TOY_CENTRE)'s first `dim`
values from its embedding (anchored=False: an encoder exported before anchors, no such input).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from engine.manifest import FORMAT, PROSODY_INPUT, PROSODY_LEVEL, sha256_file
from engine.pitch import N_FEATURES
from engine.prosody import MOVE_SIZE
from engine.signal import EMOTIONS, SignalSpec

STATE_FRAMES = 3
TOY_CENTRE_LEVEL, TOY_CENTRE_LF0 = -5.0, 5.0
"""The toy manifest's anchor_centre: every band at this log-mel level, and this log-F0."""


def _step_graph(spec: SignalSpec, dim: int, prosody: bool) -> onnx.ModelProto:
    n, m, hop = spec.block_frames, spec.n_mels, spec.hop
    f = TensorProto.FLOAT
    c = helper.make_tensor
    nodes = [
        helper.make_node("Concat", ["state", "mel"], ["cat"], axis=2),
        helper.make_node("Slice", ["cat", "starts", "ends", "axes"], ["state_next"]),
        helper.make_node("ReduceMean", ["mel"], ["frame_mean"], axes=[1], keepdims=0),
        helper.make_node("ReduceSum", ["emotion", "ax1"], ["emo_raw" if prosody else "emo_sum"], keepdims=1),
        helper.make_node("ReduceMean", ["state"], ["state_mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Add", ["frame_mean", "emo_sum"], ["a"]),
        helper.make_node("Add", ["a", "state_mean"], ["b"]),
        helper.make_node("Unsqueeze", ["b", "ax2"], ["b3"]),
        helper.make_node("Tile", ["b3", "reps"], ["tiled"]),
        helper.make_node("Reshape", ["tiled", "shape"], ["audio"]),
    ]
    inits = [c("starts", TensorProto.INT64, [1], [n]), c("ends", TensorProto.INT64, [1], [n + STATE_FRAMES]),
             c("axes", TensorProto.INT64, [1], [2]), c("ax1", TensorProto.INT64, [1], [1]),
             c("ax2", TensorProto.INT64, [1], [2]), c("reps", TensorProto.INT64, [3], [1, 1, hop]),
             c("shape", TensorProto.INT64, [2], [1, n * hop])]
    inputs = [helper.make_tensor_value_info("mel", f, [1, m, n]),
              helper.make_tensor_value_info("pitch", f, [1, N_FEATURES, n]),
              helper.make_tensor_value_info("emotion", f, [1, dim])]
    if prosody:
        nodes += [helper.make_node("ReduceSum", [PROSODY_INPUT, "ax1"], ["move_sum"], keepdims=1),
                  helper.make_node("Add", ["emo_raw", "move_sum"], ["emo_sum"])]
        inputs.append(helper.make_tensor_value_info(PROSODY_INPUT, f, [1, MOVE_SIZE]))
    graph = helper.make_graph(
        nodes, "toy_step", [*inputs, helper.make_tensor_value_info("state", f, [1, m, STATE_FRAMES])],
        [helper.make_tensor_value_info("audio", f, [1, n * hop]),
         helper.make_tensor_value_info("state_next", f, [1, m, STATE_FRAMES])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def toy_centre(spec: SignalSpec) -> np.ndarray:
    return np.array([TOY_CENTRE_LEVEL] * spec.n_mels + [TOY_CENTRE_LF0], np.float32)


def _encoder_graph(spec: SignalSpec, dim: int, anchored: bool) -> onnx.ModelProto:
    """embedding = mean over time of the first `dim` mel bins (less the anchor's first `dim` values
    less the centre's); probs uniform; strength 0.5."""
    f = TensorProto.FLOAT
    c = helper.make_tensor
    k = len(EMOTIONS)
    pooled = "pooled" if anchored else "embedding"
    nodes = [
        helper.make_node("Slice", ["mel", "s0", "s1", "sax"], ["head"]),
        helper.make_node("ReduceMean", ["head"], [pooled], axes=[2], keepdims=0),
        helper.make_node("Identity", ["probs_c"], ["probs"]),
        helper.make_node("Identity", ["strength_c"], ["strength"]),
        helper.make_node("ReduceMean", ["mel"], ["cue_raw"], axes=[1], keepdims=0),
        helper.make_node("Softmax", ["cue_raw"], ["cue"], axis=1),
    ]
    inits = [c("s0", TensorProto.INT64, [1], [0]), c("s1", TensorProto.INT64, [1], [dim]),
             c("sax", TensorProto.INT64, [1], [1]), c("probs_c", f, [1, k], [1.0 / k] * k),
             c("strength_c", f, [1], [0.5])]
    inputs = [helper.make_tensor_value_info("mel", f, [1, spec.n_mels, "T"]),
              helper.make_tensor_value_info("pitch", f, [1, 2, "T"])]
    if anchored:
        nodes += [helper.make_node("Sub", ["anchor", "centre"], ["shift"]),
                  helper.make_node("Slice", ["shift", "s0", "s1", "sax"], ["shift_head"]),
                  helper.make_node("Sub", [pooled, "shift_head"], ["embedding"])]
        inits.append(c("centre", f, [1, spec.n_mels + 1], toy_centre(spec).tolist()))
        inputs.append(helper.make_tensor_value_info("anchor", f, [1, spec.n_mels + 1]))
    graph = helper.make_graph(
        nodes, "toy_encoder", inputs,
        [helper.make_tensor_value_info("embedding", f, [1, dim]), helper.make_tensor_value_info("probs", f, [1, k]),
         helper.make_tensor_value_info("strength", f, [1]), helper.make_tensor_value_info("cue", f, [1, "T"])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _io(model: onnx.ModelProto) -> tuple[list, list]:
    def info(v):
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": "float32"}
    return [info(v) for v in model.graph.input], [info(v) for v in model.graph.output]


def write_toy_model(out: Path, spec: SignalSpec | None = None, dim: int = 8, anchored: bool = True,
                    prosody: bool = False) -> Path:
    """Write step.onnx, emotion_encoder.onnx and manifest.json into `out`; returns out. prosody: the step
    graph also takes the prosody move (1, MOVE_SIZE) and adds its sum to the audio, as it does the emotion's."""
    spec = spec or SignalSpec()
    out.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for name, model in (("step", _step_graph(spec, dim, prosody)),
                        ("emotion_encoder", _encoder_graph(spec, dim, anchored))):
        onnx.save(model, out / f"{name}.onnx")
        inputs, outputs = _io(model)
        graphs[name] = {"file": f"{name}.onnx", "sha256": sha256_file(out / f"{name}.onnx"),
                        "inputs": inputs, "outputs": outputs}
    manifest = {
        "format": FORMAT, "signal": spec.to_dict(), "embedding_dim": dim, "emotions": list(EMOTIONS),
        "algorithmic_latency_ms": spec.algorithmic_latency_ms, "graphs": graphs,
        "state": [{"name": "state", "shape": [1, spec.n_mels, STATE_FRAMES], "dtype": "float32"}],
        "opset": 17,
    }
    if anchored:
        manifest["anchor_centre"] = toy_centre(spec).tolist()
    if prosody:
        manifest["prosody_level"] = PROSODY_LEVEL
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def toy_reference(mels: np.ndarray, emotion: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """What the toy step graph outputs for log-mels (n_mels, T), streamed from zero state: (T*hop,)."""
    m, t = mels.shape
    padded = np.concatenate([np.zeros((m, STATE_FRAMES), np.float32), mels], axis=1)
    out = np.zeros(t * spec.hop, np.float32)
    n = spec.block_frames
    for start in range(0, t - t % n, n):
        state_mean = padded[:, start:start + STATE_FRAMES].mean()
        for f in range(start, start + n):
            out[f * spec.hop:(f + 1) * spec.hop] = mels[:, f].mean() + emotion.sum() + state_mean
    return out
