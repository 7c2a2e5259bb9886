"""`evc bench soak`: live conversion through a private audio server for minutes on end.

The e2e harness (a private server, a FIFO microphone, a null-sink speaker) runs the
engine's LiveSession with conversion on while a speech-like loop plays into the
microphone. Every TICK_S the per-block compute times are collected (the converter
keeps the last 1024, far more than a tick's worth); at the end of every interval (a
minute by default) one record is written: xruns by kind, late and dropped blocks,
block-time p50/p99/max, process RSS, the Python heap (tracemalloc) and open file
descriptors. `--load N` runs N busy processes beside it, as on a user's machine.

The verdict fails the command on any xrun, late or dropped block, or memory (RSS or
Python heap) growing more than GROWTH_LIMIT_MIB above its level at the end of the
first interval, which absorbs start-up allocation (ONNX Runtime's arena, numba).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from benchmarks.models import base_config, default_model, model_config
from benchmarks.report import machine, machine_line, write_json
from benchmarks.servers import DEFAULT_SETUP, LiveSetup
from benchmarks.signals import probe_speech

TICK_S = 0.25
"""Every tick the microphone is fed, the session checked and new block times collected
(25 blocks of 10 ms: far inside the converter's window of 1024)."""
SPEECH_S = 10.0
"""Length of the speech loop played into the microphone."""
FEED_S = 1.0
"""The microphone's queue gets the loop's next FEED_S seconds whenever it holds less: a short
queue, so that its size (numpy memory, which tracemalloc counts) barely moves the heap reading."""
GROWTH_LIMIT_MIB = 1.0
MIB = 1024.0 * 1024.0


@dataclass
class Record:
    """One interval of a soak run."""

    minute: int
    seconds: float
    blocks: int
    xruns: int
    input_overruns: int
    output_overruns: int
    portaudio_flags: int
    late: int
    dropped: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mib: float
    heap_mib: float
    fds: int


def verdict(records: list[Record], growth_limit_mib: float = GROWTH_LIMIT_MIB) -> list[str]:
    """Why the run fails, one reason per line; [] when it passes.

    Any xrun, late or dropped block fails it, and so does RSS or Python heap rising more
    than growth_limit_mib above its value at the end of the first interval.
    """
    if not records:
        return ["no interval completed"]
    reasons = []
    for name in ("xruns", "late", "dropped"):
        bad = [r.minute for r in records if getattr(r, name)]
        if bad:
            total = sum(getattr(r, name) for r in records)
            reasons.append(f"{total} {name.replace('xruns', 'xrun(s)')} (in interval(s) {_ranges(bad)})")
    for name, label in (("rss_mib", "RSS"), ("heap_mib", "Python heap")):
        first = getattr(records[0], name)
        peak = max(getattr(r, name) for r in records)
        if peak - first > growth_limit_mib:
            reasons.append(f"{label} grew {peak - first:.2f} MiB after the first interval "
                           f"({first:.1f} -> {peak:.1f} MiB; limit {growth_limit_mib:g})")
    return reasons


def _ranges(minutes: list[int]) -> str:
    shown = ", ".join(str(m) for m in minutes[:8])
    return shown + (f" and {len(minutes) - 8} more" if len(minutes) > 8 else "")


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc; 0 where it does not exist)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


