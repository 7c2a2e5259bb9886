"""`evc bench quality`: Neutral -> {Angry, Happy, Sad, Surprise} on a parallel corpus.

For each Neutral source sentence of the split and each target emotion:

    source     the Neutral utterance                       (converted)
    reference  another sentence, target emotion, same speaker  (what the model is given)
    target     the same sentence, target emotion           (scoring only)

Every system converts (source, reference): the model through the engine's streaming
pipeline (reference encoded by its emotion encoder, engine.bank.EmotionEncoder; file
conversion engine.cli_files.convert_array), and the baselines of benchmarks.baselines.
Metrics: MCD-DTW and log-F0 RMSE against the target (benchmarks.metrics), emotion
accuracy and strength error by evaluators trained here on the natural train split
(benchmarks.evaluators), speaker similarity to the source.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks import evaluators as ev
from benchmarks.baselines import prosody_transplant, zero_effort
from benchmarks.features import SR, analyse, utterance_features
from benchmarks.metrics import f0_rmse_cents, mcd
from benchmarks.report import machine, machine_line, markdown_table, write_json
from engine.errors import EVCError
from engine.signal import EMOTIONS

SOURCE_EMOTION = EMOTIONS[0]
TARGET_EMOTIONS = EMOTIONS[1:]
MIN_EVALUATOR_ACCURACY = 0.9
System = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(source, reference, target) audio (N,) float32 -> converted (N',) float32. Real systems
never look at the target; a test's perfect stand-in returns it."""
BASELINES: dict[str, System] = {
    "zero effort": lambda source, reference, target: zero_effort(source, reference),
    "DSP prosody transplant": lambda source, reference, target: prosody_transplant(source, reference),
}


@dataclass(frozen=True)
class Trial:
    """One conversion to score; the utterances are training.data.esd.Utterance."""

    emotion: str
    source: object
    reference: object
    target: object


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
                trials.append(Trial(emotion, src, reference, target))
    return trials


def _features_of_path(path) -> np.ndarray:
    from engine.audio import load_audio

    return utterance_features(load_audio(path, SR))


def features_of(paths: list, jobs: int | None) -> np.ndarray:
    """(len(paths), F) utterance statistics, in `jobs` processes (spawned: the parent may hold
    ONNX Runtime and numba threads, which fork would copy mid-state)."""
    jobs = jobs or 1
    if jobs == 1 or len(paths) < 4 * jobs:
        return np.stack([_features_of_path(p) for p in paths])
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        return np.stack(list(pool.map(_features_of_path, paths, chunksize=16)))


@dataclass
class Evaluators:
    classifier: ev.EmotionClassifier
    ranker: ev.StrengthRanker
    speaker: object
    speaker_note: str | None
    gt: dict
    report: dict


