"""Copy synthesis: how far a vocoder checkpoint alone is from natural speech.

    python -m training.recipes.copy_synthesis CORPUS CKPT [CKPT ...] [--split test] [--n 10]

Each checkpoint's vocoder renders the ground-truth log-mel of `n` utterances spread evenly
over the split, and MCD-DTW (the quality benchmark's metric) compares each rendering with
the natural audio. This bounds what the whole conversion chain can reach: a converted
utterance cannot be closer to natural speech than its vocoder's copy synthesis.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.features import analyse
from benchmarks.metrics import mcd
from engine.audio import load_audio
from engine.cli import positive_int
from engine.errors import EVCError
from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_checkpoint, load_weights
from training.data.esd import scan
from training.features import LogMel

Render = Callable[[np.ndarray], np.ndarray]


def vocoder_render(ckpt: dict, spec: SignalSpec) -> Render:
    """audio (N,) float32 -> the vocoder checkpoint's (as load_checkpoint returns it) output on its log-mel, (N',)."""
    vocoder = build_models(ckpt["config"]["models"], spec, ("vocoder",))["vocoder"]
    load_weights({"vocoder": vocoder}, ckpt, ["vocoder"])
    vocoder.eval()
    logmel = LogMel(spec)

    @torch.no_grad()
    def render(audio: np.ndarray) -> np.ndarray:
        return vocoder(logmel(torch.from_numpy(audio)[None]))[0, 0].numpy()
    return render


def copy_synthesis_mcd(render: Render, paths: list[Path], sample_rate: int) -> list[float]:
    """MCD-DTW (dB) between each natural utterance and its rendering, over their common length."""
    scores = []
    for path in paths:
        audio = load_audio(path, sample_rate)
        out = render(audio)
        n = min(len(out), len(audio))
        scores.append(mcd(analyse(audio[:n]), analyse(out[:n])))  # WORLD analyses in float64 itself
    return scores


def spread(corpus: str | Path, split: str, n: int) -> list[Path]:
    """`n` utterance paths evenly spaced over the split (every speaker and emotion represented)."""
    utts = scan(corpus, splits=[split])
    return [utts[i].path for i in np.linspace(0, len(utts) - 1, n).round().astype(int)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    p.add_argument("corpus", type=Path)
    p.add_argument("checkpoints", nargs="+", type=Path, metavar="CKPT")
    p.add_argument("--split", default="test", choices=("train", "evaluation", "test"))
    p.add_argument("--n", type=positive_int, default=10, help="utterances (default 10)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        spec, paths = SignalSpec(), spread(args.corpus, args.split, args.n)
        for ckpt in args.checkpoints:
            loaded = load_checkpoint(ckpt, "vocoder", spec)
            scores = copy_synthesis_mcd(vocoder_render(loaded, spec), paths, spec.sample_rate)
            print(f"{ckpt} (step {loaded['step']}): copy-synthesis MCD median {np.median(scores):.2f} dB "
                  f"over {len(scores)} {args.split} utterances, range {min(scores):.2f}-{max(scores):.2f}")
    except EVCError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