@contextmanager
def busy(processes: int):
    """`processes` spinning Python processes for the duration (the --load option)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


class Counters:
    """Deltas of a LiveSession's counters and the converter's block times since the last take()."""

    def __init__(self, session):
        self.session = session
        self._last = self._now()
        self._times: list[np.ndarray] = []
        self._count = session.converter.times_since(0)[1]
        self._t = time.monotonic()

    def _now(self) -> dict:
        s = self.session
        x = s.xruns()
        return {"blocks": s.blocks, "xruns": x["total"], "input_overruns": x["input_overruns"],
                "output_overruns": x["output_overruns"], "portaudio_flags": sum(x["portaudio"].values()),
                "late": s.late, "dropped": s.dropped + s.trimmed}

    def poll(self) -> None:
        ms, self._count = self.session.converter.times_since(self._count)
        self._times.append(ms)

    def take(self, minute: int) -> Record:
        self.poll()
        now, t = self._now(), time.monotonic()
        delta = {k: now[k] - self._last[k] for k in now}
        ms = np.concatenate(self._times) if self._times else np.zeros(1)
        p50, p99 = np.percentile(ms, [50, 99]) if ms.size else (0.0, 0.0)
        rec = Record(minute=minute, seconds=round(t - self._t, 3), **delta, p50_ms=float(p50), p99_ms=float(p99),
                     max_ms=float(ms.max()), rss_mib=rss_mib(), heap_mib=tracemalloc.get_traced_memory()[0] / MIB,
                     fds=open_fds())
        self._last, self._times, self._t = now, [], t
        return rec


class SpeechLoop:
    """Feeds the microphone a speech-like loop, FEED_S seconds at a time."""

    def __init__(self, mic):
        self.mic = mic
        self.speech = probe_speech(SPEECH_S, mic.rate, seed=11)
        self.piece = int(FEED_S * mic.rate)
        self.pos = 0

    def feed(self) -> None:
        if self.mic.queued_samples < self.piece:
            self.mic.play(np.take(self.speech, np.arange(self.pos, self.pos + self.piece), mode="wrap"))
            self.pos = (self.pos + self.piece) % self.speech.size


def soak(session, mic, intervals: int, interval_s: float, on_record=None) -> list[Record]:
    """Run `session` (started here, stopped here) for intervals x interval_s seconds; one Record each."""
    loop = SpeechLoop(mic)
    records: list[Record] = []
    session.start()
    try:
        counters = Counters(session)
        for minute in range(1, intervals + 1):
            end = time.monotonic() + interval_s
            while (left := end - time.monotonic()) > 0:
                loop.feed()
                session.check()
                time.sleep(min(TICK_S, left))
                counters.poll()
            records.append(counters.take(minute))
            if on_record:
                on_record(records[-1])
    finally:
        session.stop()
    return records


def run(model_dir: Path, minutes: float, interval_s: float, load: int, config: str | None,
        setup: LiveSetup = DEFAULT_SETUP, on_record=None) -> dict:
    """A soak run through a private server; the report dict (records as dicts, verdict)."""
    from benchmarks.e2e import converter_with_probe
    from benchmarks.servers import audio_server
    from engine.live import LiveSession

    cfg = model_config(base_config(config), model_dir, block_frames=setup.block_frames)
    conv = converter_with_probe(cfg)
    intervals = max(1, round(minutes * 60.0 / interval_s))
    tracemalloc.start()
    try:
        with busy(load), audio_server(setup.server, conv.spec.sample_rate, setup.server_period) as srv:
            live_cfg = setup.engine_config(srv, cfg)
            session = LiveSession(conv, live_cfg, srv.input_device, srv.output_device)
            records = soak(session, srv.mic, intervals, interval_s, on_record)
            stats = session.stats()
    finally:
        tracemalloc.stop()
    return {"benchmark": "soak", "machine": machine(), "model": str(model_dir), "server": setup.server, "load": load,
            "block_ms": conv.spec.block_ms, "callbacks_per_block": live_cfg.audio.callbacks_per_block,
            "interval_s": interval_s, "records": [asdict(r) for r in records],
            "verdict": verdict(records), "devices": list(stats["devices"]), "notes": stats["notes"]}


def write_csv(records: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(Record)])
        writer.writeheader()
        writer.writerows(records)
    return path


def line(r: Record) -> str:
    return (f"[{r.minute:3d}] {r.blocks} blocks, xruns {r.xruns}, late {r.late}, dropped {r.dropped}; "
            f"block p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} max {r.max_ms:.2f} ms; RSS {r.rss_mib:.1f} MiB, "
            f"heap {r.heap_mib:.2f} MiB, fds {r.fds}")


def summary(report: dict) -> str:
    recs = [Record(**r) for r in report["records"]]
    totals = {k: sum(getattr(r, k) for r in recs) for k in ("blocks", "xruns", "late", "dropped")}
    rss = [r.rss_mib for r in recs]
    heap = [r.heap_mib for r in recs]
    worst = max(r.max_ms for r in recs)
    head = (f"soak {report['server']} load {report['load']}: {len(recs)} x {report['interval_s']:g} s, "
            f"{totals['blocks']} blocks of {report['block_ms']:g} ms; xruns {totals['xruns']}, late {totals['late']}, "
            f"dropped {totals['dropped']}; worst block {worst:.2f} ms; RSS {rss[0]:.1f} -> {max(rss):.1f} MiB, "
            f"heap {heap[0]:.2f} -> {max(heap):.2f} MiB after interval 1")
    return head + ("; PASS" if not report["verdict"] else "; FAIL: " + "; ".join(report["verdict"]))


def cmd(args) -> int:
    from benchmarks.e2e import skipped
    from benchmarks.plots import soak_figure

    model = Path(args.model) if args.model else default_model(base_config(args.config))
    out = Path(args.out)
    if skipped("soak", args.server, out):
        return 0
    print(machine_line(machine()), flush=True)
    report = run(model, args.minutes, args.interval, args.load, args.config, LiveSetup.from_args(args),
                 on_record=lambda r: print(line(r), flush=True))
    csv_path = write_csv(report["records"], out / "soak.csv")
    png = soak_figure(report, out / "soak.png")
    print(f"wrote {write_json(out / 'soak.json', report)}, {csv_path} and {png}")
    print(summary(report))
    return 1 if report["verdict"] else 0
