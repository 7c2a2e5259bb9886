"""Index of an ESD-style corpus: which wav is which speaker, emotion, split and sentence.

Layout (ESD, and the synthetic corpus which copies it)::

    ROOT/00XX/<Emotion>/{train,evaluation,test}/00XX_YYYYYY.wav
    ROOT/00XX/<Emotion>/00XX_YYYYYY.wav          (older ESD copies: no split folders)

Utterance ids come in blocks of M per emotion, in the order of engine.signal.EMOTIONS;
the position of an utterance in its block (1..M) names the sentence, so the same
position under two emotions of one speaker is a parallel pair. ESD has M = 350.

Pure python + numpy: no torch, so benchmarks and tools can index a corpus cheaply.
Transcripts (00XX.txt, mixed encodings) are never opened: the method is text-free.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from engine.errors import EVCError
from engine.signal import EMOTIONS

ESD_SENTENCES = 350
"""Block size M of the real ESD corpus."""

_ESD_EVALUATION = 20
_ESD_TEST = 30
SPLITS: tuple[str, ...] = ("train", "evaluation", "test")


def _round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def split_sizes(m: int) -> tuple[int, int]:
    """(evaluation, test) positions in a block of m: ESD's 20 and 30 scaled to m.

    Exactly (20, 30) at m = 350; each at least 1 when m >= 3 so that a tiny synthetic
    corpus still has every split; (0, 0) below that (everything is train).
    """
    if m < 1:
        raise ValueError(f"block size m must be >= 1, got {m}")
    n_eval = _round_half_up(_ESD_EVALUATION * m, ESD_SENTENCES)
    n_test = _round_half_up(_ESD_TEST * m, ESD_SENTENCES)
    if m >= 3:
        n_eval, n_test = max(n_eval, 1), max(n_test, 1)
    return n_eval, n_test


def split_of(position: int, m: int = ESD_SENTENCES) -> str:
    """Split of the sentence at `position` (1..m) in a block of m, as ESD splits.

    ESD (m = 350): 1-20 evaluation, 21-50 test, 51-350 train. Other m: the same
    proportions (see split_sizes). The synthetic corpus generator uses this function,
    so a corpus and its index always agree.
    """
    if not 1 <= position <= m:
        raise ValueError(f"position must be in 1..{m}, got {position}")
    n_eval, n_test = split_sizes(m)
    if position <= n_eval:
        return "evaluation"
    if position <= n_eval + n_test:
        return "test"
    return "train"


ESD_ENGLISH_SPEAKERS: tuple[str, ...] = tuple(f"{n:04d}" for n in range(11, 21))
"""ESD's English speakers; ESD also ships Mandarin speakers 0001-0010."""


@dataclass(frozen=True)
class Utterance:
    """One wav of the corpus.

    speaker: "00XX"; emotion: a name of EMOTIONS, label its index; split: one of SPLITS;
    utt_id: the file stem "00XX_YYYYYY" (unique in the corpus, the key of strengths());
    position: 1..M, the sentence: equal positions of one speaker are parallel.
    """

    path: Path
    speaker: str
    emotion: str
    label: int
    split: str
    utt_id: str
    position: int


_STEM = re.compile(r"^(\d{4})_(\d{6})$")
_EMOTION_OF = {e.lower(): e for e in EMOTIONS}
_LAYOUT = "ROOT/00XX/<Emotion>/[train|evaluation|test/]00XX_YYYYYY.wav"


@dataclass(frozen=True)
class _Entry:
    """A wav whose path fits the layout, before its position is known."""

    path: Path
    speaker: str
    emotion: str
    folder_split: Optional[str]
    number: int


def _entry(root: Path, path: Path) -> Optional[_Entry]:
    """The layout fields of path, or None for a file that is not an ESD-style wav."""
    parts = path.relative_to(root).parts
    if len(parts) not in (3, 4) or path.suffix.lower() != ".wav":
        return None
    match = _STEM.match(path.stem)
    emotion = _EMOTION_OF.get(parts[1].lower())
    split = parts[2] if len(parts) == 4 else None
    if match is None or emotion is None or match.group(1) != parts[0] or split not in (None, *SPLITS):
        return None
    return _Entry(path, parts[0], emotion, split, int(match.group(2)))


def _entries(root: Path) -> list[_Entry]:
    """Every ESD-style wav under root (two or three folder levels deep); others ignored."""
    paths = [*root.glob("*/*/*"), *root.glob("*/*/*/*")]
    return [e for e in (_entry(root, p) for p in paths if p.is_file()) if e is not None]


def _block_size(root: Path, entries: list[_Entry]) -> int:
    """M: corpus.json's "sentences", else max id / 5 when the ids fill 5 blocks, else 350."""
    meta = root / "corpus.json"
    if meta.is_file():
        try:
            m = json.loads(meta.read_text(encoding="utf-8"))["sentences"]
        except (ValueError, KeyError, TypeError) as e:
            raise EVCError(f"{meta}: needs an integer \"sentences\" ({type(e).__name__}: {e})") from None
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise EVCError(f"{meta}: \"sentences\" must be a positive integer, got {m!r}")
        return m
    numbers = {e.number for e in entries}
    top = max(numbers)
    # Only a complete corpus (every id 1..5M present) reveals M; a partial copy is assumed ESD.
    if top % len(EMOTIONS) == 0 and numbers == set(range(1, top + 1)):
        return top // len(EMOTIONS)
    return ESD_SENTENCES


