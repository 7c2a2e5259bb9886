"""The emotion bank: registered reference utterances, encoded once, stored in one JSON file.

    {"format": "evc-bank/1",
     "entries": {"angry": {"embedding": [...D floats], "category": "Angry",
                           "probabilities": {"Neutral": 0.01, ...}, "strength": 0.83,
                           "duration_s": 3.2, "voiced_s": 2.4, "source": "/abs/ref.wav",
                           "sha256": "...", "registered": "2026-11-02T10:00:00+00:00",
                           "model": "<sha256 of emotion_encoder.onnx>",
                           "voice": [...n_mels + 1 floats], "read_from": "the neutral entry",
                           "prosody": [lf0 mean, lf0 std, level]}}}

An entry registered from several references (`evc register NAME A.wav B.wav ...`) holds
their mean embedding; its "source" lists them, separated by SOURCE_SEPARATOR.

The encoder reads a reference from its speaker's neutral voice (engine.anchor): `voice` is the
anchor of the entry's own audio, and `read_from` says which voice its references were read from:
their own for the entry named 'neutral', else the neutral utterances given with them (--neutral),
else the bank's neutral entry's voice, else the training speakers' average voice. Register the
speaker's neutral voice first (evc register neutral NEUTRAL.wav) and the emotions after it.
`prosody` is the reference's measured pitch and level (engine.prosody): an emotion's move from the
neutral entry's is imposed on the conversion (engine.pipeline.set_emotion).

`model` identifies the emotion encoder that made the embedding: the embedding space
is the encoder's, and the generator was trained against that frozen encoder, so an
entry is valid for every step graph exported with the same encoder (any block size)
and refused for any other.

Every write goes to a temporary file in the bank's directory, is flushed and fsynced,
then renamed over the bank: a crash at any point leaves the old bank or the new one,
never a mix. A bank file that does not parse is reported, never overwritten.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine.anchor import neutral_anchor
from engine.audio import is_silent, load_audio, voiced_seconds
from engine.errors import EVCError
from engine.manifest import Manifest, sha256_file
from engine.prosody import prosody_stats
from engine.reference import Reference, analyse_reference

FORMAT = "evc-bank/1"
MIN_VOICED_S = 1.0
"""A reference needs this much voiced audio for the emotion encoder's pooling to mean anything."""
MAX_STRENGTH = 1.5
"""Largest strength of set_emotion: above 1 extrapolates past the reference (exaggeration)."""
NEUTRAL = "Neutral"
SOURCE_SEPARATOR = " | "
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$", re.IGNORECASE)


def valid_name(name: str) -> str:
    """name in lower case, or EVCError saying what a bank name may be."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise EVCError(f"invalid emotion name {name!r}: use 1-32 letters, digits, '_' or '-', "
                       "starting with a letter or digit")
    return name.lower()


def model_id(manifest: Manifest) -> str:
    """The identity bank entries are made with: the emotion encoder graph's sha256."""
    return manifest.graphs["emotion_encoder"].sha256


@dataclass(frozen=True)
class BankEntry:
    """One registered reference; embedding: (D,) float32."""

    name: str
    embedding: np.ndarray = field(repr=False)
    category: str
    probabilities: dict
    strength: float
    duration_s: float
    voiced_s: float
    source: str
    sha256: str
    registered: str
    model: str
    voice: np.ndarray | None = field(default=None, repr=False)
    read_from: str = ""
    prosody: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        data = asdict(self)
        del data["name"]
        data["embedding"] = [float(v) for v in self.embedding]
        data["voice"] = None if self.voice is None else [float(v) for v in self.voice]
        data["prosody"] = None if self.prosody is None else [float(v) for v in self.prosody]
        return data

    @classmethod
    def from_json(cls, name: str, data: dict) -> BankEntry:
        """Entry from its JSON mapping; KeyError/TypeError/ValueError when malformed."""
        embedding = np.asarray(data["embedding"], np.float32)
        if embedding.ndim != 1 or not embedding.size or not np.isfinite(embedding).all():
            raise ValueError("embedding must be a non-empty list of finite numbers")
        return cls(name=name, embedding=embedding, category=str(data["category"]),
                   probabilities={str(k): float(v) for k, v in data["probabilities"].items()},
                   strength=float(data["strength"]), duration_s=float(data["duration_s"]),
                   voiced_s=float(data["voiced_s"]), source=str(data["source"]),
                   sha256=str(data["sha256"]), registered=str(data["registered"]),
                   model=str(data["model"]), voice=_vector(data.get("voice"), "voice"),
                   read_from=str(data.get("read_from", "")), prosody=_vector(data.get("prosody"), "prosody", 3))