def _labels(utts: list, gt: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    emotions = np.array([u.emotion for u in utts])
    speakers = np.array([u.speaker for u in utts])
    strengths = np.array([gt.get(u.utt_id, np.nan) for u in utts]) if gt else None
    return emotions, speakers, strengths


def train_evaluators(utts: list, split: str, gt: dict, jobs: int | None) -> Evaluators:
    """Classifier and rankers on the natural train utterances, checked on `split`'s natural utterances."""
    train = [u for u in utts if u.split == "train"]
    held = [u for u in utts if u.split == split] if split != "train" else train
    if not train:
        raise EVCError("the corpus has no train split: the evaluators need natural train utterances")
    x_train, x_held = features_of([u.path for u in train], jobs), features_of([u.path for u in held], jobs)
    emotions, speakers, strengths = _labels(train, gt)
    classifier = ev.EmotionClassifier().fit(x_train, emotions)
    ranker = ev.StrengthRanker().fit(x_train, emotions, speakers, strengths)
    speaker, note = ev.speaker_embedder()
    report = evaluator_report(classifier, ranker, x_held, *_labels(held, gt))
    report.update(train_utterances=len(train), checked_on=f"natural {split} utterances ({len(held)})",
                  speaker_embedding=speaker.name, split_note="train on 'train'" + (
                      "; the checked split is the train split itself" if split == "train" else ""))
    return Evaluators(classifier, ranker, speaker, note, gt, report)


def evaluator_report(classifier, ranker, x: np.ndarray, emotions: np.ndarray, speakers, strengths) -> dict:
    """Accuracy of the classifier (overall, per emotion) and RMSE of each ranker against
    ground-truth strength (its emotion's and the Neutral utterances, Neutral = 0) on natural x."""
    pred = classifier.predict(x)
    report = {"emotion_accuracy": float(np.mean(pred == emotions)),
              "emotion_accuracy_by_emotion": {e: float(np.mean(pred[emotions == e] == e))
                                              for e in EMOTIONS if (emotions == e).any()}}
    if strengths is not None and np.isfinite(strengths).all():
        report["strength_rmse_by_emotion"] = {
            e: float(np.sqrt(np.mean((ranker.score(x[keep], e) - strengths[keep]) ** 2)))
            for e in ranker.models for keep in [(emotions == e) | (emotions == SOURCE_EMOTION)]}
    return report


def _audio(path) -> np.ndarray:
    from engine.audio import load_audio

    return load_audio(path, SR)


@dataclass
class _Fixed:
    """What scoring a trial needs besides the converted audio, computed once for every system."""

    target: object
    source_speaker: np.ndarray
    strength_target: float


def _fixed(trial: Trial, audio: dict, evals: Evaluators) -> _Fixed:
    ref_id = trial.reference.utt_id
    if ref_id in evals.gt:
        strength = evals.gt[ref_id]
    else:
        strength = float(evals.ranker.score(utterance_features(audio["reference"]), trial.emotion)[0])
    return _Fixed(analyse(audio["target"]), evals.speaker.embed(audio["source"]), strength)


def score(converted: np.ndarray, trial: Trial, fixed: _Fixed, evals: Evaluators) -> dict:
    """One converted utterance's metrics against its trial."""
    converted = np.nan_to_num(np.asarray(converted, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    analysis, feats = analyse(converted), utterance_features(converted)
    strength = float(evals.ranker.score(feats, trial.emotion)[0])
    return {"mcd_db": mcd(analysis, fixed.target), "f0_rmse_cents": f0_rmse_cents(analysis, fixed.target),
            "predicted": str(evals.classifier.predict(feats)[0]), "strength": strength,
            "strength_target": fixed.strength_target,
            "speaker_cos": ev.cosine(evals.speaker.embed(converted), fixed.source_speaker)}


def run_trials(trials: list[Trial], systems: dict[str, System], evals: Evaluators, keep: int = 0):
    """Per-trial rows for every system, and the audio of the first `keep` trials (for plots)."""
    rows, kept = [], []
    for i, trial in enumerate(trials):
        audio = {k: _audio(getattr(trial, k).path) for k in ("source", "reference", "target")}
        fixed = _fixed(trial, audio, evals)
        outputs = {name: system(audio["source"], audio["reference"], audio["target"])
                   for name, system in systems.items()}
        for name, converted in outputs.items():
            rows.append({"system": name, "emotion": trial.emotion, "speaker": trial.source.speaker,
                         "source": trial.source.utt_id, "reference": trial.reference.utt_id,
                         "target": trial.target.utt_id, **score(converted, trial, fixed, evals)})
        if i < keep:
            kept.append((trial, audio, outputs))
    return rows, kept


def aggregate(rows: list[dict]) -> dict:
    """{system: {emotion or 'all': metric means}}: MCD and F0 RMSE (over trials with voiced
    frames in common) as means, accuracy, strength RMSE, mean speaker cosine, trial count."""
    out: dict = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        out[system] = {group: _summary([r for r in mine if group in ("all", r["emotion"])])
                       for group in (*TARGET_EMOTIONS, "all") if any(group in ("all", r["emotion"]) for r in mine)}
    return out


def _summary(rows: list[dict]) -> dict:
    f0 = np.array([r["f0_rmse_cents"] for r in rows])
    err = np.array([r["strength"] - r["strength_target"] for r in rows])
    return {"n": len(rows), "mcd_db": float(np.mean([r["mcd_db"] for r in rows])),
            "emotion_accuracy": float(np.mean([r["predicted"] == r["emotion"] for r in rows])),
            "strength_rmse": float(np.sqrt(np.mean(err ** 2))),
            "speaker_cos": float(np.mean([r["speaker_cos"] for r in rows])),
            "f0_rmse_cents": float(np.nanmean(f0)) if np.isfinite(f0).any() else float("nan"),
            "f0_scored": int(np.isfinite(f0).sum())}


def markdown(results: dict) -> str:
    header = ["emotion", "system", "n", "MCD-DTW (dB) ↓", "emotion acc ↑", "strength RMSE ↓",
              "speaker cos ↑", "log-F0 RMSE (cents) ↓"]
    rows = []
    for group in (*TARGET_EMOTIONS, "all"):
        for system, by_group in results.items():
            if group in by_group:
                s = by_group[group]
                rows.append([group, system, str(s["n"]), f"{s['mcd_db']:.2f}", f"{s['emotion_accuracy']:.2f}",
                             f"{s['strength_rmse']:.3f}", f"{s['speaker_cos']:.3f}", f"{s['f0_rmse_cents']:.0f}"])
    return markdown_table(header, rows)


def evaluator_lines(report: dict, speaker_note: str | None) -> list[str]:
    """The evaluators' own accuracy on natural speech, with a loud warning when too low to trust."""
    acc = report["emotion_accuracy"]
    by = ", ".join(f"{e} {a:.2f}" for e, a in report["emotion_accuracy_by_emotion"].items())
    lines = [f"evaluator check on {report['checked_on']}: emotion accuracy {acc:.3f} ({by}); "
             f"classifier and rankers trained on {report['train_utterances']} natural train utterances"]
    if "strength_rmse_by_emotion" in report:
        lines.append("strength ranker RMSE vs ground truth: " + ", ".join(
            f"{e} {v:.3f}" for e, v in report["strength_rmse_by_emotion"].items()))
    else:
        lines.append("no ground-truth strengths (metadata.csv): strength targets are the ranker's "
                     "scores of the references")
    if acc < MIN_EVALUATOR_ACCURACY:
        bar = "!" * 78
        lines += [bar, f"WARNING: the emotion evaluator is only {acc:.0%} accurate on natural speech "
                       f"(< {MIN_EVALUATOR_ACCURACY:.0%}):", "THE TABLE BELOW IS NOT MEANINGFUL.", bar]
    lines.append(f"speaker similarity: {report['speaker_embedding']}" + (f" -- {speaker_note}" if speaker_note else ""))
    return lines


def run(data: str | Path, split: str, systems: dict[str, System], limit: int | None = None,
        jobs: int | None = None, keep: int = 0, echo=print) -> tuple[dict, list]:
    """Train and check the evaluators (echoing their accuracy first), then score every system."""
    from training.data.esd import scan, strengths

    utts = scan(data)
    trials = make_trials(utts, split, limit)
    if not trials:
        raise EVCError(f"{data}: no Neutral {split} sentence has a parallel target and another "
                       "sentence of the target emotion to use as reference")
    evals = train_evaluators(utts, split, strengths(data), jobs)
    for line in evaluator_lines(evals.report, evals.speaker_note):
        echo(line)
    rows, kept = run_trials(trials, systems, evals, keep)
    report = {"benchmark": "quality", "machine": machine(), "corpus": str(Path(data).resolve()), "split": split,
              "trials": len(trials), "evaluators": evals.report, "speaker_note": evals.speaker_note,
              "metrics": _METRICS, "results": aggregate(rows), "rows": rows}
    return report, kept


_METRICS = {
    "mcd_db": "MCD with DTW on WORLD mel-cepstra c1..c24 (alpha 0.42, pysptk.sp2mc), 5 ms frames, "
              "silence trimmed, mean over the path; converted vs parallel target",
    "f0_rmse_cents": "RMSE of log-F0 (DIO+StoneMask) in cents on DTW-aligned frames voiced in both",
    "emotion_accuracy": "SVM (RBF) on utterance statistics, trained on the corpus's natural train split",
    "strength_rmse": "per-emotion ranking SVM score vs the reference's ground-truth strength "
                     "(or the ranker's score of the reference without ground truth)",
    "speaker_cos": "cosine of speaker embeddings, converted vs source",
}


def engine_system(cfg) -> System:
    """The model as the engine runs it: reference -> EmotionEncoder embedding, then the streaming
    pipeline over the source from a reset state (convert_array)."""
    from engine.bank import EmotionEncoder
    from engine.cli_files import convert_array
    from engine.pipeline import StreamingConverter

    converter = StreamingConverter(cfg, quiet=True)
    encoder = EmotionEncoder(converter.sessions, converter.manifest)

    def convert(source: np.ndarray, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
        converter.set_embedding(encoder.encode(reference).embedding, crossfade_blocks=0)
        converter.reset()
        return convert_array(converter, source).copy()

    return convert


def _systems(args) -> tuple[dict[str, System], str | None]:
    """Baselines plus the model when one is given or configured; a note when there is none."""
    from benchmarks.models import base_config, default_model, model_config

    cfg = base_config(args.config)
    try:
        model = Path(args.model) if args.model else default_model(cfg)
    except EVCError as e:
        return dict(BASELINES), f"{e}; scoring the baselines only"
    return {**BASELINES, f"model ({model.name})": engine_system(model_config(cfg, model))}, None


def cmd(args) -> int:
    import os

    from benchmarks.plots import quality_figure

    systems, note = _systems(args)
    if note:
        print(f"note: {note}")
    report, kept = run(args.data, args.split, systems, args.limit, args.jobs or os.cpu_count(), args.examples)
    out = Path(args.out)
    table = markdown(report["results"])
    print(machine_line(report["machine"]))
    print(table)
    md = out / "quality.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join([*evaluator_lines(report["evaluators"], report["speaker_note"]),
                             machine_line(report["machine"]), "", table, ""]))
    png = quality_figure(kept, out / "quality.png")
    print(f"wrote {md}, {write_json(out / 'quality.json', report)}" + (f" and {png}" if png else ""))
    return 0
