"""A model's sample inputs converted into each emotion: spectrograms to look at, and their numbers.

    python -m benchmarks.samples [MODEL_DIR] [--out DIR]

Converts every wav in MODEL_DIR/samples (default: engine.yaml's model) with the bank's full-strength
emotions through the streaming pipeline, writes each output, a PNG per sample (log-mel of the source
and of each conversion, their DIO F0 tracks) and prints per output: level of active speech (dBFS),
voiced fraction, median F0 and the F0 range (5th-95th percentile, semitones), the numbers a
spectrogram shows by eye.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from benchmarks.features import f0_track
from benchmarks.plots import samples_figure
from engine.audio import load_audio, save_audio
from engine.bank import EmotionBank
from engine.cli_files import convert_array
from engine.config import load_config
from engine.pipeline import StreamingConverter
from engine.signal import EMOTIONS
from training.data.augment import active_power

EMOTION_NAMES = tuple(e.lower() for e in EMOTIONS[1:])


def describe(x: np.ndarray, sr: int) -> dict:
    """Level of active speech (training.data.augment.active_power), voiced fraction, median F0 (Hz)
    and F0 range (5th-95th percentile, semitones) of x (N,)."""
    f0 = f0_track(x, sr)
    voiced = f0[f0 > 0]
    spread = 12 * np.log2(np.percentile(voiced, 95) / np.percentile(voiced, 5)) if voiced.size > 10 else np.nan
    return {"level_db": float(10 * np.log10(active_power(x, sr) + 1e-12)), "voiced": float(np.mean(f0 > 0)),
            "f0_hz": float(np.median(voiced)) if voiced.size else np.nan, "range_st": float(spread)}


def convert_samples(model_dir: Path | None, out: Path, echo=print) -> list[Path]:
    """Convert, write and draw every sample of the model; returns the PNGs."""
    cfg = load_config()
    if model_dir is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dir=str(model_dir.resolve())))
    converter = StreamingConverter(cfg, bank=EmotionBank(cfg.bank_path), quiet=True)
    spec, pngs = converter.spec, []
    echo(f"{'sample':32} {'output':9} {'level dB':>8} {'voiced':>6} {'F0 Hz':>6} {'range st':>8}")
    for path in sorted((cfg.model_dir / "samples").glob("*.wav")):
        signals = {"source": load_audio(path, spec.sample_rate)}
        for emotion in EMOTION_NAMES:
            converter.set_emotion(emotion, crossfade_blocks=0)
            converter.reset()
            signals[emotion] = convert_array(converter, signals["source"]).copy()
            save_audio(out / f"{path.stem}_{emotion}.wav", signals[emotion])
        for label, x in signals.items():
            d = describe(x, spec.sample_rate)
            echo(f"{path.stem:32} {label:9} {d['level_db']:8.1f} {d['voiced']:6.2f} {d['f0_hz']:6.0f} "
                 f"{d['range_st']:8.1f}")
        title = f"{path.name} through {cfg.model_dir.name}"
        pngs.append(samples_figure(signals, title, out / f"{path.stem}.png", spec))
    return pngs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?", type=Path, help="exported model directory (default: engine.yaml's)")
    p.add_argument("--out", type=Path, default=Path("bench-out/samples"))
    args = p.parse_args()
    for png in convert_samples(args.model_dir, args.out):
        print(f"wrote {png}")


if __name__ == "__main__":
    main()
