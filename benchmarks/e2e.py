"""`evc bench e2e`: end-to-end delay of live conversion through a real audio server.

A private PulseAudio server (benchmarks.pulse) gives the engine a microphone (a FIFO
behind module-pipe-source) and a speaker (a null sink). Short noise bursts go into
the microphone once per `period`; the speaker's monitor is recorded; each burst's
delay is found by cross-correlation near where it should be. Two runs of the same
stack and the same live session (engine.live.LiveSession, default PulseAudio device):

* bypass: the converter passes its input through (delayed like the model), the
  stack's own latency;
* conversion: the model converts with an emotion embedding of a probe reference.

Where the converted audio keeps no trace of the burst's waveform the delay is taken
from the correlation of amplitude envelopes (1 ms resolution) instead. Either must
peak at a normalised correlation >= MIN_CORRELATION, MIN_MARGIN above any value
GUARD_MS away; a burst found by neither is counted as missed (an untrained model
keeps no trace of it), never guessed. Under/overruns, late and dropped blocks come from the live session.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.models import base_config, default_model, model_config
from benchmarks.report import machine, machine_line, text_table, write_json
from benchmarks.signals import click, click_train, probe_speech
from engine.errors import EVCError

SETTLE_S = 2.5
"""Silence before the bursts, so that they measure the steady state: a duplex PortAudio
stream on ALSA's pulse plugin was seen to make its first callback 1.8 s after start()."""
MAX_DELAY_S = 3.0
"""A burst's waveform is searched for from its capture time to this much later; its
envelope, alike for all bursts, only up to 0.95 periods later."""
TAIL_S = MAX_DELAY_S
"""Recording goes on this long after the last burst, so that every burst's window is recorded."""
MIN_CORRELATION = 0.5
MIN_MARGIN = 0.2
GUARD_MS = 20.0
ENVELOPE_MS = 1.0


