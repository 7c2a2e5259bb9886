"""`evc bench quality`: Neutral -> {Angry, Happy, Sad, Surprise} on a parallel corpus (benchmarks.trials).

1. Evaluators fitted on the corpus's natural train utterances (benchmarks.fitting,
   cached), and their own accuracy and strength RMSE on the split's natural utterances,
   printed first: a column is only as good as its evaluator.
2. Every system (benchmarks.systems: oracle, copy synthesis, baselines, the model)
   converts every trial, in --jobs worker processes (benchmarks.scoring): MCD-DTW and
   log-F0 RMSE against the target, emotion accuracy, strength by both readers against the
   reference's strength, speaker similarity to the source, and DNSMOS on the first
   --mos-limit sentences per speaker. Rows of the systems that depend on the corpus only
   (oracle, baselines) are cached, so a rerun after training scores the model alone.
3. The model's strength knob swept over scoring.SWEEP_STRENGTHS on the first --sweep
   sentences per speaker.
4. Everything split by speakers the model trained on ("seen"), those it did not
   ("unseen"), from its manifest; "unknown" when the manifest does not say.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import quality_tables as tables
from benchmarks.cache import Cache, digest, files_key
from benchmarks.fitting import check, corpus_evaluators
from benchmarks.pool import parallel_map
from benchmarks.report import machine, machine_line, write_json
from benchmarks.scoring import DEGRADATION, SCORING_VERSION, Task, init_worker, score_task
from benchmarks.systems import CORPUS_ONLY, SYSTEMS_VERSION
from benchmarks.trials import first_per_speaker, make_trials, speaker_group, voice_families
from engine.errors import EVCError


@dataclass(frozen=True)
class Options:
    """split: where trials come from; limit: source sentences per speaker (None: all); mos_limit,
    sweep: sentences per speaker scored by DNSMOS / swept (None: all, 0: none); keep: trials whose
    audio comes back for the figure; trained: the model's training speakers (None: unknown);
    degrade: the systems hear each source through noise and a room (scoring.DEGRADATION);
    families: speaker -> voice family (trials.voice_families), splitting each speaker group."""

    split: str = "test"
    limit: int | None = None
    jobs: int | None = None
    mos_limit: int | None = 2
    sweep: int | None = 1
    keep: int = 0
    trained: tuple[str, ...] | None = None
    degrade: bool = False
    families: dict = field(default_factory=dict)
    cache: Cache = field(default_factory=lambda: Cache(None))


def _subset(trials: list, n: int | None) -> set[int]:
    """Indices of the trials of each speaker's first n source sentences; all of them for None."""
    return set(range(len(trials))) if n is None else set(first_per_speaker(trials, n))


def _trial_key(trial, root: Path, mos: bool, degrade: bool) -> str:
    key = {"files": files_key([trial.source.path, trial.reference.path, trial.target.path], root), "mos": mos}
    if degrade:
        key["degrade"] = repr(DEGRADATION)
    return digest(key)


class _RowCache:
    """Scored rows of the corpus-only systems, one cache entry per system: {trial key: row}."""

    def __init__(self, cache: Cache, names, evals_key: str, speaker_embedding: str):
        self.cache = cache
        self.keys = {n: digest({"evaluators": evals_key, "system": n, "systems": SYSTEMS_VERSION,
                                "scoring": SCORING_VERSION, "speaker": speaker_embedding})
                     for n in names if n in CORPUS_ONLY}
        self.rows = {n: self.cache.load("rows", k) or {} for n, k in self.keys.items()}

    def get(self, name: str, key: str) -> dict | None:
        return self.rows.get(name, {}).get(key)

    def put(self, name: str, key: str, row: dict) -> None:
        if name in self.rows:
            self.rows[name][key] = row

    def save(self) -> None:
        for name, key in self.keys.items():
            self.cache.store("rows", key, self.rows[name])


def _tasks(trials: list, names: list[str], root: Path, opts: Options, stored: _RowCache) -> tuple[list, list]:
    """A task per trial with the systems not already scored (all of them for a kept trial), and the trial keys."""
    mos, sweep = _subset(trials, opts.mos_limit), _subset(trials, opts.sweep)
    tasks, keys = [], []
    for i, trial in enumerate(trials):
        key = _trial_key(trial, root, i in mos, opts.degrade)
        todo = tuple(n for n in names if i < opts.keep or stored.get(n, key) is None)
        tasks.append(Task(i, trial, todo, mos=i in mos, sweep=i in sweep, keep=i < opts.keep, degrade=opts.degrade))
        keys.append(key)
    return tasks, keys


