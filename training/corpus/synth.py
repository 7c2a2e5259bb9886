"""`evc corpus synth`: a synthetic emotional speech corpus with exactly ESD's layout and ids.

    OUT/00XX/<Emotion>/{train,evaluation,test}/00XX_YYYYYY.wav   (16 kHz mono PCM_16)
    OUT/metadata.csv   one row per utterance: ids, split, text, ground-truth strength, and the
                       rendering actually used (voice, base pitch, warp, register, breath, pitch/
                       range/rate %, gain dB, tilt, measured RMS dB)
    OUT/corpus.json    the recipe (seed, speakers, sentences, generator, espeak and Festival versions)

Speakers (training.corpus.profiles.CORPUS_SPEAKERS) are espeak-ng voices, which take the
emotion's pitch, range and rate as SSML, then Festival voices recorded from real people,
which render neutrally and get the same offsets through WORLD (training.corpus.world_render),
each with a timbre of its own. `--speakers N` takes the first N.

Ids come in blocks of M (sentences) per emotion, in ESD's emotion order, so the same
position is the same sentence in every emotion and speaker. Every utterance is a pure
function of (seed, speaker, emotion, position): the corpus is identical whatever the
number of processes.
"""

from __future__ import annotations

import csv
import json
import os
import re
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.errors import EVCError
from engine.signal import EMOTIONS
from training.corpus.espeak import Espeak
from training.corpus.festival import Festival
from training.corpus.profiles import (
    CORPUS_SPEAKERS,
    PROFILES,
    SAMPLE_RATE,
    FestivalSpeaker,
    Profile,
    Speaker,
    finish,
    prosody,
    render,
    ssml,
    to_corpus_rate,
)
from training.corpus.sentences import sentences
from training.corpus.world_render import impose
from training.data.esd import split_of
from training.progress import progress as show_progress

VERSION = 3  # 3: Festival voices with WORLD-imposed emotion and timbre after the espeak ones
FIRST_SPEAKER = 11
COLUMNS = ("utt_id", "speaker", "emotion", "split", "position", "sentence_id", "text", "strength", "voice",
           "base_pitch", "warp", "register", "breath", "pitch_pct", "range_pct", "rate_pct", "gain_db", "tilt",
           "rms_db")
_WAV = re.compile(r"00\d\d/[A-Za-z]+/(train|evaluation|test)/00\d\d_\d{6}\.wav")
_ENGINES: dict = {}


def strength_of(seed: int, speaker: int, emotion: int, position: int) -> float:
    """Ground-truth strength: 0 for Neutral, else uniform in [0.3, 1.0], reproducible per utterance."""
    if emotion == 0:
        return 0.0
    return float(np.random.default_rng([seed, speaker, emotion, position]).uniform(0.3, 1.0))


def _engine(kind: str):
    """One synthesiser of each kind per worker process, made on its first task."""
    if kind not in _ENGINES:
        _ENGINES[kind] = Festival() if kind == "festival" else Espeak()
    return _ENGINES[kind]


def render_utterance(speaker: Speaker | FestivalSpeaker, text: str, profile: Profile, strength: float) -> np.ndarray:
    """(N,) float32 at 16 kHz: `speaker` reading `text` with `profile` at `strength`."""
    if isinstance(speaker, FestivalSpeaker):
        raw, rate = _engine("festival").synth(text, speaker.voice)
        x = impose(to_corpus_rate(raw, rate), SAMPLE_RATE, profile, strength, speaker.timbre)
        return finish(x, profile, strength)
    espeak = _engine("espeak")
    raw = espeak.synth(ssml(text, profile, strength), speaker.voice, pitch=speaker.pitch)
    return render(raw, espeak.rate, speaker, profile, strength)


def _voice_columns(speaker: Speaker | FestivalSpeaker) -> dict:
    if isinstance(speaker, FestivalSpeaker):
        t = speaker.timbre
        return {"voice": f"festival:{speaker.voice}", "base_pitch": "", "warp": t.warp, "register": t.register,
                "breath": t.breath}
    return {"voice": speaker.voice, "base_pitch": speaker.pitch, "warp": speaker.warp, "register": 1.0,
            "breath": 0.0}


