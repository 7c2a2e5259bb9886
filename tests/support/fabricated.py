"""A tiny fabricated corpus in ESD's layout, for benchmark tests (no espeak needed).

Each utterance is speech_like audio whose pitch, level and spectral tilt depend on the
emotion and on a ground-truth strength in [0.6, 1] (0 for Neutral), so that the five
emotions are cleanly separable by prosodic statistics and strength is monotonic in
them: an evaluator trained on it is accurate, which tests of the scoring need. The
sentence (position) seeds the waveform, so equal positions are parallel utterances.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from engine.signal import EMOTIONS
from support.audio import speech_like
from training.data.esd import split_of

# emotion: (F0 factor, gain dB, tilt in [-1, 1]) at strength 1
PROFILES = {"Neutral": (1.0, 0.0, 0.0), "Angry": (1.25, 6.0, 0.8), "Happy": (1.45, 2.0, 0.3),
            "Sad": (0.8, -8.0, -0.7), "Surprise": (1.7, 3.0, -0.3)}
SPEAKERS = {"0011": 120.0, "0012": 200.0}


def _tilt(x: np.ndarray, tilt: float) -> np.ndarray:
    """Pre-emphasis (tilt > 0, brighter) or a one-pole low-pass (tilt < 0, darker)."""
    if tilt > 0:
        return lfilter([1.0, -0.85 * tilt], [1.0], x)
    a = 0.85 * -tilt
    return lfilter([1.0 - a], [1.0, -a], x) if tilt < 0 else x


def utterance(base_f0: float, emotion: str, strength: float, position: int) -> np.ndarray:
    """(N,) float32 at 16 kHz: sentence `position` said with `emotion` at `strength`."""
    factor, gain_db, tilt = PROFILES[emotion]
    x = speech_like(1.0 + 0.1 * (position % 4), seed=position, f0=base_f0 * factor ** strength)
    x = _tilt(x.astype(np.float64), tilt * strength)
    x = 0.3 * x / np.abs(x).max() * 10 ** (gain_db * strength / 20)
    return x.astype(np.float32)


def strength_of(speaker: str, emotion: str, position: int) -> float:
    if emotion == EMOTIONS[0]:
        return 0.0
    return float(np.random.default_rng([int(speaker), EMOTIONS.index(emotion), position]).uniform(0.6, 1.0))


def write_corpus(root: Path, sentences: int = 20) -> Path:
    """ROOT/00XX/<Emotion>/<split>/00XX_YYYYYY.wav for 2 speakers, metadata.csv and corpus.json."""
    rows = []
    for speaker, f0 in SPEAKERS.items():
        for label, emotion in enumerate(EMOTIONS):
            for position in range(1, sentences + 1):
                strength = strength_of(speaker, emotion, position)
                utt = f"{speaker}_{label * sentences + position:06d}"
                path = root / speaker / emotion / split_of(position, sentences) / f"{utt}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, utterance(f0, emotion, strength, position), 16000, subtype="PCM_16")
                rows.append({"utt_id": utt, "speaker": speaker, "emotion": emotion, "strength": f"{strength:.4f}"})
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["utt_id", "speaker", "emotion", "strength"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "corpus.json").write_text(json.dumps({"sentences": sentences}))
    return root
