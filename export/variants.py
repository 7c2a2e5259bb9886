"""Optional reduced-precision copies of step.onnx, each measured against the fp32 graph.

- int8: onnxruntime.quantization.quantize_dynamic (weights int8, activations quantised
  per call), for the CPU provider.
- fp16: float16 weights and arithmetic with float32 inputs/outputs (so the engine binds
  the same buffers), through onnxconverter-common's converter, or the copy of it that
  ships inside onnxruntime (onnxruntime.transformers.float16). Skipped when neither imports.

fp32 stays the default graph; a variant is only recorded, with its measured CPU speed-up
(median per-block time) and max abs error of the generator's frames against fp32: not of
the audio, whose excitation phase integrates F0, so that any change of the log-F0 shifts
later pulses and the audio's sample error measures that drift, not the variant (export.verify).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from engine.manifest import FRAMES_OUTPUT, NEXT_SUFFIX, STEP_OUTPUT, sha256_file
from export.verify import block_feeds, cpu_session, stream_onnx

VARIANTS = ("int8", "fp16")
TIMED_BLOCKS = 300


def _int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ORT's recommended pre-pass (shape inference, graph clean-up) before quantising.
    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre))
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)


def _fp16_converter() -> Callable | None:
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        try:
            from onnxruntime.transformers.float16 import convert_float_to_float16
        except ImportError:
            return None
    return convert_float_to_float16


def _fp16(src: Path, dst: Path) -> None:
    convert = _fp16_converter()
    onnx.save(convert(onnx.load(str(src)), keep_io_types=True), str(dst))


def available(name: str) -> str | None:
    """None when variant `name` can be built here, else why not (one line)."""
    if name == "fp16" and _fp16_converter() is None:
        return "fp16 skipped: neither onnxconverter-common nor onnxruntime.transformers.float16 is installed"
    return None


def block_time(path: Path, state_shapes: dict[str, tuple], frames: dict[str, np.ndarray],
               constants: dict[str, np.ndarray], block: int, n_blocks: int = TIMED_BLOCKS) -> float:
    """Median seconds per step call over n_blocks blocks of frames (cycled), one CPU thread, after warm-up."""
    session = cpu_session(path)
    state = {n: np.zeros(s, np.float32) for n, s in state_shapes.items()}
    outputs = [STEP_OUTPUT, *(n + NEXT_SUFFIX for n in state)]
    feeds = list(block_feeds(frames, constants, block))
    times = []
    for i in range(n_blocks + 10):
        t = time.perf_counter()
        _, *new = session.run(outputs, {**feeds[i % len(feeds)], **state})
        times.append(time.perf_counter() - t)
        state = dict(zip(state, new))
    return statistics.median(times[10:])


def build_variants(names: list[str], step_path: Path, state_shapes: dict[str, tuple], frames: dict[str, np.ndarray],
                   constants: dict[str, np.ndarray], block: int) -> tuple[dict[str, dict], list[str]]:
    """Write step.NAME.onnx beside step_path for each buildable name: (manifest entries, skip messages).

    An entry is {file, sha256, speedup, max_abs_err, ...}; frames (mel (1, n_mels, T), pitch
    (1, 4, T)) and constants (emotion (1, D)) float32 are what the variant and fp32 graphs
    stream for the error and timing.
    """
    skipped = [why for why in map(available, names) if why]
    names = [n for n in names if available(n) is None]
    if not names:
        return {}, skipped
    ref = stream_onnx(cpu_session(step_path), state_shapes, frames, constants, block, (FRAMES_OUTPUT,))
    t32 = block_time(step_path, state_shapes, frames, constants, block)
    entries = {}
    for name in names:
        dst = step_path.with_name(f"step.{name}.onnx")
        {"int8": _int8, "fp16": _fp16}[name](step_path, dst)
        got = stream_onnx(cpu_session(dst), state_shapes, frames, constants, block, (FRAMES_OUTPUT,))
        entries[name] = _entry(name, dst, block_time(dst, state_shapes, frames, constants, block), t32,
                               float(np.abs(got[FRAMES_OUTPUT].astype(np.float64) - ref[FRAMES_OUTPUT]).max()))
    return entries, skipped


def _entry(name: str, path: Path, t: float, t32: float, err: float) -> dict:
    entry = {"file": path.name, "sha256": sha256_file(path), "speedup": round(t32 / t, 3), "max_abs_err": err,
             "median_block_ms": round(1e3 * t, 4), "fp32_median_block_ms": round(1e3 * t32, 4),
             "timed_blocks": TIMED_BLOCKS, "provider": "CPUExecutionProvider, 1 thread"}
    if t >= t32:
        entry["note"] = f"{name} is not faster than fp32 on this CPU: keep the default fp32 step.onnx"
    return entry