def _vector(data, what: str, size: int | None = None) -> np.ndarray | None:
    """An entry's stored voice anchor or prosody statistics, None when absent (banks written before them)."""
    if data is None:
        return None
    why = f"{what} must be a list of {size or 'some'} finite numbers"
    try:
        vector = np.asarray(data, np.float32)
    except (TypeError, ValueError):
        raise ValueError(why) from None
    if vector.ndim != 1 or not np.isfinite(vector).all() or (size is not None and vector.size != size):
        raise ValueError(why)
    return vector


def check_entry(entry: BankEntry, manifest: Manifest) -> None:
    """EVCError when entry was made by another model's emotion encoder or has another dimension."""
    if entry.model != model_id(manifest):
        raise EVCError(f"emotion '{entry.name}' was registered with another model's emotion encoder: "
                       f"register it again (evc register {entry.name} REF.wav --overwrite)")
    if entry.embedding.shape != (manifest.embedding_dim,):
        raise EVCError(f"emotion '{entry.name}' has {entry.embedding.size} dimensions, the model "
                       f"expects {manifest.embedding_dim}: register it again")


@dataclass(frozen=True)
class Encoding:
    """What the emotion encoder says about a whole utterance; embedding (D,), probabilities by name."""

    embedding: np.ndarray
    probabilities: dict
    strength: float

    @property
    def category(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)


class EmotionEncoder:
    """emotion_encoder.onnx of a model: log-mel (1, n_mels, T), pitch (1, 2, T), anchor (1, n_mels + 1)
    -> embedding, probs, strength, cue. A model exported before anchors takes no anchor."""

    def __init__(self, sessions, manifest: Manifest):
        self.session = sessions["emotion_encoder"]
        self.manifest = manifest
        self.model = model_id(manifest)

    def analyse(self, audio: np.ndarray) -> Reference:
        """What this encoder reads of a whole utterance (N,) float32 at the model's rate."""
        return analyse_reference(audio, self.manifest.spec)

    def voice(self, ref: Reference) -> np.ndarray | None:
        """(n_mels + 1,) the anchor of an analysed neutral utterance (engine.anchor); None when it has
        no voiced frame or the model takes no anchor."""
        if self.manifest.anchor_centre is None:
            return None
        return neutral_anchor([ref.mel], [ref.pitch])

    def encode(self, ref: Reference, anchor: np.ndarray | None = None) -> Encoding:
        """Encode an analysed utterance, offline (non-causal), read from the speaker's neutral voice
        `anchor` (n_mels + 1,) (None: the training speakers' average)."""
        feeds = {"mel": ref.mel[None], "pitch": ref.pitch[None]}
        centre = self.manifest.anchor_centre
        if centre is not None:
            feeds["anchor"] = np.asarray(centre if anchor is None else anchor, np.float32).reshape(1, -1)
        embedding, probs, strength = self.session.run(["embedding", "probs", "strength"], feeds)
        embedding = np.asarray(embedding, np.float32).reshape(-1)
        if not np.isfinite(embedding).all():
            raise EVCError("the emotion encoder returned non-finite values for this reference")
        names = self.manifest.emotions
        probabilities = {n: float(p) for n, p in zip(names, np.asarray(probs).reshape(-1))}
        return Encoding(embedding, probabilities, float(np.asarray(strength).reshape(-1)[0]))