def _normalised_xcorr(x: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson-like correlation of template with every window of x: (len(x) - len(template) + 1,)."""
    m = template.size
    dots = np.correlate(x, template, mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    norms = np.sqrt(np.maximum(energy[m:] - energy[:-m], 1e-20)) * np.linalg.norm(template)
    return dots / norms


def _envelope(x: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(np.abs(x), np.ones(width) / width, mode="same")


def _peak(c: np.ndarray, guard: int) -> int | None:
    """Index of c's maximum when it is at least MIN_CORRELATION and beats every value more
    than `guard` samples away by MIN_MARGIN (one burst, not a pattern that fits anywhere)."""
    i = int(np.argmax(c))
    rest = np.concatenate([c[: max(0, i - guard)], c[i + guard + 1:]])
    if c[i] < MIN_CORRELATION or (rest.size and c[i] - rest.max() < MIN_MARGIN):
        return None
    return i


def locate(segment: np.ndarray, template: np.ndarray, rate: int, envelope_span: int) -> tuple[int, str] | None:
    """(offset of template in segment, 'waveform' or 'envelope'), or None when neither finds it.

    The envelope, alike for every burst, is only searched in segment[:envelope_span]
    (less than a period, so that it cannot mistake the next burst for this one).
    """
    guard = int(rate * GUARD_MS / 1000)
    if segment.size >= 2 * template.size:
        i = _peak(_normalised_xcorr(segment, template), guard)
        if i is not None:
            return i, "waveform"
    segment = segment[:envelope_span]
    width = max(1, int(rate * ENVELOPE_MS / 1000))
    if segment.size < 2 * (template.size + 2 * width):
        return None
    pad = np.pad(template, width)
    env, tpl = _envelope(segment, width), _envelope(pad, width)
    i = _peak(_normalised_xcorr(env - env.mean(), tpl - tpl.mean()), guard)
    return None if i is None else (i + width, "envelope")


def burst_delays(recording: np.ndarray, t_first: float, capture_times: list[float], rate: int,
                 period: float) -> list[dict]:
    """Per burst k (click(k) captured at capture_times[k]): its delay in ms and how it was found,
    or None when missed."""
    found = []
    for k, t in enumerate(capture_times):
        start = max(0, int(np.floor((t - t_first) * rate)))
        segment = recording[start:start + int(MAX_DELAY_S * rate)]
        hit = locate(segment, click(k, rate), rate, int(0.95 * period * rate))
        if hit is None:
            found.append({"capture_s": t, "delay_ms": None, "method": None})
            continue
        offset, method = hit
        found.append({"capture_s": t, "delay_ms": 1000.0 * (t_first + (start + offset) / rate - t), "method": method})
    return found


def _delay_summary(bursts: list[dict]) -> dict:
    delays = np.array([b["delay_ms"] for b in bursts if b["delay_ms"] is not None])
    methods = sorted({b["method"] for b in bursts if b["method"]})
    out = {"bursts": len(bursts), "found": int(delays.size), "method": "+".join(methods) or None}
    if delays.size:
        p = np.percentile(delays, [5, 50, 95])
        out.update(median_ms=float(p[1]), p5_ms=float(p[0]), p95_ms=float(p[2]), min_ms=float(delays.min()),
                   max_ms=float(delays.max()))
    return out


def run_once(pa, session, seconds: float, period: float) -> dict:
    """One live run with bursts through the microphone: delays and the session's counters."""
    signal, starts = click_train(seconds, period, pa.rate)
    recorder = pa.record()
    try:
        session.start()
        try:
            time.sleep(SETTLE_S)
            first = pa.mic.play(signal)
            pa.mic.wait()
            time.sleep(TAIL_S)
        finally:
            stats = session.stop()
    finally:
        recording = recorder.stop()
    captures = [pa.mic.capture_time(first + int(s)) for s in starts]
    bursts = burst_delays(recording, recorder.started_at, captures, pa.rate, period)
    return {"mode": "bypass" if stats["bypass"] else "conversion", "seconds": seconds,
            "delay": _delay_summary(bursts), "bursts": bursts, "xruns": stats["xruns"], "late": stats["late"],
            "dropped": stats["dropped"], "blocks": stats["blocks"], "engine_estimate_ms": stats["latency_ms"],
            "stream_latency_ms": list(stats["stream_latency_ms"]), "devices": list(stats["devices"]),
            "duplex": stats["duplex"], "mic_late_writes": pa.mic.late_writes}


def _converter(cfg):
    """The engine's converter with the embedding of a probe reference, so conversion does real work."""
    from engine.bank import EmotionEncoder
    from engine.pipeline import StreamingConverter

    conv = StreamingConverter(cfg, quiet=True)
    conv.set_embedding(EmotionEncoder(conv.sessions, conv.manifest).encode(probe_speech(3.0, seed=7)).embedding, 0)
    return conv


def run(model_dir: Path, seconds: float, period: float = 1.0, config: str | None = None) -> dict:
    """Bypass then conversion through a private PulseAudio server; the report dict."""
    from benchmarks.pulse import PulseServer
    from engine.live import LiveSession

    cfg = model_config(base_config(config), model_dir)
    conv = _converter(cfg)
    runs = []
    with PulseServer(rate=conv.spec.sample_rate) as pa:
        pa.activate()
        session = LiveSession(conv, cfg, input_device="pulse", output_device="pulse")
        for bypass in (True, False):
            conv.bypass = bypass
            runs.append(run_once(pa, session, seconds, period))
    return {"benchmark": "e2e", "machine": machine(), "model": str(model_dir), "block_ms": conv.spec.block_ms,
            "algorithmic_latency_ms": conv.latency_ms, "period_s": period, "runs": runs,
            "added_by_conversion_ms": _difference(runs)}


def _difference(runs: list[dict]) -> float | None:
    medians = [r["delay"].get("median_ms") for r in runs]
    return None if None in medians else medians[1] - medians[0]


def table(report: dict) -> str:
    header = ["mode", "found", "median", "p5", "p95", "max", "engine est.", "xruns", "late", "dropped", "method"]
    rows = []
    for r in report["runs"]:
        d = r["delay"]
        ms = [f"{d[k]:.1f}" if k in d else "-" for k in ("median_ms", "p5_ms", "p95_ms", "max_ms")]
        rows.append([r["mode"], f"{d['found']}/{d['bursts']}", *ms, f"{r['engine_estimate_ms']:.1f}",
                     str(r["xruns"]["total"]), str(r["late"]), str(r["dropped"]), d["method"] or "-"])
    return text_table(header, rows)


def why_not(model: Path | None) -> str | None:
    """Why the benchmark cannot run on this machine (no PulseAudio, no PortAudio), or None."""
    from benchmarks.pulse import unavailable

    missing = unavailable()
    if missing:
        return missing
    try:
        from engine.devices import sounddevice

        sounddevice()
    except EVCError as e:
        return str(e)
    return None


def cmd(args) -> int:
    from benchmarks.plots import e2e_figure

    model = Path(args.model) if args.model else default_model(base_config(args.config))
    out = Path(args.out)
    reason = why_not(model)
    if reason:
        print(f"evc bench e2e: skipped: {reason}")
        write_json(out / "e2e.json", {"benchmark": "e2e", "skipped": reason, "machine": machine()})
        return 0
    report = run(model, args.seconds, args.period, args.config)
    print(machine_line(report["machine"]))
    print(f"delay in ms from microphone capture to speaker playback, {args.seconds:g} s per mode, "
          f"a burst every {args.period:g} s; block {report['block_ms']:g} ms, algorithmic latency "
          f"{report['algorithmic_latency_ms']:g} ms")
    print(table(report))
    if report["added_by_conversion_ms"] is not None:
        print(f"conversion adds {report['added_by_conversion_ms']:.1f} ms to the bypass path (medians)")
    png = e2e_figure(report, out / "e2e.png")
    print(f"wrote {write_json(out / 'e2e.json', report)} and {png}")
    return 0
