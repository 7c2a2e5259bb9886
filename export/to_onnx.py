"""torch.onnx.export of the wrapper graphs, and what the manifest says about an ONNX file.

The TorchScript-based exporter (``dynamo=False``, still in torch 2.13) is used: it
traces the fixed-shape step graph into plain Conv/ConvTranspose/Slice/Concat nodes;
export/verify.py then runs the result at every ONNX Runtime optimisation level.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from onnx import TensorProto

from engine.errors import ModelError
from engine.manifest import FRAMES_OUTPUT, NEXT_SUFFIX, PROSODY_INPUT, STEP_INPUTS, STEP_OUTPUT, VOCODER_INPUTS
from engine.pitch import N_FEATURES
from engine.prosody import MOVE_SIZE
from engine.signal import SignalSpec
from export.graphs import EmotionEncoderGraph, StepGraph, VocoderGraph

DEFAULT_OPSET = 17
MIN_OPSET = 12  # Einsum (emotion encoder, recognition) first exists in opset 12
# Ops that only make sense while training or that draw random numbers: an exported
# inference graph must contain none of them.
TRAINING_OPS = frozenset({"Dropout", "RandomNormal", "RandomNormalLike", "RandomUniform",
                          "RandomUniformLike", "Bernoulli", "Multinomial"})
DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.INT64: "int64"}


def check_opset(opset: int) -> None:
    """ModelError unless both graphs can be exported at `opset`.

    Checked up front: on an opset it does not know, torch prints its whole traced graph
    to stderr before failing.
    """
    from torch.onnx import _constants  # private, but the only place torch states its newest opset

    newest = int(getattr(_constants, "ONNX_MAX_OPSET", 10**6))
    if not MIN_OPSET <= opset <= newest:
        raise ModelError(f"opset {opset}: these graphs export at opsets {MIN_OPSET} to {newest}")


def _export(module: torch.nn.Module, args: tuple, path: Path, opset: int, inputs: list[str],
            outputs: list[str], dynamic_axes: dict | None = None) -> onnx.ModelProto:
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and that traced shapes are
        # constants; both are what we want for fixed-shape graphs.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=opset,
                              input_names=inputs, output_names=outputs, dynamic_axes=dynamic_axes,
                              do_constant_folding=True)
        except (torch.onnx.errors.OnnxExporterError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{path.name}: torch.onnx.export failed at opset {opset} ({first})") from None
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


def _example_pitch(frames: int, rows: int) -> torch.Tensor:
    """A plausible pitch block for tracing: 150 Hz (and a 0.1 spread), voiced."""
    base = torch.tensor([1.0, 5.0, 5.0, 0.1])[:rows] if rows == N_FEATURES else torch.tensor([5.0, 1.0])
    return base[None, :, None].expand(1, rows, frames).contiguous()


def _stream_export(graph, frame_args: tuple, constants: tuple, inputs: tuple[str, ...], outputs: tuple[str, ...],
                   path: Path, opset: int) -> onnx.ModelProto:
    names = graph.state_names()
    return _export(graph, (*frame_args, *constants, *graph.init_state()), path, opset, [*inputs, *names],
                   [*outputs, *(n + NEXT_SUFFIX for n in names)])


def export_step(graph: StepGraph, spec: SignalSpec, embedding_dim: int, path: Path,
                opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write the step graph: (mel (1, n_mels, N), pitch (1, 4, N), emotion (1, D), prosody (1, MOVE_SIZE),
    state...) -> (audio (1, N*hop), frames (1, n_mels + 2, N), state_next...)."""
    n = spec.block_frames
    return _stream_export(graph, (torch.zeros(1, spec.n_mels, n), _example_pitch(n, N_FEATURES)),
                          (torch.zeros(1, embedding_dim), torch.zeros(1, MOVE_SIZE)), (*STEP_INPUTS, PROSODY_INPUT),
                          (STEP_OUTPUT, FRAMES_OUTPUT), path, opset)


def export_vocoder(graph: VocoderGraph, spec: SignalSpec, path: Path, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write the vocoder graph: (mel (1, n_mels, N), pitch (1, 2, N), state...) -> (audio (1, N*hop), state_next...)."""
    n = spec.block_frames
    return _stream_export(graph, (torch.zeros(1, spec.n_mels, n), _example_pitch(n, 2)), (), VOCODER_INPUTS,
                          (STEP_OUTPUT,), path, opset)


def export_emotion_encoder(graph: EmotionEncoderGraph, spec: SignalSpec, path: Path,
                           opset: int = DEFAULT_OPSET, example_frames: int = 50) -> onnx.ModelProto:
    """Write the emotion encoder: mel (1, n_mels, T), pitch (1, 2, T), anchor (1, n_mels + 1) -> embedding,
    probs, strength, cue (1, T); T dynamic."""
    mel = torch.randn(1, spec.n_mels, example_frames)
    anchor = graph.emotion_encoder.centre[None].clone()
    model = _export(graph, (mel, _example_pitch(example_frames, 2), anchor), path, opset, ["mel", "pitch", "anchor"],
                    list(graph.OUTPUTS), dynamic_axes={"mel": {2: "T"}, "pitch": {2: "T"}, "cue": {1: "T"}})
    _pin_output_shapes(model, graph.output_shapes())
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def _pin_output_shapes(model: onnx.ModelProto, shapes: dict[str, list]) -> None:
    """Declare the outputs' batch-1 shapes: the tracer leaves the batch axis of einsum results symbolic."""
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for dim, value in zip(dims, shapes[out.name], strict=True):
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value


def opset_of(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def tensor_infos(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of a graph as manifest entries {name, shape, dtype}; a dynamic axis is its name."""
    def info(v) -> dict:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": DTYPES.get(t.elem_type, str(t.elem_type))}
    return [info(v) for v in model.graph.input], [info(v) for v in model.graph.output]


def training_ops(model: onnx.ModelProto) -> list[str]:
    """Nodes that have no place in an inference graph: training/random ops, training_mode=1."""
    found = [n.op_type for n in model.graph.node if n.op_type in TRAINING_OPS]
    found += [f"{n.op_type}(training_mode=1)" for n in model.graph.node
              for a in n.attribute if a.name == "training_mode" and a.i == 1]
    return found
