"""Copy synthesis: how far a vocoder checkpoint alone is from natural speech.

    python -m training.recipes.copy_synthesis CORPUS CKPT [CKPT ...] [--split test] [--n 10]
    python -m training.recipes.copy_synthesis CORPUS --floor [--order 128]

Each checkpoint's vocoder renders the ground-truth features of `n` utterances spread evenly
over the split (log-mel, and the WORLD pitch targets it trains on, training.data.analysis),
and MCD-DTW and log-F0 RMSE (the quality benchmark's metrics) compare each rendering with
the natural audio. This bounds what the whole conversion chain can reach: a converted
utterance cannot be closer to natural speech than its vocoder's copy synthesis. `--floor`
renders the vocoder's WORLD training targets through its synthesiser alone (no network):
the floor a perfect filter net would reach.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.features import analyse
from benchmarks.metrics import f0_rmse_cents, mcd
from engine.audio import load_audio
from engine.cli import positive_int
from engine.errors import EVCError
from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_checkpoint, load_weights
from training.data.analysis import delayed_pitch, envelope_targets, pitch_targets
from training.data.esd import scan
from training.features import LogMel
from training.models.vocoder import SourceFilter

Render = Callable[[np.ndarray], np.ndarray]


def vocoder_render(ckpt: dict, spec: SignalSpec) -> Render:
    """audio (N,) float32 -> the vocoder checkpoint's (as load_checkpoint returns it) output on its
    log-mel and pitch targets, (N',)."""
    vocoder = build_models(ckpt["config"]["models"], spec, ("vocoder",))["vocoder"]
    load_weights({"vocoder": vocoder}, ckpt, ["vocoder"])
    vocoder.eval()
    logmel = LogMel(spec)

    lag = spec.lookahead_frames * spec.hop

    @torch.no_grad()
    def render(audio: np.ndarray) -> np.ndarray:
        # Frame k renders hop k - lookahead: its pitch is that hop's, and the output is moved
        # back by the lookahead so that sample i renders input sample i.
        pitch = torch.from_numpy(delayed_pitch(pitch_targets(audio, spec), spec.lookahead_frames))
        out = vocoder(logmel(torch.from_numpy(audio)[None]), pitch[None])[0, 0].numpy()
        return out[lag:]
    return render


def copy_synthesis_scores(render: Render, paths: list[Path], sample_rate: int) -> list[tuple[float, float]]:
    """(MCD-DTW dB, log-F0 RMSE cents) between each natural utterance and its rendering, over their
    common length."""
    scores = []
    for path in paths:
        audio = load_audio(path, sample_rate)
        out = render(audio)
        n = min(len(out), len(audio))
        ours, natural = analyse(out[:n]), analyse(audio[:n])  # WORLD analyses in float64 itself
        scores.append((mcd(ours, natural), f0_rmse_cents(ours, natural)))
    return scores


def spread(corpus: str | Path, split: str, n: int) -> list[Path]:
    """`n` utterance paths evenly spaced over the split (every speaker and emotion represented)."""
    utts = scan(corpus, splits=[split])
    return [utts[i].path for i in np.linspace(0, len(utts) - 1, n).round().astype(int)]


def floor_render(spec: SignalSpec, order: int) -> Render:
    """audio (N,) float32 -> its WORLD envelope and pitch targets through SourceFilter alone, (N',)."""
    synth = SourceFilter(order=order)

    @torch.no_grad()
    def render(audio: np.ndarray) -> np.ndarray:
        cepstra = torch.from_numpy(envelope_targets(audio, spec, order))[None]
        pitch = torch.from_numpy(pitch_targets(audio, spec))[None]
        return synth(cepstra, pitch[:, :1], pitch[:, 1:2])[0].numpy()
    return render


def _report(name: str, scores: list, split: str) -> None:
    mcds, f0s = np.array(scores).T
    print(f"{name}: copy-synthesis MCD median {np.median(mcds):.2f} dB (mean {mcds.mean():.2f}, range "
          f"{mcds.min():.2f}-{mcds.max():.2f}), log-F0 RMSE median {np.nanmedian(f0s):.0f} cents, over "
          f"{len(mcds)} {split} utterances")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    p.add_argument("corpus", type=Path)
    p.add_argument("checkpoints", nargs="*", type=Path, metavar="CKPT")
    p.add_argument("--split", default="test", choices=("train", "evaluation", "test"))
    p.add_argument("--n", type=positive_int, default=10, help="utterances (default 10)")
    p.add_argument("--floor", action="store_true", help="also the synthesiser alone on the WORLD targets")
    p.add_argument("--order", type=positive_int, default=128, help="cepstral order of --floor (default 128)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        paths = spread(args.corpus, args.split, args.n)
        if args.floor:
            spec = SignalSpec()
            _report(f"synthesiser floor (order {args.order})",
                    copy_synthesis_scores(floor_render(spec, args.order), paths, spec.sample_rate), args.split)
        for ckpt in args.checkpoints:
            loaded = load_checkpoint(ckpt, "vocoder")
            spec = SignalSpec(**loaded["signal"])
            _report(f"{ckpt} (step {loaded['step']})",
                    copy_synthesis_scores(vocoder_render(loaded, spec), paths, spec.sample_rate), args.split)
    except EVCError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