def _job(task: tuple) -> dict:
    """Render and write one utterance; returns its metadata row."""
    out, seed, spk, emo, pos, m, text = task
    speaker, emotion = CORPUS_SPEAKERS[spk], EMOTIONS[emo]
    profile, strength = PROFILES[emotion], strength_of(seed, spk, emo, pos)
    audio = render_utterance(speaker, text, profile, strength)
    name, split = f"{FIRST_SPEAKER + spk:04d}", split_of(pos, m)
    utt = f"{name}_{emo * m + pos:06d}"
    path = Path(out) / name / emotion / split / f"{utt}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    rms_db = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-12)
    return {"utt_id": utt, "speaker": name, "emotion": emotion, "split": split, "position": pos,
            "sentence_id": pos, "text": text, "strength": round(strength, 6), **_voice_columns(speaker),
            **prosody(profile, strength),
            "gain_db": round(profile.gain_db * strength, 4), "tilt": round(profile.tilt * strength, 4),
            "rms_db": round(float(rms_db), 2)}


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty `out` unless overwrite; then remove a previous corpus's files (and only those)."""
    if out.exists() and not out.is_dir():
        raise EVCError(f"{out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise EVCError(f"{out} is not empty: choose a new directory or pass --overwrite")
    # A previous corpus of another size would leave stale ids that loaders would pick up.
    for path in out.glob("00[0-9][0-9]/*/*/*.wav"):
        if _WAV.fullmatch(path.relative_to(out).as_posix()):
            path.unlink()
    for name in ("metadata.csv", "corpus.json"):
        (out / name).unlink(missing_ok=True)
    for folder in sorted(out.glob("00[0-9][0-9]/**/"), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _check_args(speakers: int, m: int, jobs: int | None) -> int:
    """Validated arguments; returns the number of processes."""
    if not 1 <= speakers <= len(CORPUS_SPEAKERS):
        raise EVCError(f"--speakers: between 1 and {len(CORPUS_SPEAKERS)}, got {speakers}")
    if m < 1:
        raise EVCError(f"--sentences: must be positive, got {m}")
    if jobs is not None and jobs < 1:
        raise EVCError(f"--jobs: must be positive, got {jobs}")
    return jobs or os.cpu_count() or 1


def _write_metadata(out: Path, rows: list[dict], recipe: dict) -> None:
    rows.sort(key=lambda r: r["utt_id"])
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    # Written last: a corpus.json says the corpus is complete.
    (out / "corpus.json").write_text(json.dumps(recipe, indent=2) + "\n")


def _backends(speakers: int) -> dict[str, str]:
    """The versions of the synthesisers the first `speakers` speakers need (EVCError when one is missing)."""
    versions = {"espeak": Espeak().version}
    if any(isinstance(s, FestivalSpeaker) for s in CORPUS_SPEAKERS[:speakers]):
        versions["festival"] = Festival().version
    return versions


def synthesize_corpus(out: str | Path, speakers: int, sentences_per_emotion: int, seed: int = 0,
                      jobs: int | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the corpus into `out` (see the module docstring) and return its path."""
    out, m = Path(out), sentences_per_emotion
    jobs = _check_args(speakers, m, jobs)
    backends = _backends(speakers)  # fails here, once, when a synthesiser is missing
    _prepare_out(out, overwrite)
    texts = sentences(m, seed)
    tasks = [(str(out), seed, s, e, p, m, texts[p - 1])
             for s in range(speakers) for e in range(len(EMOTIONS)) for p in range(1, m + 1)]
    # spawn, not fork: callers (the trainer, tests) may hold threads that fork would copy mid-lock;
    # the single-threaded workers then fork per utterance (see training.corpus.espeak).
    with get_context("spawn").Pool(min(jobs, len(tasks))) as pool:
        rows = list(show_progress(pool.imap_unordered(_job, tasks, chunksize=4), progress,
                                  total=len(tasks), desc="synthesising", unit="utt"))
    recipe = {"generator": "evc-corpus-synth", "version": VERSION, "seed": seed, "speakers": speakers,
              "sentences": m, "emotions": list(EMOTIONS), "sample_rate": SAMPLE_RATE, **backends}
    _write_metadata(out, rows, recipe)
    return out