class EmotionBank:
    """The bank file at `path`: read on every call, written atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def list(self) -> list[BankEntry]:
        """All entries, sorted by name; [] when the bank file does not exist yet."""
        entries = self._read()
        return [entries[n] for n in sorted(entries)]

    def get(self, name: str) -> BankEntry:
        """The entry `name` (case-insensitive); EVCError naming close matches when missing."""
        entries = self._read()
        key = name.lower() if isinstance(name, str) else name
        if key not in entries:
            raise EVCError(self._missing(name, entries))
        return entries[key]

    def neutral(self) -> BankEntry:
        """The entry strengths are measured from: the one named 'neutral', else the entry the
        encoder most confidently calls Neutral; EVCError when there is none."""
        entries = self._read()
        if "neutral" in entries:
            return entries["neutral"]
        candidates = [e for e in entries.values() if e.category == NEUTRAL]
        if not candidates:
            raise EVCError(f"a strength needs a neutral reference and {self.path} has none: register one "
                           "(evc register neutral NEUTRAL.wav)")
        return max(candidates, key=lambda e: (e.probabilities.get(NEUTRAL, 0.0), e.name))

    def register(self, name: str, wav_paths: str | Path | Sequence[str | Path], encoder: EmotionEncoder,
                 overwrite: bool = False, voices: Sequence[tuple[np.ndarray | None, str]] | None = None) -> BankEntry:
        """Encode the whole reference (or each of several references) once and store it under `name`.

        Several references are stored as their mean embedding (probabilities and strength averaged,
        durations summed): a reference carries some of its speaker along with its emotion, and the
        mean over several speakers' references keeps the emotion. Each reference is read from a
        neutral voice: voices[i] (anchor, what it is) when given, else the module docstring's rule.
        Refuses a silent reference, one with less than MIN_VOICED_S of voiced audio, and an existing
        name unless overwrite.
        """
        name = valid_name(name)
        entries = self._read()
        if name in entries and not overwrite:
            raise EVCError(f"'{name}' is already in the bank {self.path}: pass --overwrite to replace it")
        paths = [wav_paths] if isinstance(wav_paths, (str, Path)) else list(wav_paths)
        if not paths:
            raise EVCError(f"'{name}': no reference given")
        default = None if name == NEUTRAL.lower() else self._neutral_voice(entries)
        voices = list(voices) if voices is not None else [default] * len(paths)
        entry = _mean_entry([_encode_reference(name, Path(p), encoder, v) for p, v in zip(paths, voices, strict=True)])
        entries[name] = entry
        self._write(entries)
        return entry

    @staticmethod
    def _neutral_voice(entries: dict[str, BankEntry]) -> tuple[np.ndarray, str] | None:
        """(voice, description) of the entry named 'neutral', None without one (or without a voice)."""
        entry = entries.get(NEUTRAL.lower())
        if entry is None or entry.voice is None:
            return None
        return entry.voice, "the bank's neutral entry"

    def remove(self, name: str) -> BankEntry:
        """Delete `name` from the bank; returns what was removed."""
        entries = self._read()
        entry = self.get(name)
        del entries[entry.name]
        self._write(entries)
        return entry

    def _missing(self, name: str, entries: dict) -> str:
        if not entries:
            return f"unknown emotion '{name}': the bank {self.path} is empty (register one: evc register NAME REF.wav)"
        close = difflib.get_close_matches(str(name).lower(), list(entries), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"the bank has {', '.join(sorted(entries))}"
        return f"unknown emotion '{name}': {hint}"

    def _corrupt(self, why: str) -> EVCError:
        return EVCError(f"emotion bank {self.path} is corrupt ({why}): repair it, or move it away and "
                        "register the references again")

    def _read(self) -> dict[str, BankEntry]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self._corrupt(str(e).splitlines()[0]) from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("entries"), dict):
            raise self._corrupt(f"not an {FORMAT} file")
        entries = {}
        for name, data in raw["entries"].items():
            try:
                entries[valid_name(name)] = BankEntry.from_json(valid_name(name), data)
            except (EVCError, KeyError, TypeError, ValueError, AttributeError) as e:
                raise self._corrupt(f"entry {name!r}: {type(e).__name__} {e}") from None
        return entries

    def _write(self, entries: dict[str, BankEntry]) -> None:
        """Replace the bank with `entries`: temp file, flush, fsync, rename, fsync the directory."""
        data = {"format": FORMAT, "entries": {n: entries[n].to_json() for n in sorted(entries)}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mean_entry(entries: list[BankEntry]) -> BankEntry:
    """One entry standing for several of one name: mean embedding, probabilities and strength, summed
    durations; sources joined by SOURCE_SEPARATOR and sha256 the digest of their digests, in order."""
    if len(entries) == 1:
        return entries[0]
    probabilities = {k: float(np.mean([e.probabilities[k] for e in entries])) for k in entries[0].probabilities}
    return replace(
        entries[0], embedding=np.mean([e.embedding for e in entries], axis=0).astype(np.float32),
        category=max(probabilities, key=probabilities.get), probabilities=probabilities,
        strength=float(np.mean([e.strength for e in entries])),
        duration_s=round(sum(e.duration_s for e in entries), 3), voiced_s=round(sum(e.voiced_s for e in entries), 3),
        source=SOURCE_SEPARATOR.join(e.source for e in entries),
        voice=_mean_known([e.voice for e in entries]), prosody=_mean_known([e.prosody for e in entries]),
        read_from="; ".join(sorted({e.read_from for e in entries})),
        sha256=hashlib.sha256("".join(e.sha256 for e in entries).encode()).hexdigest())


def _mean_known(vectors: list[np.ndarray | None]) -> np.ndarray | None:
    known = [v for v in vectors if v is not None]
    return np.mean(known, axis=0).astype(np.float32) if known else None


def _encode_reference(name: str, path: Path, encoder: EmotionEncoder,
                      voice: tuple[np.ndarray | None, str] | None) -> BankEntry:
    """Load, check and encode the reference at path into an entry named `name`, read from `voice`
    (anchor, what it is); None: from its own voice for the neutral entry, else the average voice."""
    sr = encoder.manifest.spec.sample_rate
    audio = load_audio(path, sr)
    if is_silent(audio):
        raise EVCError(f"reference {path} is silent: record the emotion you want to register")
    voiced = voiced_seconds(audio, sr)
    if voiced < MIN_VOICED_S:
        raise EVCError(f"reference {path} has {voiced:.2f} s of voiced audio, at least {MIN_VOICED_S:g} s "
                       "is needed: use a longer utterance")
    ref = encoder.analyse(audio)
    own = encoder.voice(ref)
    anchor, read_from = voice or ((own, "its own voice") if name == NEUTRAL.lower()
                                  else (None, "the training speakers' average voice"))
    if encoder.manifest.anchor_centre is None:
        anchor, read_from = None, "itself (this model's encoder takes no neutral voice)"
    enc = encoder.encode(ref, anchor)
    return BankEntry(
        name=name, embedding=enc.embedding, category=enc.category, probabilities=enc.probabilities,
        strength=enc.strength, duration_s=round(audio.size / sr, 3), voiced_s=round(voiced, 3),
        source=str(path.resolve()), sha256=sha256_file(path),
        registered=datetime.now(timezone.utc).isoformat(timespec="seconds"), model=encoder.model,
        voice=own, read_from=read_from, prosody=prosody_stats(ref))

