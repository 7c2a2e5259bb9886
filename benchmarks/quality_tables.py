"""The quality benchmark's numbers: per-trial rows summarised by system, speaker group and emotion,
the strength sweep's readings, and the lines and Markdown tables that show them."""

from __future__ import annotations

import numpy as np

from benchmarks.report import markdown_table
from benchmarks.trials import TARGET_EMOTIONS

MIN_EVALUATOR_ACCURACY = 0.9
MAX_STRENGTH_RMSE = 0.08
"""The supervised strength evaluator's own error above which its column is flagged (issue 13's bar)."""
ALL = "all"
MOS_KEYS = ("sig", "bak", "ovrl", "p808")


def _nanmean(values) -> float:
    v = np.asarray(values, np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _rmse(rows: list[dict], reader: str) -> float:
    err = np.array([r[reader] - r["strength_target"] for r in rows], np.float64)
    err = err[np.isfinite(err)]
    return float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan")


def summary(rows: list[dict]) -> dict:
    """Means over rows: MCD, F0 RMSE (trials with voiced frames in common), speaker cosine, DNSMOS
    (trials it scored), accuracy, and each strength reader's RMSE against the trial's target."""
    f0 = np.array([r["f0_rmse_cents"] for r in rows], np.float64)
    out = {"n": len(rows), "mcd_db": _nanmean([r["mcd_db"] for r in rows]),
           "emotion_accuracy": float(np.mean([r["predicted"] == r["emotion"] for r in rows])),
           "strength_rmse_sup": _rmse(rows, "strength_sup"), "strength_rmse_rank": _rmse(rows, "strength_rank"),
           "speaker_cos": _nanmean([r["speaker_cos"] for r in rows]),
           "voicing_agreement": _nanmean([r.get("voicing_agreement", np.nan) for r in rows]),
           "f0_rmse_cents": _nanmean(f0), "f0_scored": int(np.isfinite(f0).sum()),
           "mos_n": int(np.isfinite([r["ovrl"] for r in rows]).sum())}
    out.update({k: _nanmean([r[k] for r in rows]) for k in MOS_KEYS})
    return out


def _groups(rows: list[dict]) -> list[str]:
    """Speaker groups present, each followed by its voice families ('unseen festival') when the
    corpus has more than one family, and 'all' when there is more than one group."""
    groups = list(dict.fromkeys(r["speakers"] for r in rows))
    families = list(dict.fromkeys(r.get("family") for r in rows if r.get("family")))
    out = []
    for group in groups:
        out.append(group)
        if len(families) > 1:
            out += list(dict.fromkeys(f"{group} {r['family']}" for r in rows
                                      if r["speakers"] == group and r.get("family")))
    return out + [ALL] if len(groups) > 1 else out


def _member(group: str, row: dict) -> bool:
    return group in (ALL, row["speakers"], f"{row['speakers']} {row.get('family')}")


def _nested(rows: list[dict], summarise) -> dict:
    """{system: {speakers: {emotion or 'all': summarise(rows)}}}."""
    out: dict = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        out[system] = {}
        for group in _groups(mine):
            grouped = [r for r in mine if _member(group, r)]
            out[system][group] = {e: summarise(sel) for e in (*TARGET_EMOTIONS, ALL)
                                  if (sel := [r for r in grouped if e in (ALL, r["emotion"])])}
    return out


def aggregate(rows: list[dict]) -> dict:
    return _nested(rows, summary)


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(y)
    if keep.sum() < 3 or np.ptp(y[keep]) == 0 or np.ptp(x[keep]) == 0:
        return float("nan")
    return float(spearmanr(x[keep], y[keep]).statistic)


def reader_of(rows: list[dict]) -> str:
    """The strength reading a sweep is judged by: the supervised one where it exists."""
    return "strength_sup" if any(np.isfinite(r["strength_sup"]) for r in rows) else "strength_rank"


def sweep_summary(rows: list[dict]) -> dict:
    """Mean reading per setting, Spearman's rho of setting vs reading over all (trial, setting)
    pairs (nan when every reading is equal), and the mean of each trial's own rho, where a trial
    whose reading does not move counts 0: a knob that changes nothing heard is no knob."""
    reader = reader_of(rows)
    settings = sorted({r["setting"] for r in rows})
    trials: dict = {}
    for r in rows:
        trials.setdefault(r["trial"], []).append(r)
    per_trial = [np.nan_to_num(_spearman([r["setting"] for r in t], [r[reader] for r in t]))
                 for t in trials.values()]
    return {"n": len(trials), "reader": reader,
            "mean_reading": {str(s): _nanmean([r[reader] for r in rows if r["setting"] == s]) for s in settings},
            "spearman": _spearman([r["setting"] for r in rows], [r[reader] for r in rows]),
            "spearman_per_trial_mean": _nanmean(per_trial)}


def aggregate_sweep(rows: list[dict]) -> dict:
    return _nested(rows, sweep_summary)


def _f(value: float, fmt: str) -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def quality_table(results: dict, emotions: tuple[str, ...]) -> str:
    """Markdown: a row per (speaker group, emotion in `emotions`, system)."""
    header = ["speakers", "emotion", "system", "n", "MCD-DTW (dB) ↓", "emotion acc ↑", "strength RMSE sup ↓",
              "strength RMSE rank ↓", "speaker cos ↑", "log-F0 RMSE (cents) ↓", "V/UV agree ↑", "SIG ↑", "BAK ↑",
              "OVRL ↑",
              "P.808 ↑", "MOS n"]
    rows = []
    groups = list(dict.fromkeys(g for by in results.values() for g in by))
    for group in groups:
        for emotion in emotions:
            for system, by in results.items():
                s = by.get(group, {}).get(emotion)
                if s is None:
                    continue
                rows.append([group, emotion, system, str(s["n"]), _f(s["mcd_db"], ".2f"),
                             _f(s["emotion_accuracy"], ".2f"), _f(s["strength_rmse_sup"], ".3f"),
                             _f(s["strength_rmse_rank"], ".3f"), _f(s["speaker_cos"], ".3f"),
                             _f(s["f0_rmse_cents"], ".0f"), _f(s["voicing_agreement"], ".3f"),
                             *(_f(s[k], ".2f") for k in MOS_KEYS), str(s["mos_n"])])
    return markdown_table(header, rows)


def sweep_table(sweep: dict) -> str:
    """Markdown: a row per (speaker group, emotion, sweeping system)."""
    settings = sorted({k for by in sweep.values() for g in by.values() for s in g.values() for k in s["mean_reading"]},
                      key=float)
    header = ["speakers", "emotion", "system", "trials", "reader", *(f"reading @ {k}" for k in settings),
              "Spearman ρ ↑", "per-trial ρ ↑"]
    rows = []
    for system, by in sweep.items():
        for group, by_emotion in by.items():
            for emotion, s in by_emotion.items():
                rows.append([group, emotion, system, str(s["n"]), "sup" if s["reader"] == "strength_sup" else "rank",
                             *(_f(s["mean_reading"].get(k, float("nan")), ".3f") for k in settings),
                             _f(s["spearman"], ".2f"), _f(s["spearman_per_trial_mean"], ".2f")])
    return markdown_table(header, rows)


def _by(values: dict, fmt: str = ".3f") -> str:
    return ", ".join(f"{k} {v:{fmt}}" for k, v in values.items())


def evaluator_lines(report: dict) -> list[str]:
    """The evaluators' own accuracy on natural speech, first, with loud warnings when too low to trust."""
    acc = report["emotion_accuracy"]
    lines = [f"evaluator check on {report['checked_on']}: emotion accuracy {acc:.3f} "
             f"({_by(report['emotion_accuracy_by_emotion'], '.2f')}); evaluators {report['source']}"]
    if "strength_sup_rmse_by_emotion" in report:
        lines.append("strength evaluators' RMSE vs ground truth on the same utterances (each emotion's): "
                     f"supervised {_by(report['strength_sup_rmse_by_emotion'])}; "
                     f"label-free ranker {_by(report['strength_rank_rmse_by_emotion'])}")
    else:
        lines.append(f"note: {report['labels_note']}")
    bar = "!" * 78
    if acc < MIN_EVALUATOR_ACCURACY:
        lines += [bar, f"WARNING: the emotion evaluator is only {acc:.0%} accurate on natural speech "
                       f"(< {MIN_EVALUATOR_ACCURACY:.0%}):", "THE TABLE BELOW IS NOT MEANINGFUL.", bar]
    sup = report.get("strength_sup_rmse_by_emotion", {}).get(ALL, 0.0)
    if sup > MAX_STRENGTH_RMSE:
        lines += [bar, f"WARNING: the supervised strength evaluator's own RMSE is {sup:.3f} (> {MAX_STRENGTH_RMSE}):",
                  "STRENGTH COLUMNS BELOW CANNOT SEPARATE MODELS CLOSER THAN THAT.", bar]
    lines.append(f"speaker similarity: {report['speaker_embedding']}"
                 + (f" -- {report['speaker_note']}" if report.get("speaker_note") else ""))
    return lines
