"""Run logging: scalars to TensorBoard when it is installed, else to a CSV file;
audio and mel samples to files. Only rank 0 of a distributed run logs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf


class RunLogger:
    """Scalars (tag → value per step), audio samples and mel images under run_dir."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        self._csv = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional: CSV carries the same scalars
            self._csv = open(self.run_dir / "scalars.csv", "a", newline="")
            self._writer = csv.writer(self._csv)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        for tag, value in values.items():
            if self._tb is not None:
                self._tb.add_scalar(prefix + tag, value, step)
            else:
                self._writer.writerow([step, prefix + tag, f"{value:.6g}"])
        if self._csv is not None:
            self._csv.flush()

    def audio(self, step: int, name: str, audio: np.ndarray, sample_rate: int) -> None:
        """audio: (N,) float32 in [-1, 1], written as samples/STEP/NAME.wav."""
        if self.enabled:
            path = self.run_dir / "samples" / f"{step:07d}" / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16")

    def mel(self, step: int, name: str, mel: np.ndarray) -> None:
        """mel: (n_mels, T) log-mel, written as samples/STEP/NAME.npy (and .png with matplotlib)."""
        if not self.enabled:
            return
        path = self.run_dir / "samples" / f"{step:07d}" / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, mel)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.imshow(mel, origin="lower", aspect="auto")
        ax.set_title(name)
        fig.savefig(path.with_suffix(".png"), dpi=80, bbox_inches="tight")
        plt.close(fig)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._csv is not None:
            self._csv.close()
