"""Subcommands of the 'export' package, registered into `evc` by engine.cli."""

from __future__ import annotations

import argparse
import sys

from engine.cli import positive_int

VARIANT_NAMES = ("int8", "fp16")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands; handlers import their heavy modules lazily."""
    p = sub.add_parser("export", help="export Stage II + vocoder checkpoints to an ONNX model directory",
                       description="Export the streaming step graph (content encoder -> generator -> "
                                   "vocoder) and the emotion encoder to ONNX, verify them against PyTorch, "
                                   "and write MODEL_DIR with its manifest.json atomically.")
    p.add_argument("--stage2", required=True, metavar="CKPT", help="Stage II checkpoint (stage 'stage2')")
    p.add_argument("--vocoder", required=True, metavar="CKPT", help="vocoder checkpoint (stage 'vocoder')")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write (replaced on success)")
    p.add_argument("--block-frames", type=_block_list, default=(2,), metavar="N[,N...]",
                   help="frames per streaming block, the step graph's fixed mel length (default 2 = 20 ms); "
                        "several (e.g. 2,1) add a step graph per size, the first being the default")
    p.add_argument("--opset", type=positive_int, default=None, metavar="K", help="ONNX opset (default 17)")
    p.add_argument("--variants", type=_variants, default=(), metavar="LIST",
                   help="comma-separated extra step graphs to build and measure: int8, fp16")
    p.set_defaults(func=run_export)


def _block_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(v) for v in text.split(",") if v.strip()))
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive frame counts separated by commas, got {text!r}")
    return values


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant {unknown[0]!r} (choose from {', '.join(VARIANT_NAMES)})")
    return tuple(dict.fromkeys(names))


def run_export(args: argparse.Namespace) -> int:
    from export.model_dir import export_model
    from export.to_onnx import DEFAULT_OPSET

    manifest = export_model(args.stage2, args.vocoder, args.out, args.block_frames, args.opset or DEFAULT_OPSET,
                            args.variants, log=lambda line: print(f"evc export: {line}", file=sys.stderr))
    for line in summary(manifest):
        print(line)
    print(f"wrote {args.out}")
    return 0


def _stream_line(e: dict) -> str:
    return (f"onnx vs torch stream {max(e['onnx_vs_torch_stream'].values()):.3g}, torch stream vs offline "
            f"{e['torch_stream_vs_offline']:.3g}, onnx vs offline {e['onnx_vs_offline']:.3g}")


def summary(manifest: dict) -> list[str]:
    """Human-readable lines: parity errors, then each variant's speed-up and error."""
    parity = manifest["parity"]
    step, voc, enc, tol = parity["step"], parity["vocoder"]["audio"], parity["emotion_encoder"], parity["tolerance"]
    lines = [f"max abs error, step frames: {_stream_line(step['frames'])} (tolerance {tol:g}, "
             f"{step['frames_streamed']} frames)",
             f"step audio: onnx vs the vocoder of its frames {step['audio']['onnx_vs_vocoder_of_onnx_frames']:.3g}, "
             f"log-spectral distance to the offline render {step['audio']['log_spectral_distance_db']:.3g} dB "
             f"(tolerance {parity['spectral_tolerance_db']:g} dB; max abs {step['audio']['onnx_vs_offline']:.3g}, "
             "the excitation's phase integrating last-bit F0 differences)",
             f"max abs error, vocoder audio: {_stream_line(voc)}",
             "max abs error, emotion encoder: " + ", ".join(f"{k} {enc[k]:.3g}" for k in
                                                            ("embedding", "probs", "strength", "cue"))]
    for name, e in parity.items():
        if name.startswith("step@"):
            lines.append(f"{name.replace('step@', 'step graph for blocks of ')} frames: {_stream_line(e['frames'])}, "
                         f"audio log-spectral distance {e['audio']['log_spectral_distance_db']:.3g} dB")
    for name, v in manifest.get("variants", {}).items():
        lines.append(f"variant {name}: speedup x{v['speedup']:.2f} vs fp32, max abs error of the frames "
                     f"{v['max_abs_err']:.3g}" + (f" ({v['note']})" if "note" in v else ""))
    lines += manifest.get("variants_skipped", [])
    return lines
