"""`evc bench e2e`: end-to-end delay of live conversion through a real audio server.

A private audio server (benchmarks.servers: PulseAudio, PipeWire or JACK) gives the
engine a microphone and a speaker it can record. Short noise bursts go into the
microphone once per `period`; the speaker is recorded; each burst's delay is found
by cross-correlation near where it should be. Three modes through the same stack
and the same live session (engine.live.LiveSession):

* wire: the live session passes each block straight through, no model: the audio
  stack's own delay (server, PortAudio, the session's block and its one block of
  output headroom);
* bypass: the converter's bypass, its input through a delay line as long as the
  model's lookahead and overlap (what the b key of `evc live` plays);
* conversion: the model converts with an emotion embedding of a probe reference.

conversion - wire is the engine's own share of the delay (lookahead, vocoder
overlap, the model's smearing of onsets); conversion - bypass what is left beyond
the algorithmic latency.

The three are interleaved burst by burst in one stream (Interleaved), because a
stream's latency through a server varies by tens of ms from one opening to the next.

Where the converted audio keeps no trace of the burst's waveform the delay is taken
from the correlation of amplitude envelopes (ENVELOPE_MS smoothing) instead. The
waveform must peak at a normalised correlation >= MIN_CORRELATION, the envelope
(a vocoder redraws the burst's noise and smears its edges over an analysis window)
at >= MIN_ENVELOPE_CORRELATION, both MIN_MARGIN above any value GUARD_MS away; a
burst found by neither is counted as missed, never guessed. Under/overruns, late
and dropped blocks come from the live session.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.models import base_config, default_model, model_config
from benchmarks.report import machine, machine_line, text_table, write_json
from benchmarks.servers import DEFAULT_SETUP, LiveSetup
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
MIN_ENVELOPE_CORRELATION = 0.3
"""The bundled model's conversion of a 20 ms burst peaks at 0.45-0.48 against the burst's
envelope (offline, 10 ms smoothing), with nothing else above 0.06."""
MIN_MARGIN = 0.2
GUARD_MS = 20.0
ENVELOPE_MS = 20.0
"""Offline, 40 bursts through the bundled model's streaming converter were found 40/40 with
20 ms smoothing (5-95 % spread 3 ms), 37/40 with 10 ms and 22/40 with 5 ms."""


QUIET_WINDOW = 1e-4
"""Windows with less energy than this fraction of the template's (-40 dB) count as that loud
when normalised: a float audio path's near-silence (a vocoder's 1e-8 floor through JACK)
would otherwise correlate with anything."""


def _normalised_xcorr(x: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson-like correlation of template with every window of x: (len(x) - len(template) + 1,)."""
    m = template.size
    dots = np.correlate(x, template, mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    t_energy = float(np.dot(template, template))
    floor = max(QUIET_WINDOW * t_energy, 1e-20)
    norms = np.sqrt(np.maximum(energy[m:] - energy[:-m], floor) * t_energy)
    return dots / norms


def _envelope(x: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(np.abs(x), np.ones(width) / width, mode="same")


def _peak(c: np.ndarray, guard: int, floor: float = MIN_CORRELATION) -> int | None:
    """Index of c's maximum when it is at least `floor` and beats every value more
    than `guard` samples away by MIN_MARGIN (one burst, not a pattern that fits anywhere)."""
    i = int(np.argmax(c))
    rest = np.concatenate([c[: max(0, i - guard)], c[i + guard + 1:]])
    if c[i] < floor or (rest.size and c[i] - rest.max() < MIN_MARGIN):
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
    i = _peak(_normalised_xcorr(env - env.mean(), tpl - tpl.mean()), guard, MIN_ENVELOPE_CORRELATION)
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


def run_once(srv, session, seconds: float, period: float) -> tuple[dict, list[dict]]:
    """One live run with bursts through the microphone: (the session's stats, per burst its delay)."""
    signal, starts = click_train(seconds, period, srv.rate)
    recorder = srv.record()
    try:
        session.start()
        try:
            _wait(session, SETTLE_S)
            first = srv.mic.play(signal)
            while not srv.mic.wait(timeout=0.5):
                session.check()
            _wait(session, TAIL_S)
        finally:
            stats = session.stop()
    finally:
        recording = recorder.stop()
    captures = [srv.mic.capture_time(first + int(s)) for s in starts]
    return stats, burst_delays(recording, recorder.started_at, captures, srv.rate, period)


def _wait(session, seconds: float) -> None:
    """Sleep `seconds`, checking every half second that the session's audio still runs."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.5, left))
        session.check()


def converter_with_probe(cfg):
    """The engine's converter with the embedding of a probe reference, so conversion does real work."""
    from engine.bank import EmotionEncoder
    from engine.pipeline import StreamingConverter

    conv = StreamingConverter(cfg, quiet=True)
    encoder = EmotionEncoder(conv.sessions, conv.manifest)
    conv.set_embedding(encoder.encode(encoder.analyse(probe_speech(3.0, seed=7))).embedding, 0)
    return conv


MODES = ("wire", "bypass", "conversion")
ONSET_LEVEL = 0.05
"""A block peaking above this after at least ONSET_GAP_BLOCKS quieter ones starts a burst
(bursts peak at 0.8; the microphone is digital silence between them)."""
ONSET_GAP_BLOCKS = 5


class Interleaved:
    """The converter the e2e session runs: burst k plays through mode MODES[k % 3].

    The model converts every block whatever the mode, so its state is always warm:
    wire plays the input block as it came (the audio stack's own delay), bypass the
    input through a delay line as long as the model's lookahead and overlap, conversion
    the model's output. The mode changes on a burst's first block, in the silence the
    burst breaks, so no crossfade is needed; one stream serves all three, so they share
    the same server and PortAudio latency, which differ from one stream opening to the next.
    """

    bypass = False

    def __init__(self, conv):
        from engine.pipeline import DelayLine

        self.conv, self.spec, self.block_samples = conv, conv.spec, conv.block_samples
        self._delay = DelayLine(conv.delay_samples, conv.block_samples)
        self._out = np.zeros(self.block_samples, np.float32)
        self._delayed = np.zeros(self.block_samples, np.float32)
        self.reset()

    def reset(self) -> None:
        self.conv.reset()
        self._delay.reset()
        self.bursts, self._quiet = 0, ONSET_GAP_BLOCKS
        self.onsets: list[tuple[float, str]] = []  # (time.monotonic() when seen, the mode it played through)

    @property
    def mode(self) -> str:
        return MODES[(self.bursts - 1) % len(MODES)] if self.bursts else MODES[0]

    def process(self, block: np.ndarray) -> np.ndarray:
        if float(np.abs(block).max()) > ONSET_LEVEL:
            if self._quiet >= ONSET_GAP_BLOCKS:
                self.bursts += 1
                self.onsets.append((time.monotonic(), self.mode))
            self._quiet = 0
        else:
            self._quiet += 1
        wet = self.conv.process(block)
        self._delay.process(block, self._delayed)  # every block, so a switch to bypass finds it current
        np.copyto(self._out, {"wire": block, "bypass": self._delayed, "conversion": wet}[self.mode])
        return self._out

    def stats(self) -> dict:
        return self.conv.stats()


def run(model_dir: Path, seconds: float, period: float = 1.0, config: str | None = None,
        setup: LiveSetup = DEFAULT_SETUP) -> dict:
    """Wire, bypass and conversion, burst by burst in one live stream through a private audio server."""
    from benchmarks.servers import audio_server
    from engine.live import LiveSession

    cfg = model_config(base_config(config), model_dir, block_frames=setup.block_frames)
    conv = converter_with_probe(cfg)
    switch = Interleaved(conv)
    with audio_server(setup.server, conv.spec.sample_rate, setup.server_period) as srv:
        live_cfg = setup.engine_config(srv, cfg)
        session = LiveSession(switch, live_cfg, srv.input_device, srv.output_device)
        stats, bursts = run_once(srv, session, len(MODES) * seconds, period)
        mic = {"late_writes": srv.mic.late_writes, "max_backlog_ms": srv.mic.max_backlog_ms}
    played = modes_played(bursts, switch.onsets, period)
    modes = [{"mode": m, "delay": _delay_summary(b), "bursts": b}
             for m in MODES for b in [[x for x, y in zip(bursts, played) if y == m]]]
    return {"benchmark": "e2e", "machine": machine(), "model": str(model_dir), "server": setup.server,
            "server_period": setup.server_period, "block_ms": conv.spec.block_ms,
            "callbacks_per_block": live_cfg.audio.callbacks_per_block,
            "headroom_blocks": session.headroom // live_cfg.audio.callbacks_per_block,
            "algorithmic_latency_ms": conv.latency_ms, "period_s": period, "seconds_per_mode": seconds,
            "bursts_seen_by_engine": sum(m is not None for m in played), "bursts_played": len(bursts),
            "modes": modes, "added_ms": added_delays(modes),
            "session": _session_summary(stats, mic)}


def modes_played(bursts: list[dict], onsets: list[tuple[float, str]], period: float) -> list[str | None]:
    """Per burst, the mode of the engine's first onset within half a period after its capture, or None.

    Taken from the engine's log, not from the burst's index: a burst the engine never
    saw (its block dropped under load) would otherwise shift every later burst's mode.
    """
    times = np.array([t for t, _ in onsets])
    played = []
    for b in bursts:
        i = int(np.searchsorted(times, b["capture_s"]))
        ok = i < times.size and times[i] - b["capture_s"] < period / 2
        played.append(onsets[i][1] if ok else None)
    return played


def _session_summary(stats: dict, mic: dict) -> dict:
    return {"xruns": stats["xruns"], "late": stats["late"], "dropped": stats["dropped"], "blocks": stats["blocks"],
            "engine_estimate_ms": stats["latency_ms"], "stream_latency_ms": list(stats["stream_latency_ms"]),
            "devices": list(stats["devices"]), "duplex": stats["duplex"], "notes": stats["notes"],
            "mic_late_writes": mic["late_writes"], "mic_max_backlog_ms": mic["max_backlog_ms"]}


def added_delays(modes: list[dict]) -> dict:
    """Median delay differences: conversion - wire (the engine's share), conversion - bypass, bypass - wire."""
    medians = {m["mode"]: m["delay"].get("median_ms") for m in modes}

    def diff(a: str, b: str) -> float | None:
        return None if medians.get(a) is None or medians.get(b) is None else medians[a] - medians[b]

    return {"conversion-wire": diff("conversion", "wire"), "conversion-bypass": diff("conversion", "bypass"),
            "bypass-wire": diff("bypass", "wire")}


def table(report: dict) -> str:
    header = ["mode", "found", "median", "p5", "p95", "max", "method"]
    rows = []
    for m in report["modes"]:
        d = m["delay"]
        ms = [f"{d[k]:.1f}" if k in d else "-" for k in ("median_ms", "p5_ms", "p95_ms", "max_ms")]
        rows.append([m["mode"], f"{d['found']}/{d['bursts']}", *ms, d["method"] or "-"])
    s = report["session"]
    return text_table(header, rows) + (
        f"\nsession: {s['blocks']} blocks, xruns {s['xruns']['total']}, late {s['late']}, dropped {s['dropped']}, "
        f"engine estimate {s['engine_estimate_ms']:.1f} ms, "
        f"{report['bursts_seen_by_engine']} of {report['bursts_played']} bursts seen by the engine")


def why_not(server: str = "pulse") -> str | None:
    """Why the live benchmarks cannot run through `server` on this machine, or None."""
    from benchmarks.servers import unavailable

    missing = unavailable(server)
    if missing:
        return missing
    try:
        from engine.devices import sounddevice

        sounddevice()
    except EVCError as e:
        return str(e)
    return None


def skipped(bench: str, server: str, out: Path) -> bool:
    """True (said, and written to OUT/BENCH.json) when live benchmark `bench` cannot run through `server`."""
    reason = why_not(server)
    if reason:
        print(f"evc bench {bench}: skipped: {reason}")
        write_json(out / f"{bench}.json", {"benchmark": bench, "skipped": reason, "machine": machine()})
    return reason is not None


def cmd(args) -> int:
    from benchmarks.plots import e2e_figure

    model = Path(args.model) if args.model else default_model(base_config(args.config))
    out = Path(args.out)
    if skipped("e2e", args.server, out):
        return 0
    report = run(model, args.seconds, args.period, args.config, LiveSetup.from_args(args))
    print(machine_line(report["machine"]))
    print(f"delay in ms from microphone capture to speaker playback through {args.server}, {args.seconds:g} s per "
          f"mode, a burst every {args.period:g} s; block {report['block_ms']:g} ms in {report['callbacks_per_block']} "
          f"callback(s), {report['headroom_blocks']} block(s) of headroom, algorithmic latency "
          f"{report['algorithmic_latency_ms']:g} ms")
    print(table(report))
    print("engine's share (medians): " + ", ".join(
        f"{k} {'-' if v is None else f'{v:.1f} ms'}" for k, v in report["added_ms"].items()))
    png = e2e_figure(report, out / "e2e.png")
    print(f"wrote {write_json(out / 'e2e.json', report)} and {png}")
    return 0
