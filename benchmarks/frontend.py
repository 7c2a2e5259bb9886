"""Per-block cost of the engine's streaming log-mel frontend, in microseconds.

Usage: python -m benchmarks.frontend [--blocks 1 2 4 8] [--n 5000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engine.features import StreamingLogMel
from engine.signal import SignalSpec


def time_blocks(block_frames: int, n: int, spec: SignalSpec) -> np.ndarray:
    """Seconds per StreamingLogMel.process call over n blocks of block_frames frames, (n,) float64."""
    frontend = StreamingLogMel(spec.replace(block_frames=block_frames))
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (n, block_frames * spec.hop)).astype(np.float32)
    for block in audio[: min(n, 200)]:  # warm caches and branch predictors, not just the compiler
        frontend.process(block)
    seconds = np.empty(n)
    for i, block in enumerate(audio):
        start = time.perf_counter()
        frontend.process(block)
        seconds[i] = time.perf_counter() - start
    return seconds


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8], help="frames per block")
    parser.add_argument("--n", type=int, default=5000, help="timed blocks per size (>= 2000 for a stable p99)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    spec = SignalSpec()
    print(f"{'frames':>6} {'median us/block':>16} {'p99 us/block':>13} {'median us/frame':>16} {'p99 us/frame':>13}")
    for frames in args.blocks:
        median, p99 = np.percentile(time_blocks(frames, args.n, spec), [50, 99]) * 1e6
        print(f"{frames:>6} {median:>16.1f} {p99:>13.1f} {median / frames:>16.1f} {p99 / frames:>13.1f}")


if __name__ == "__main__":
    main()