def block_size(root: str | Path) -> int:
    """Sentences per emotion block (M) of the corpus at root: 350 for ESD."""
    root = _checked_root(root)
    return _block_size(root, _nonempty_entries(root))


def _checked_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise EVCError(f"corpus root not found or not a directory: {root}")
    return root


def _nonempty_entries(root: Path) -> list[_Entry]:
    entries = _entries(root)
    if not entries:
        raise EVCError(f"no ESD-style wav under {root} (expected {_LAYOUT})")
    return entries


def _utterance(entry: _Entry, m: int) -> Utterance:
    """entry placed in its block; EVCError when its id is outside its emotion's block."""
    label = EMOTIONS.index(entry.emotion)
    block, position = divmod(entry.number - 1, m)
    if block != label:
        raise EVCError(
            f"{entry.path}: id {entry.number} is not in the {entry.emotion} block "
            f"{label * m + 1}-{(label + 1) * m} (M={m}; write ROOT/corpus.json {{\"sentences\": M}} if M is not {m})")
    position += 1
    split = entry.folder_split or split_of(position, m)
    return Utterance(entry.path, entry.speaker, entry.emotion, label, split, entry.path.stem, position)


def _speaker_names(speakers: Iterable[str | int]) -> set[str]:
    """Speakers as "00XX": 11, "11" and "0011" all name the same one."""
    return {f"{int(s):04d}" if str(s).isdigit() else str(s) for s in speakers}


def _emotion_names(emotions: Iterable[str]) -> set[str]:
    names = set()
    for e in emotions:
        if e.lower() not in _EMOTION_OF:
            raise EVCError(f"unknown emotion {e!r} (expected one of {', '.join(EMOTIONS)})")
        names.add(_EMOTION_OF[e.lower()])
    return names


def _split_names(splits: Iterable[str]) -> set[str]:
    names = set(splits)
    unknown = sorted(names - set(SPLITS))
    if unknown:
        raise EVCError(f"unknown split {unknown[0]!r} (expected one of {', '.join(SPLITS)})")
    return names


def scan(root: str | Path, speakers: Optional[Iterable[str | int]] = None,
         emotions: Optional[Iterable[str]] = None, splits: Optional[Iterable[str]] = None) -> list[Utterance]:
    """Utterances under root, sorted by (speaker, utt_id); None keeps all of a field.

    M is taken from the whole corpus before filtering, so a filter never changes a
    position or a split. EVCError when root is missing or holds no ESD-style wav.
    """
    root = _checked_root(root)
    entries = _nonempty_entries(root)
    m = _block_size(root, entries)
    keep_speakers = _speaker_names(speakers) if speakers is not None else None
    keep_emotions = _emotion_names(emotions) if emotions is not None else None
    keep_splits = _split_names(splits) if splits is not None else None
    utts = [_utterance(e, m) for e in entries]
    utts = [u for u in utts
            if (keep_speakers is None or u.speaker in keep_speakers)
            and (keep_emotions is None or u.emotion in keep_emotions)
            and (keep_splits is None or u.split in keep_splits)]
    return sorted(utts, key=lambda u: (u.speaker, u.utt_id, str(u.path)))


def parallel(utts: Iterable[Utterance], source_emotion: str,
             target_emotion: str) -> list[tuple[Utterance, Utterance]]:
    """(source, target) pairs: same speaker, same position (sentence), the two emotions.

    Sources without a target in utts are left out; pairs come in the sources' order.
    """
    (source,), (target,) = _emotion_names([source_emotion]), _emotion_names([target_emotion])
    if source == target:
        raise EVCError(f"parallel pairs need two different emotions, got {source} twice")
    utts = list(utts)
    targets = {(u.speaker, u.position): u for u in utts if u.emotion == target}
    return [(u, targets[(u.speaker, u.position)]) for u in utts
            if u.emotion == source and (u.speaker, u.position) in targets]


def strengths(root: str | Path) -> dict[str, float]:
    """Ground-truth emotion strength by utt_id from ROOT/metadata.csv; {} without one.

    Only the synthetic corpus has such labels (ESD has none); they are for evaluation,
    never for training.
    """
    path = Path(root).expanduser() / "metadata.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"utt_id", "strength"} - set(reader.fieldnames or ())
        if missing:
            raise EVCError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return {row["utt_id"].strip(): _strength(path, reader.line_num, row["strength"]) for row in reader}


def _strength(path: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise EVCError(f"{path}:{line}: strength must be a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise EVCError(f"{path}:{line}: strength must be in [0, 1], got {value}")
    return value
