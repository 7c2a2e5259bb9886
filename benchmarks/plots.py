"""The PNGs the benchmarks write (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def latency_histograms(report: dict, raw: dict[int, np.ndarray], path: Path) -> Path:
    """Histogram of per-block compute (log ms) per latency setting, the block's deadline drawn in."""
    plt = _pyplot()
    settings = report["settings"]
    fig, axes = plt.subplots(len(settings), 1, figsize=(8, 2.4 * len(settings)), squeeze=False)
    for ax, (i, s) in zip(axes[:, 0], enumerate(settings)):
        ms = raw[i] / 1e6
        top = max(ms.max(), s["block_ms"]) * 1.5
        ax.hist(ms, bins=np.geomspace(max(ms.min() * 0.8, 1e-4), top, 80), color="tab:blue")
        ax.axvline(s["block_ms"], color="tab:red", label=f"deadline {s['block_ms']:g} ms")
        ax.axvline(s["compute"]["p99_ms"], color="tab:orange", ls="--", label=f"p99 {s['compute']['p99_ms']:.3f} ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{Path(s['model']).name}: {s['block_frames']}-frame blocks, {s['threads']} thread(s), "
                     f"{s['device']}", fontsize=9)
        ax.set_ylabel("blocks")
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("compute per block (ms, whole pipeline)")
    fig.suptitle(report["machine"]["cpu"], fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _shown_system(outputs: dict) -> str:
    """The model's output when there is one, else the last baseline."""
    return next((n for n in outputs if n.startswith("model")), list(outputs)[-1])


def quality_figure(kept: list, path: Path) -> Path | None:
    """Per kept trial: log-mel of source, converted and target, and their F0 tracks; None without trials."""
    from benchmarks.features import FRAME_MS, f0_track
    from engine.features import log_mel_offline
    from engine.signal import SignalSpec

    if not kept:
        return None
    plt, spec = _pyplot(), SignalSpec()
    fig, axes = plt.subplots(len(kept), 4, figsize=(16, 2.6 * len(kept)), squeeze=False)
    for row, (trial, audio, outputs) in zip(axes, kept):
        name = _shown_system(outputs)
        signals = {"source": audio["source"], name: outputs[name], "target": audio["target"]}
        for ax, (label, x) in zip(row, signals.items()):
            ax.imshow(log_mel_offline(x, spec), origin="lower", aspect="auto", cmap="magma",
                      extent=(0, x.size / spec.sample_rate, 0, spec.n_mels))
            ax.set_title(f"{label} ({trial.emotion}, {trial.source.utt_id})", fontsize=8)
            ax.set_ylabel("mel bin", fontsize=7)
        for label, x in signals.items():
            f0 = f0_track(x)
            ax = row[3]
            ax.plot(np.arange(f0.size) * FRAME_MS / 1000, np.where(f0 > 0, f0, np.nan), label=label, lw=1)
        row[3].set_title("F0 (Hz, DIO)", fontsize=8)
        row[3].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def samples_figure(signals: dict[str, np.ndarray], title: str, path: Path, spec) -> Path:
    """One column per signal (N,): log-mel, its DIO F0 in Hz on the right axis; spec: SignalSpec."""
    from benchmarks.features import FRAME_MS, f0_track
    from engine.features import log_mel_offline

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(signals), figsize=(4 * len(signals), 3.2), squeeze=False)
    for ax, (label, x) in zip(axes[0], signals.items()):
        seconds = x.size / spec.sample_rate
        ax.imshow(log_mel_offline(x, spec), origin="lower", aspect="auto", cmap="magma",
                  extent=(0, seconds, 0, spec.n_mels))
        f0 = f0_track(x, spec.sample_rate)
        twin = ax.twinx()
        twin.plot(np.arange(f0.size) * FRAME_MS / 1000, np.where(f0 > 0, f0, np.nan), color="cyan", lw=1)
        twin.set_ylim(50, 500)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("time (s)", fontsize=8)
    axes[0, 0].set_ylabel("mel bin", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def e2e_figure(report: dict, path: Path) -> Path:
    """Per mode (wire, bypass, conversion): each burst's delay over the run, and their histogram."""
    plt = _pyplot()
    modes = report["modes"]
    fig, axes = plt.subplots(len(modes), 2, figsize=(11, 2.6 * len(modes)), squeeze=False)
    for (left, right), m in zip(axes, modes):
        found = [b for b in m["bursts"] if b["delay_ms"] is not None]
        t0 = m["bursts"][0]["capture_s"] if m["bursts"] else 0.0
        left.plot([b["capture_s"] - t0 for b in found], [b["delay_ms"] for b in found], ".", ms=4)
        left.set_title(f"{m['mode']}: {len(found)}/{len(m['bursts'])} bursts found", fontsize=9)
        left.set_ylabel("delay (ms)")
        if found:
            right.hist([b["delay_ms"] for b in found], bins=40)
        else:
            left.text(0.5, 0.5, "no burst found in the output", transform=left.transAxes, ha="center")
        right.axvline(report["algorithmic_latency_ms"], color="tab:red", label="algorithmic latency")
        right.legend(fontsize=8)
    axes[-1, 0].set_xlabel("time in run (s)")
    axes[-1, 1].set_xlabel("delay (ms)")
    s = report["session"]
    fig.suptitle(f"{report['machine']['cpu']}: microphone to speaker through {report['server']}, "
                 f"{report['block_ms']:g} ms blocks; xruns {s['xruns']['total']}, late {s['late']}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def soak_figure(report: dict, path: Path) -> Path:
    """Per interval of a soak run: xruns/late/dropped, block times against the deadline, memory, fds."""
    plt = _pyplot()
    recs = report["records"]
    t = [r["minute"] for r in recs]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    for key in ("xruns", "late", "dropped"):
        axes[0].plot(t, [r[key] for r in recs], ".-", label=key)
    axes[0].set_ylabel("count")
    for key in ("p50_ms", "p99_ms", "max_ms"):
        axes[1].plot(t, [r[key] for r in recs], ".-", label=key.replace("_ms", ""))
    axes[1].axhline(report["block_ms"], color="tab:red", label="block (deadline)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("block compute (ms)")
    axes[2].plot(t, [r["rss_mib"] - recs[0]["rss_mib"] for r in recs], ".-", label="RSS")
    axes[2].plot(t, [r["heap_mib"] - recs[0]["heap_mib"] for r in recs], ".-", label="Python heap")
    axes[2].axhline(1.0, color="tab:red", label="limit (1 MiB)")
    axes[2].set_ylabel("growth since\ninterval 1 (MiB)")
    axes[3].plot(t, [r["fds"] for r in recs], ".-")
    axes[3].set_ylabel("open fds")
    axes[3].set_xlabel(f"interval ({report['interval_s']:g} s each)")
    for ax in axes[:3]:
        ax.legend(fontsize=8, loc="upper right")
    verdict = "PASS" if not report["verdict"] else "FAIL"
    fig.suptitle(f"soak through {report['server']}, load {report['load']}, {report['block_ms']:g} ms blocks: "
                 f"{verdict} ({report['machine']['cpu']})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


BAR_METRICS = (("mcd_db", "MCD-DTW (dB) ↓"), ("emotion_accuracy", "emotion accuracy ↑"),
               ("strength_rmse_sup", "strength RMSE, supervised ↓"), ("strength_rmse_rank", "strength RMSE, ranker ↓"),
               ("speaker_cos", "speaker cosine ↑"), ("ovrl", "DNSMOS OVRL ↑"))


def quality_bars(results: dict, path: Path) -> Path:
    """Per speaker group (rows) and metric (columns): a bar per system over the emotions and 'all'."""
    plt = _pyplot()
    systems = list(results)
    groups = list(dict.fromkeys(g for by in results.values() for g in by))
    emotions = list(dict.fromkeys(e for by in results.values() for g in by.values() for e in g))
    fig, axes = plt.subplots(len(groups), len(BAR_METRICS), figsize=(3.4 * len(BAR_METRICS), 2.8 * len(groups)),
                             squeeze=False)
    width = 0.8 / len(systems)
    for row, group in zip(axes, groups):
        for ax, (key, label) in zip(row, BAR_METRICS):
            for k, system in enumerate(systems):
                by = results[system].get(group, {})
                values = [by[e][key] if e in by else np.nan for e in emotions]
                ax.bar(np.arange(len(emotions)) + (k - (len(systems) - 1) / 2) * width, values, width, label=system)
            ax.set_xticks(np.arange(len(emotions)), emotions, fontsize=7)
            ax.set_title(f"{label} ({group} speakers)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(systems), fontsize=8)
    fig.tight_layout(rect=(0, 0.1 / len(groups), 1, 1))
    return _save(fig, path)


def strength_sweep(sweep: dict, path: Path) -> Path:
    """Per speaker group: the mean strength reading at each knob setting, a line per (system, emotion)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(g for by in sweep.values() for g in by))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for system, by in sweep.items():
            for emotion, s in by.get(group, {}).items():
                settings = sorted(s["mean_reading"], key=float)
                ax.plot([float(k) for k in settings], [s["mean_reading"][k] for k in settings], "o-",
                        lw=2.5 if emotion == "all" else 1, label=f"{system}: {emotion} (ρ {s['spearman']:.2f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="reading = setting")
        ax.set_xlim(0, 1.05)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("strength setting s")
        ax.set_ylabel("evaluator's strength reading")
        ax.set_title(f"{group} speakers", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)
