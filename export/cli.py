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
    p.add_argument("--block-frames", type=positive_int, default=2, metavar="N",
                   help="frames per streaming block, the step graph's fixed mel length (default 2 = 20 ms)")
    p.add_argument("--opset", type=positive_int, default=None, metavar="K", help="ONNX opset (default 17)")
    p.add_argument("--variants", type=_variants, default=(), metavar="LIST",
                   help="comma-separated extra step graphs to build and measure: int8, fp16")
    p.set_defaults(func=run_export)


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


def summary(manifest: dict) -> list[str]:
    """Human-readable lines: parity errors, then each variant's speed-up and error."""
    step, enc, tol = manifest["parity"]["step"], manifest["parity"]["emotion_encoder"], manifest["parity"]["tolerance"]
    lines = [f"max abs error, step audio: onnx vs torch stream {max(step['onnx_vs_torch_stream'].values()):.3g}, "
             f"torch stream vs offline {step['torch_stream_vs_offline']:.3g}, onnx vs offline "
             f"{step['onnx_vs_offline']:.3g} (tolerance {tol:g}, {step['frames']} frames)",
             "max abs error, emotion encoder: " + ", ".join(f"{k} {enc[k]:.3g}" for k in
                                                            ("embedding", "probs", "strength", "cue"))]
    for name, v in manifest.get("variants", {}).items():
        lines.append(f"variant {name}: speedup x{v['speedup']:.2f} vs fp32, max abs error {v['max_abs_err']:.3g}"
                     + (f" ({v['note']})" if "note" in v else ""))
    lines += manifest.get("variants_skipped", [])
    return lines
