"""Copy synthesis: an utterance's own features through a model's vocoder alone.

    audio ─► log-mel (engine.features) ─┐
          ─► pitch (engine.pitch, centred: [log-F0, voicing]) ─┴─► vocoder.onnx, block by block ─► audio

It is the floor of the whole conversion chain (a converted utterance cannot come closer
to natural speech than its vocoder renders natural features), and the quality benchmark's
"copy synthesis" row. The pitch is the tracker's centred analysis, as for a registered
reference: the file is analysed offline, so the window may read ahead.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from engine.config import RuntimeConfig
from engine.features import log_mel_offline
from engine.manifest import load_manifest
from engine.pitch import reference_pitch
from engine.runtime import Sessions, StepRunner


class CopySynthesis:
    """A model directory's vocoder graph, ready to render analysed utterances (CPU, one thread).

    ModelError (one line) when the model has no vocoder graph (exported before there was one).
    """

    def __init__(self, model_dir: str | Path):
        self.manifest = load_manifest(model_dir)
        sessions = Sessions(model_dir, self.manifest, RuntimeConfig(providers=("cpu",)), quiet=True,
                            graphs=("vocoder",))
        self.runner = StepRunner(sessions, self.manifest, graph="vocoder")

    def render(self, audio: np.ndarray, pitch: np.ndarray | None = None) -> np.ndarray:
        """audio (N,) float32 at the model's rate -> its copy synthesis (N - N % hop,) float32.

        pitch: (2, N // hop) [natural-log F0 (held), voicing] at the end of each hop, to use
        instead of the tracker's (e.g. the WORLD analysis the vocoder trained on).
        """
        spec = self.manifest.spec
        mel = log_mel_offline(audio, spec)
        pitch = reference_pitch(audio, spec) if pitch is None else np.asarray(pitch, np.float32)
        frames, block, lag = mel.shape[1], spec.block_frames, spec.lookahead_frames
        # Frame k renders hop k - lag, so the pitch goes in lag frames late (unvoiced before),
        # lag more frames are run to flush the last hops, and the first lag hops are dropped;
        # the ragged last block is padded (floor mel, held pitch, unvoiced) and its extra cut.
        pad = -(frames + lag) % block + lag
        mel = np.pad(mel, ((0, 0), (0, pad)), constant_values=np.log(spec.log_floor))
        pitch = np.pad(pitch, ((0, 0), (lag, pad - lag)), mode="edge")
        pitch[1, :lag] = 0.0
        pitch[1, lag + frames:] = 0.0
        self.runner.reset()
        out = [self.runner.run(mel=mel[:, i:i + block], pitch=pitch[:, i:i + block]).copy()
               for i in range(0, frames + pad, block)]
        return np.concatenate(out)[lag * spec.hop:(lag + frames) * spec.hop] if frames else np.zeros(0, np.float32)


def copy_synthesis(model_dir: str | Path, audio: np.ndarray, pitch: np.ndarray | None = None) -> np.ndarray:
    """The copy synthesis of `audio` (N,) float32 by the model in `model_dir`: (N - N % hop,) float32
    (pitch: see CopySynthesis.render). The model's session is made once per directory and export
    (a benchmark calls this for every trial)."""
    manifest = Path(model_dir) / "manifest.json"
    stamp = manifest.stat().st_mtime_ns if manifest.is_file() else 0
    return _loaded(str(Path(model_dir).resolve()), stamp).render(audio, pitch)


@functools.lru_cache(maxsize=4)
def _loaded(model_dir: str, manifest_stamp: int) -> CopySynthesis:
    return CopySynthesis(model_dir)
