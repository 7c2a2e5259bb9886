"""Scoring trials, in worker processes: each trial's systems run and their outputs measured.

A worker holds the fitted evaluators, a speaker embedder, DNSMOS and the systems (set up
once by `init_worker`); `score_task` runs one trial: the systems it is asked for, the
strength sweep where asked, DNSMOS where asked (it costs about a second per utterance,
more than everything else together), and returns plain rows.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from benchmarks import evaluators as ev
from benchmarks.features import SR, analyse, utterance_features
from benchmarks.metrics import f0_rmse_cents, mcd, voicing_agreement
from benchmarks.naturalness import COLUMNS as MOS_COLUMNS
from benchmarks.systems import RENDERS_TARGET
from benchmarks.trials import Trial
from training.data.augment import Degradation, degrade

SCORING_VERSION = 3  # 2: reference rows scored against the target's own strength; 3: voicing agreement
"""Bump when a measurement changes: cached rows are keyed on it."""
SWEEP_STRENGTHS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Task:
    """Trial `index`: run `systems` on it; DNSMOS, the sweep and returning the audio when asked."""

    index: int
    trial: Trial
    systems: tuple[str, ...]
    mos: bool = False
    sweep: bool = False
    keep: bool = False
    degrade: bool = False


@dataclass
class Result:
    index: int
    rows: dict[str, dict]
    sweep: list[dict] = field(default_factory=list)
    audio: dict | None = None
    outputs: dict | None = None


@dataclass
class _Worker:
    evals: object
    gt: dict
    systems: dict
    speaker: object
    dnsmos: object


_WORKER: _Worker | None = None


def init_worker(evals, gt: dict, systems: dict) -> None:
    """Set up this process to score: what it needs is built once, not per trial."""
    from benchmarks.naturalness import Dnsmos

    global _WORKER
    _WORKER = _Worker(evals, gt, systems, ev.speaker_embedder()[0], Dnsmos())


def _load(utt) -> np.ndarray:
    from engine.audio import load_audio

    return load_audio(utt.path, SR)


@dataclass
class _Fixed:
    """What scoring a trial needs besides the converted audio, computed once for every system.

    strength: the intended strength of a conversion (the reference's), and of a system that
    renders the target (the target's own: the floor of the strength columns)."""

    target: object
    source: object
    source_speaker: np.ndarray
    strength: dict[str, float]


def _strength(w: _Worker, utt, audio: np.ndarray) -> float:
    """Ground truth, else the label-free ranker's reading of the natural utterance."""
    if utt.utt_id in w.gt:
        return float(w.gt[utt.utt_id])
    return float(w.evals.read(utterance_features(audio), utt.speaker, utt.emotion)["strength_rank"][0])


def _fixed(w: _Worker, trial: Trial, audio: dict, names) -> _Fixed:
    """The source's analysis and speaker are the clean source's, also where the systems hear it degraded."""
    strength = {"reference": _strength(w, trial.reference, audio["reference"])}
    if any(n in RENDERS_TARGET for n in names):
        strength["target"] = _strength(w, trial.target, audio["target"])
    source = audio.get("clean_source", audio["source"])
    return _Fixed(analyse(audio["target"]), analyse(source), w.speaker.embed(source), strength)


DEGRADATION = Degradation(snr_db=(20.0, 20.0), reverb_p=1.0, clip_p=0.0)
"""`evc bench quality --degrade`: noise at 20 dB SNR and a generated room on every source; the
rest (room size, noise kind, capsule, level) drawn per source sentence."""


def degraded(x: np.ndarray, utt_id: str) -> np.ndarray:
    """x as a microphone in a room records it, the same for a sentence in every run."""
    return degrade(x, SR, np.random.default_rng(zlib.crc32(utt_id.encode())), DEGRADATION)[0]


def measure(w: _Worker, converted: np.ndarray, trial: Trial, fixed: _Fixed, mos: bool, intent: str) -> dict:
    """One converted utterance's metrics against its trial, strength against fixed.strength[intent]
    (DNSMOS columns nan unless mos). Voicing agreement is with what the output is time-aligned
    with: the source for a conversion, the target for a system that renders the target."""
    converted = np.nan_to_num(np.asarray(converted, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    analysis = analyse(converted)
    reading = w.evals.read(utterance_features(converted), trial.source.speaker, trial.emotion)
    row = {"mcd_db": mcd(analysis, fixed.target), "f0_rmse_cents": f0_rmse_cents(analysis, fixed.target),
           "predicted": str(reading["predicted"][0]), "strength_sup": float(reading["strength_sup"][0]),
           "strength_rank": float(reading["strength_rank"][0]), "strength_target": fixed.strength[intent],
           "strength_of": intent, "speaker_cos": ev.cosine(w.speaker.embed(converted), fixed.source_speaker),
           "voicing_agreement": voicing_agreement(analysis, fixed.target if intent == "target" else fixed.source)}
    row.update(w.dnsmos.score(converted) if mos else dict.fromkeys(MOS_COLUMNS, float("nan")))
    return row


def _sweep(w: _Worker, trial: Trial, audio: dict, names) -> list[dict]:
    """Readings of each sweeping system's output at SWEEP_STRENGTHS on this trial's reference."""
    rows = []
    for name in names:
        system = w.systems[name]
        if not hasattr(system, "sweep") or "neutral" not in audio:
            continue
        outputs = system.sweep(audio["source"], audio["reference"], audio["neutral"], SWEEP_STRENGTHS)
        for s, out in zip(SWEEP_STRENGTHS, outputs):
            reading = w.evals.read(utterance_features(out), trial.source.speaker, trial.emotion)
            rows.append({"system": name, "setting": s, "predicted": str(reading["predicted"][0]),
                         "strength_sup": float(reading["strength_sup"][0]),
                         "strength_rank": float(reading["strength_rank"][0])})
    return rows


def score_task(task: Task) -> Result:
    """Run and measure task.systems on task.trial (in a worker set up by init_worker)."""
    w, trial = _WORKER, task.trial
    audio = {k: _load(getattr(trial, k)) for k in ("source", "reference", "target")}
    if task.degrade:
        audio["clean_source"] = audio["source"]
        audio["source"] = degraded(audio["source"], trial.source.utt_id)
    if trial.neutral is not None:
        audio["neutral"] = _load(trial.neutral)
    fixed = _fixed(w, trial, audio, task.systems)
    outputs = {name: w.systems[name](audio["source"], audio["reference"], audio["target"], audio.get("neutral"))
               for name in task.systems}
    rows = {name: measure(w, out, trial, fixed, task.mos, "target" if name in RENDERS_TARGET else "reference")
            for name, out in outputs.items()}
    sweep = _sweep(w, trial, audio, task.systems) if task.sweep else []
    return Result(task.index, rows, sweep, audio if task.keep else None, outputs if task.keep else None)
