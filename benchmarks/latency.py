"""`evc bench latency`: per-block compute of the whole streaming pipeline, per setting.

For every (model, intra-op threads) setting it measures, after a warm-up:

* StreamingConverter.process (frontend + step graph + bookkeeping), one
  perf_counter_ns pair per block: p50/p95/p99/max, mean, RTF = mean compute / block
  duration, and how many blocks missed their deadline (compute > block duration);
* right after each such call, the converter's own frontend (StreamingLogMel and
  StreamingPitch) and step runner (StepRunner.run) called directly on the same block, each
  timed alone; "rest" (embedding fade, dry delay line, mixing, timing) is the mean of the
  whole minus the two, since the engine exposes no hook inside process().

A model directory holds step graphs for one or more block sizes (`evc export
--block-frames 2,1`); by default every size of every `--model` is timed, and a
`--blocks` value no model serves is skipped with a note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.models import base_config, block_sizes_of, default_model, model_config
from benchmarks.plots import latency_histograms
from benchmarks.report import machine, machine_line, text_table, write_json
from benchmarks.signals import probe_speech
from engine.errors import EVCError
from engine.prosody import MOVE_SIZE

MIN_BLOCKS = 2000
"""Fewer timed blocks than this leave p99 resting on a handful of samples."""
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Setting:
    model_dir: Path
    block_frames: int
    threads: int


def plan(models: list[Path], threads: list[int], blocks: list[int] | None) -> tuple[list[Setting], list[str]]:
    """Settings to run (blocks x threads, in the order given) and a note for each block size no model serves."""
    by_block: dict[int, Path] = {}
    for m in models:
        for b in block_sizes_of(m):
            by_block.setdefault(b, m)
    wanted = blocks if blocks else sorted(by_block)
    notes = [f"block_frames={b}: skipped, no --model exported with {b}-frame blocks "
             f"(models given serve {sorted(by_block)}; re-export: evc export --block-frames {b})"
             for b in wanted if b not in by_block]
    settings = [Setting(by_block[b], b, t) for b in wanted if b in by_block for t in threads]
    return settings, notes


def _blocks(block_samples: int, n: int) -> np.ndarray:
    """n blocks of probe speech, (n, block_samples) float32, cycling 10 s of audio."""
    audio = probe_speech(10.0)
    per = audio.size // block_samples
    idx = np.arange(n) % per
    return np.ascontiguousarray(audio[: per * block_samples].reshape(per, block_samples)[idx])


def time_blocks(converter, blocks: np.ndarray, warmup: int) -> dict[str, np.ndarray]:
    """ns per block, each (n,) int64: "total" of converter.process, and, for the same block right
    after it, "frontend" (its StreamingLogMel and StreamingPitch) and "step" (its StepRunner.run).

    Interleaved block by block, so that both see the same machine: timed in separate
    passes, a change in background load between them would show up as a stage share.
    Calling the frontend and runner directly advances their state a second time per
    block, which changes the audio but not the cost (no data-dependent branches).
    """
    frontend, pitch, runner = converter.frontend, converter.pitch, converter.runner
    constants = {"emotion": converter.embedding}
    if converter.takes_prosody:
        constants["prosody"] = np.zeros(MOVE_SIZE, np.float32)
    for block in blocks[:warmup]:
        converter.process(block)
        runner.run(mel=frontend.process(block), pitch=pitch.process(block), **constants)
    out = {k: np.empty(len(blocks), np.int64) for k in ("total", "frontend", "step")}
    clock = time.perf_counter_ns
    for i, block in enumerate(blocks):
        t0 = clock()
        converter.process(block)
        t1 = clock()
        mel, features = frontend.process(block), pitch.process(block)
        t2 = clock()
        runner.run(mel=mel, pitch=features, **constants)
        out["total"][i], out["frontend"][i], out["step"][i] = t1 - t0, t2 - t1, clock() - t2
    return out


def summarize(ns: np.ndarray, block_ms: float) -> dict:
    """Percentiles, max and mean in ms, RTF and deadline misses of per-block times ns (n,)."""
    ms = ns / 1e6
    p = np.percentile(ms, PERCENTILES)
    return {**{f"p{q}_ms": float(v) for q, v in zip(PERCENTILES, p)}, "max_ms": float(ms.max()),
            "mean_ms": float(ms.mean()), "rtf": float(ms.mean() / block_ms),
            "deadline_misses": int((ms > block_ms).sum()), "blocks": int(ns.size)}


def stage_shares(total: np.ndarray, stages: dict[str, np.ndarray]) -> dict:
    """Per stage: mean, p50 and p99 ms, and its share of the whole block at the median.

    Shares use medians: a block preempted by another process (4 ms on a busy machine)
    lands in one stage at random and would move mean-based shares by tens of percent.
    rest = median(total) - the stages' medians (>= 0).
    """
    def ms(ns: np.ndarray) -> dict:
        return {"mean_ms": float(ns.mean() / 1e6), "p50_ms": float(np.median(ns) / 1e6),
                "p99_ms": float(np.percentile(ns, 99) / 1e6)}

    whole = float(np.median(total) / 1e6)
    out = {name: ms(ns) for name, ns in stages.items()}
    out["rest"] = {"p50_ms": max(0.0, whole - sum(s["p50_ms"] for s in out.values()))}
    for s in out.values():
        s["share"] = s["p50_ms"] / whole if whole > 0 else 0.0
    return out


def measure(cfg, setting: Setting, provider: str | None, n: int, warmup: int) -> tuple[dict, np.ndarray]:
    """One setting's summary and its raw per-block process() times (ns)."""
    from engine.pipeline import StreamingConverter

    conv = StreamingConverter(model_config(cfg, setting.model_dir, setting.threads, provider, setting.block_frames),
                              quiet=True)
    conv.set_embedding(np.random.default_rng(0).standard_normal(conv.manifest.embedding_dim).astype(np.float32))
    times = time_blocks(conv, _blocks(conv.block_samples, n), warmup)
    total = times.pop("total")
    spec = conv.spec
    result = {"model": str(setting.model_dir), "block_frames": spec.block_frames, "block_ms": spec.block_ms,
              "threads": setting.threads, "provider_requested": provider or "engine.yaml",
              "device": conv.sessions.device, "provider_notes": conv.sessions.notes,
              "algorithmic_latency_ms": conv.latency_ms, "warmup_blocks": warmup,
              "compute": summarize(total, spec.block_ms), "stages": stage_shares(total, times)}
    return result, total


