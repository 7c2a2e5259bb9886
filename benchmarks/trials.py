"""What the quality benchmark converts: Neutral -> {Angry, Happy, Sad, Surprise} on a parallel corpus.

For each Neutral source sentence of the split and each target emotion:

    source     the Neutral utterance                          (converted)
    reference  another sentence, target emotion, same speaker  (what the model is given)
    target     the same sentence as the source, target emotion (scoring only)
    neutral    the reference's sentence said Neutral           (the speaker's neutral voice: the model
                                                               reads the reference from it; origin of
                                                               the strength sweep)

and which speakers the model trained on, read from its manifest, never guessed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from engine.signal import EMOTIONS

SOURCE_EMOTION = EMOTIONS[0]
TARGET_EMOTIONS = EMOTIONS[1:]
SEEN, UNSEEN, UNKNOWN = "seen", "unseen", "unknown"
"""Speaker groups: trained on by the model, held out of its training, no record of either."""


@dataclass(frozen=True)
class Trial:
    """One conversion to score; the utterances are training.data.esd.Utterance (neutral may be None)."""

    emotion: str
    source: object
    reference: object
    target: object
    neutral: object = None

    @property
    def paths(self) -> list[Path]:
        return [u.path for u in (self.source, self.reference, self.target, self.neutral) if u is not None]


def _reference(by_key: dict, source, emotion: str, split: str):
    """Another sentence of `emotion` by the source's speaker: the next position of the same
    split (cyclically), else of any split; None when the speaker has no other sentence."""
    same = sorted(p for (s, e, p), u in by_key.items() if s == source.speaker and e == emotion and p != source.position)
    in_split = [p for p in same if by_key[(source.speaker, emotion, p)].split == split]
    pool = in_split or same
    if not pool:
        return None
    later = [p for p in pool if p > source.position]
    return by_key[(source.speaker, emotion, (later or pool)[0])]


def make_trials(utts: list, split: str, limit: int | None = None) -> list[Trial]:
    """Trials for every Neutral source of `split` (at most `limit` per speaker) with a parallel target."""
    by_key = {(u.speaker, u.emotion, u.position): u for u in utts}
    sources = [u for u in utts if u.emotion == SOURCE_EMOTION and u.split == split]
    if limit:
        sources = [u for s in sorted({u.speaker for u in sources}) for u in
                   [v for v in sources if v.speaker == s][:limit]]
    trials = []
    for src in sources:
        for emotion in TARGET_EMOTIONS:
            target = by_key.get((src.speaker, emotion, src.position))
            reference = _reference(by_key, src, emotion, split)
            if target is not None and reference is not None:
                neutral = by_key.get((src.speaker, SOURCE_EMOTION, reference.position))
                trials.append(Trial(emotion, src, reference, target, neutral))
    return trials


def first_per_speaker(trials: list[Trial], n: int) -> list[int]:
    """Indices of the trials of each speaker's first n source sentences (all emotions of them)."""
    seen: dict[str, list] = {}
    keep = []
    for i, t in enumerate(trials):
        sentences = seen.setdefault(t.source.speaker, [])
        if t.source.position not in sentences and len(sentences) < n:
            sentences.append(t.source.position)
        if t.source.position in sentences:
            keep.append(i)
    return keep


def training_speakers(model_dir: str | Path | None) -> tuple[str, ...] | None:
    """The speakers a model trained on, from manifest.json's training.speakers; None when the
    model (or its manifest) does not say."""
    from engine.errors import EVCError
    from engine.manifest import load_manifest

    if model_dir is None:
        return None
    try:
        training = load_manifest(model_dir, verify=False).raw.get("training")
    except EVCError:
        return None
    speakers = training.get("speakers") if isinstance(training, dict) else None
    if not isinstance(speakers, list) or not speakers:
        return None
    return tuple(f"{int(s):04d}" if str(s).isdigit() else str(s) for s in speakers)


def voice_families(root: Path) -> dict[str, str]:
    """speaker -> 'festival' or 'espeak', from a synthetic corpus's metadata.csv (its voice column);
    {} for a corpus without one (ESD)."""
    path = Path(root) / "metadata.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        if "voice" not in (rows.fieldnames or ()):
            return {}
        return {r["speaker"]: "festival" if r["voice"].startswith("festival:") else "espeak" for r in rows}


def speaker_group(speaker: str, trained: tuple[str, ...] | None) -> str:
    if trained is None:
        return UNKNOWN
    return SEEN if speaker in trained else UNSEEN