def _labelled(row: dict, name: str, trial, opts: Options) -> dict:
    return {"system": name, "emotion": trial.emotion, "speaker": trial.source.speaker,
            "speakers": speaker_group(trial.source.speaker, opts.trained),
            "family": opts.families.get(trial.source.speaker), "source": trial.source.utt_id,
            "reference": trial.reference.utt_id, "target": trial.target.utt_id, **row}


def score(trials: list, systems: dict, evals, gt: dict, root: Path, opts: Options, evals_key: str,
          speaker_embedding: str) -> tuple[list, list, list, int]:
    """(rows, sweep rows, kept (trial, audio, outputs), rows taken from the cache)."""
    names = list(systems)
    stored = _RowCache(opts.cache, names, evals_key, speaker_embedding)
    tasks, keys = _tasks(trials, names, root, opts, stored)
    results = parallel_map(score_task, tasks, opts.jobs, initializer=init_worker, initargs=(evals, gt, systems))
    rows, sweep, kept, reused = [], [], [], 0
    for task, key, result in zip(tasks, keys, results):
        for name in names:
            row = result.rows.get(name) or stored.get(name, key)
            reused += name not in result.rows
            stored.put(name, key, row)
            rows.append(_labelled(row, name, task.trial, opts))
        sweep += [_labelled({**r, "trial": task.index}, r["system"], task.trial, opts) for r in result.sweep]
        if task.keep:
            kept.append((task.trial, result.audio, result.outputs))
    stored.save()
    return rows, sweep, kept, reused


def _labels_note(data, gt: dict) -> str | None:
    if gt:
        return None
    return (f"{data} has no metadata.csv (ground-truth strength): strength is read by the label-free ranker "
            "only, and each trial's target is its reading of the reference")


def run(data: str | Path, systems: dict, opts: Options, echo=print) -> tuple[dict, list]:
    """Fit or load the evaluators, echo their own accuracy first, then score every system."""
    from benchmarks.evaluators import speaker_embedder
    from training.data.esd import scan, strengths

    t0, root, utts = time.perf_counter(), Path(data), scan(data)
    opts = dataclasses.replace(opts, families=voice_families(root))
    trials = make_trials(utts, opts.split, opts.limit)
    if not trials:
        raise EVCError(f"{data}: no Neutral {opts.split} sentence has a parallel target and another "
                       "sentence of the target emotion to use as reference")
    gt = strengths(data)
    evals, evals_key, source = corpus_evaluators(root, utts, gt, opts.jobs, opts.cache)
    held = [u for u in utts if u.split == opts.split]
    speaker, speaker_note = speaker_embedder()
    ev_report = {**check(evals, root, held, gt, opts.jobs, opts.cache), "source": source,
                 "checked_on": f"natural {opts.split} utterances ({len(held)})", "labels_note": _labels_note(data, gt),
                 "speaker_embedding": speaker.name, "speaker_note": speaker_note}
    for line in tables.evaluator_lines(ev_report):
        echo(line)
    t_scoring = time.perf_counter()
    rows, sweep, kept, reused = score(trials, systems, evals, gt, root, opts, evals_key, speaker.name)
    t_end = time.perf_counter()
    report = {"benchmark": "quality", "machine": machine(), "corpus": str(root.resolve()), "split": opts.split,
              "degraded_sources": repr(DEGRADATION) if opts.degrade else None,
              "trials": len(trials), "training_speakers": list(opts.trained) if opts.trained else None,
              "evaluators": ev_report, "metrics": METRICS, "results": tables.aggregate(rows),
              "sweep": tables.aggregate_sweep(sweep) if sweep else {}, "rows": rows, "sweep_rows": sweep,
              "coverage": {"mos_trials": len(_subset(trials, opts.mos_limit)), "sweep_trials": len({r["trial"]
                           for r in sweep}), "rows_from_cache": reused},
              "seconds": {"evaluators": t_scoring - t0, "scoring": t_end - t_scoring, "total": t_end - t0}}
    return report, kept


