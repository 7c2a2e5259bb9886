"""`evc corpus synth`: a synthetic emotional speech corpus with exactly ESD's layout and ids.

    OUT/00XX/<Emotion>/{train,evaluation,test}/00XX_YYYYYY.wav   (16 kHz mono PCM_16)
    OUT/metadata.csv   one row per utterance, with the ground-truth strength
    OUT/corpus.json    the recipe (seed, speakers, sentences, generator version)

Ids come in blocks of M (sentences) per emotion, in ESD's emotion order, so the same
position is the same sentence in every emotion and speaker. Every utterance is a pure
function of (seed, speaker, emotion, position): the corpus is identical whatever the
number of processes.
"""

from __future__ import annotations

import csv
import json
import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.errors import EVCError
from engine.signal import EMOTIONS
from training.corpus.profiles import PROFILES, SAMPLE_RATE, SPEAKERS, render, ssml
from training.corpus.sentences import sentences
from training.data.esd import split_of
from training.progress import progress as show_progress

VERSION = 1
FIRST_SPEAKER = 11
COLUMNS = ("utt_id", "speaker", "emotion", "split", "position", "sentence_id", "text", "strength", "voice",
           "pitch_pct", "range_pct", "rate_pct", "gain_db", "tilt")
_ENGINE = None


def strength_of(seed: int, speaker: int, emotion: int, position: int) -> float:
    """Ground-truth strength: 0 for Neutral, else uniform in [0.3, 1.0], reproducible per utterance."""
    if emotion == 0:
        return 0.0
    return float(np.random.default_rng([seed, speaker, emotion, position]).uniform(0.3, 1.0))


def _job(task: tuple) -> dict:
    """Render and write one utterance; returns its metadata row."""
    global _ENGINE
    from training.corpus.espeak import Espeak

    _ENGINE = _ENGINE or Espeak()
    out, seed, spk, emo, pos, m, text = task
    speaker, emotion = SPEAKERS[spk], EMOTIONS[emo]
    profile, strength = PROFILES[emotion], strength_of(seed, spk, emo, pos)
    raw = _ENGINE.synth(ssml(text, profile, strength), speaker.voice, pitch=speaker.pitch)
    audio = render(raw, _ENGINE.rate, speaker, profile, strength)
    name, split = f"{FIRST_SPEAKER + spk:04d}", split_of(pos, m)
    utt = f"{name}_{emo * m + pos:06d}"
    path = Path(out) / name / emotion / split / f"{utt}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return {"utt_id": utt, "speaker": name, "emotion": emotion, "split": split, "position": pos,
            "sentence_id": pos, "text": text, "strength": round(strength, 6), "voice": speaker.voice,
            "pitch_pct": profile.pitch * strength, "range_pct": profile.range * strength,
            "rate_pct": profile.rate * strength, "gain_db": profile.gain_db * strength,
            "tilt": profile.tilt * strength}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EVCError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise EVCError(f"{out} is not empty: choose a new directory or pass --overwrite")


def synthesize_corpus(out: str | Path, speakers: int, sentences_per_emotion: int, seed: int = 0,
                      jobs: int | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the corpus into `out` (see the module docstring) and return its path."""
    out, m = Path(out), sentences_per_emotion
    if not 1 <= speakers <= len(SPEAKERS):
        raise EVCError(f"--speakers: between 1 and {len(SPEAKERS)}, got {speakers}")
    if m < 1:
        raise EVCError(f"--sentences: must be positive, got {m}")
    _check_out(out, overwrite)
    texts = sentences(m, seed)
    tasks = [(str(out), seed, s, e, p, m, texts[p - 1])
             for s in range(speakers) for e in range(len(EMOTIONS)) for p in range(1, m + 1)]
    jobs = jobs or os.cpu_count() or 1
    with get_context("spawn").Pool(jobs) as pool:
        rows = list(show_progress(pool.imap_unordered(_job, tasks, chunksize=8), progress,
                                  total=len(tasks), desc="synthesising", unit="utt"))
    rows.sort(key=lambda r: r["utt_id"])
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    recipe = {"generator": "evc-corpus-synth", "version": VERSION, "seed": seed, "speakers": speakers,
              "sentences": m, "emotions": list(EMOTIONS), "sample_rate": SAMPLE_RATE}
    (out / "corpus.json").write_text(json.dumps(recipe, indent=2))
    return out