def run(models: list[Path], threads: list[int], blocks: list[int] | None, provider: str | None, n: int,
        warmup: int = 200, config: str | None = None) -> tuple[dict, dict[int, np.ndarray]]:
    """Every setting measured: (report dict, raw ns per setting index)."""
    cfg = base_config(config)
    settings, notes = plan(models, threads, blocks)
    if not settings:
        raise EVCError("nothing to measure: " + "; ".join(notes))
    results, raw = [], {}
    for i, setting in enumerate(settings):
        result, raw[i] = measure(cfg, setting, provider, n, warmup)
        results.append(result)
    report = {"benchmark": "latency", "machine": machine(), "timer": "time.perf_counter_ns",
              "settings": results, "skipped": notes,
              "rest_is": "median(process) - median(frontend) - median(step); the stages are timed on the same "
                         "block right after process(), interleaved; shares are of median(process)"}
    return report, raw


def table(report: dict) -> str:
    header = ["block", "ms", "thr", "device", "alg.lat", "p50", "p95", "p99", "max", "RTF", "miss",
              "front%", "step%", "rest%"]
    rows = []
    for s in report["settings"]:
        c, st = s["compute"], s["stages"]
        rows.append([str(s["block_frames"]), f"{s['block_ms']:g}", str(s["threads"]), s["device"],
                     f"{s['algorithmic_latency_ms']:g}", *(f"{c[k]:.3f}" for k in ("p50_ms", "p95_ms", "p99_ms",
                                                                                     "max_ms")),
                     f"{c['rtf']:.4f}", f"{c['deadline_misses']}/{c['blocks']}",
                     *(f"{100 * st[k]['share']:.0f}" for k in ("frontend", "step", "rest"))])
    return text_table(header, rows)


def cmd(args) -> int:
    models = [Path(m) for m in args.model] if args.model else [default_model(base_config(args.config))]
    if args.n < MIN_BLOCKS:
        print(f"note: --n {args.n} < {MIN_BLOCKS}: p99 and max rest on few blocks")
    report, raw = run(models, args.threads, args.blocks, args.provider, args.n, args.warmup, args.config)
    out = Path(args.out)
    for note in report["skipped"]:
        print(f"note: {note}")
    print(machine_line(report["machine"]))
    print(f"per-block compute in ms over {args.n} blocks after {args.warmup} warm-up blocks "
          "(whole StreamingConverter.process); stage shares of its median")
    print(table(report))
    for note in dict.fromkeys(n for s in report["settings"] for n in s["provider_notes"]):
        print(f"note: {note}")
    png = latency_histograms(report, raw, out / "latency.png")
    print(f"wrote {write_json(out / 'latency.json', report)} and {png}")
    return 0