METRICS = {
    "mcd_db": "MCD with DTW on WORLD mel-cepstra c1..c24 (alpha 0.42, pysptk.sp2mc), 5 ms frames, "
              "silence trimmed, mean over the path; converted vs parallel target",
    "f0_rmse_cents": "RMSE of log-F0 (DIO+StoneMask) in cents on DTW-aligned frames voiced in both",
    "emotion_accuracy": "SVM (RBF) on speaker-normalised utterance statistics, trained on the corpus's "
                        "natural train split",
    "strength_rmse_sup": "per-emotion ridge regression of ground-truth strength (natural train split) read on "
                         "the converted speech, vs the reference's ground-truth strength; the oracle and copy "
                         "synthesis rows render the target, so against the target's own (the columns' floor)",
    "strength_rmse_rank": "label-free per-emotion ranking SVM (neutral < emotional), same target (or, without "
                          "ground truth, its own reading of the reference)",
    "speaker_cos": "cosine of speaker embeddings, converted vs source",
    "sig/bak/ovrl/p808": "DNSMOS P.835 signal, background, overall and P.808 MOS (speechmos's ONNX models), "
                         "on the first --mos-limit source sentences per speaker; zero effort is the natural source",
    "sweep": "the model's strength knob: embedding e_n + s (e_ref - e_n), e_n the emotion encoding of the "
             "Neutral utterance of the reference's sentence; mean reading per s, Spearman's rho of s vs reading",
}


NOTES = ("Strength RMSE is against the reference's strength; the oracle and copy synthesis render the target, "
         "so theirs is against the target's own strength: the floor of those columns.",
         "Zero effort is the natural Neutral source: its DNSMOS is the natural speech's.")


def _options(args, trained) -> Options:
    import os

    from benchmarks.cache import default_dir

    cache = Cache(None if args.no_cache else (args.cache or default_dir()))
    return Options(split=args.split, limit=args.limit, jobs=args.jobs or os.cpu_count(), keep=args.examples,
                   mos_limit=args.mos_limit, sweep=args.sweep, trained=trained, degrade=args.degrade, cache=cache)


def _systems(args) -> tuple[dict, list[str], Path | None]:
    """The systems (the model when one is given or configured), notes on rows left out, the model dir."""
    from benchmarks import systems
    from benchmarks.models import base_config, default_model

    cfg = base_config(args.config)
    try:
        model = Path(args.model) if args.model else default_model(cfg)
    except EVCError as e:
        return systems.build(cfg, None)[0], [f"{e}; scoring the references and baselines only"], None
    built, notes = systems.build(cfg, model)
    return built, notes, model


def write(report: dict, kept: list, out: Path, notes: list[str]) -> list[Path]:
    """quality.md, quality.json and the PNGs beside them."""
    from benchmarks import plots

    results, sweep = report["results"], report["sweep"]
    lines = [*tables.evaluator_lines(report["evaluators"]), *(f"note: {n}" for n in notes),
             machine_line(report["machine"]), _coverage_line(report), "", "All emotions:", "",
             tables.quality_table(results, (tables.ALL,)), "", *NOTES, "", "Per emotion:", "",
             tables.quality_table(results, tables.TARGET_EMOTIONS), ""]
    if sweep:
        lines += ["Strength sweep (the model's knob; reading by the supervised evaluator where there are labels):",
                  "", tables.sweep_table(sweep), ""]
    md = out / "quality.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines))
    written = [md, write_json(out / "quality.json", report), plots.quality_bars(results, out / "quality_bars.png")]
    if sweep:
        written.append(plots.strength_sweep(sweep, out / "strength_sweep.png"))
    figure = plots.quality_figure(kept, out / "quality.png")
    return written + ([figure] if figure else [])


def _coverage_line(report: dict) -> str:
    c = report["coverage"]
    return (f"{report['trials']} trials; DNSMOS on {c['mos_trials']}, strength sweep on {c['sweep_trials']}; "
            f"{c['rows_from_cache']} rows of corpus-only systems from the cache; "
            + ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items()))


def cmd(args) -> int:
    from benchmarks.trials import training_speakers

    systems, notes, model = _systems(args)
    for note in notes:
        print(f"note: {note}")
    report, kept = run(args.data, systems, _options(args, training_speakers(model)))
    print(machine_line(report["machine"]))
    print(_coverage_line(report))
    print(tables.quality_table(report["results"], (tables.ALL,)))
    if report["sweep"]:
        print(tables.sweep_table(report["sweep"]))
    print("wrote " + ", ".join(str(p) for p in write(report, kept, Path(args.out), notes)))
    return 0
