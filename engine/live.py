"""Live conversion: microphone → converter → speaker through PortAudio.

    PortAudio callback (copies only)          worker thread (all the math)
    indata ──► input ring ───────────────────► [resample to model rate] ─► converter.process
    outdata ◄── output ring ◄───────────────── [resample to device rate] ◄┘
            └─ late: dry input or silence, counted; its converted block is skipped later

The callback never allocates a buffer, takes a lock, does I/O or calls the model: it
copies between the PortAudio buffers and preallocated rings and counts what went
wrong. The worker polls the input ring (a short sleep when it holds less than one
block: an Event would make the callback take the Event's lock).

Latency stays bounded. At most `audio.max_queued_blocks` blocks wait for the worker:
older ones are dropped (counted). The output ring starts with one block of silence,
so a worker that answers within a block never starves the callback; a block that is
not ready when the callback needs it is played dry (or silent) and counted `late`,
and the worker skips its converted version when it arrives, so lateness never adds
delay (where the input itself stalled there is no such version: the worker tops the
output ring up to its headroom instead).

Start-up: PortAudio's ALSA host API through PulseAudio may start capturing up to
a second before the first callback; a duplex stream would keep that backlog as latency
for good. So a duplex stream whose input lags is reopened as two streams, the output
started first and the input only once output callbacks are paced. With two streams
the output callback plays silence (not counted) until the first input arrives, and
discards a block when the queue grows (two devices' clocks drift apart).

Rates: the stream runs at the model's rate (16 kHz) when the device accepts it;
otherwise at the device's default rate, with a streaming polyphase resampler in the
worker (never in the callback) on both edges.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Union

import numpy as np

from engine.config import EngineConfig
from engine.devices import Device, abandon_portaudio, resolve_device, server_device, sounddevice
from engine.errors import EVCError
from engine.ring import RingBuffer

FLAG_NAMES = ("input_underflow", "input_overflow", "output_underflow", "output_overflow", "priming_output")
"""PortAudio's callback status flags, counted per callback in which each was set."""
RING_SLACK_BLOCKS = 4
"""Ring capacity beyond max_queued_blocks, so the worker's drop policy acts before a ring overruns."""
TRIM_ABOVE_BLOCKS = 3
"""Separate streams: the output callback discards a block when more than this many wait beyond its own."""
STARTUP_TIMEOUT_S = 2.0
"""Longest wait for a stream to settle at start (first blocks, paced callbacks)."""
SETTLE_BLOCKS = 5
"""Blocks a duplex stream runs before its input lag is judged."""
BACKLOG_BLOCKS = 4
"""Input lag beyond PortAudio's reported input latency that makes a duplex stream reopen as two."""
SERVER_HEADROOM = {"pipewire": 2}
"""Least output headroom (blocks) per audio.server: through PipeWire's PulseAudio interface
(ALSA's pulse plugin, PipeWire 0.3.65) 20 ms output callbacks come two at a time every 32 ms,
and with one block of headroom 109 of 650 blocks were late in a 13 s run (none with two)."""
STALL_S = 2.0
"""No audio callback for this long means the device (or its audio server) went away."""
CLOSE_TIMEOUT_S = 3.0
"""Longest wait for PortAudio to close a stream whose device went away (it can block for good)."""


class StreamResampler:
    """Streaming rational resampler, (n,) float32 chunks of any length in, what is due out.

    Polyphase FIR: a Kaiser-windowed sinc (beta 8, 12 zero crossings each side at the
    lower rate, cutoff at 0.95 x the lower Nyquist frequency). Measured at 48 -> 16 kHz:
    flat (< 0.01 dB) to 0.7 x Nyquist (5.6 kHz), -0.15 dB at 0.8, -2.6 dB at 0.9,
    -6 dB at 0.95; content just above Nyquist folds back attenuated by >= 21 dB (8.4 kHz),
    >= 35 dB (8.8 kHz), ~90 dB further out. Good for speech; not a mastering resampler.
    Causal: it delays by half the filter (0.75 ms at 16 kHz). State is the last taps-1
    input samples and the sample counters, so chunking never changes the result.
    Allocates per call: it runs in the worker, never in the callback.
    """

    ZERO_CROSSINGS = 12
    BETA = 8.0

    def __init__(self, in_rate: int, out_rate: int):
        ratio = Fraction(int(out_rate), int(in_rate))
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.phases = self._design()
        self.taps = self.phases.shape[1]
        self._history = np.zeros(self.taps - 1, np.float32)
        self._consumed = 0  # input samples seen
        self._produced = 0  # output samples made

    def _design(self) -> np.ndarray:
        """(up, taps) polyphase matrix: row p holds h[p + j*up], j = 0..taps-1."""
        up, down = self.up, self.down
        half = self.ZERO_CROSSINGS * max(up, down)
        n = np.arange(2 * half + 1) - half
        cutoff = 0.95 / (2 * max(up, down))  # cycles per sample at the upsampled rate
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(n.size, self.BETA)
        h *= up / h.sum()  # unit gain at DC after zero-stuffing by `up`
        taps = -(-h.size // up)
        padded = np.zeros(taps * up)
        padded[:h.size] = h
        return padded.reshape(taps, up).T.astype(np.float32)

    @property
    def delay(self) -> float:
        """Group delay in output samples."""
        return (self.ZERO_CROSSINGS * max(self.up, self.down)) / self.down

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed (n,) samples; returns the (m,) output samples they complete."""
        buf = np.concatenate([self._history, np.asarray(x, np.float32)])
        end = self._consumed + x.size
        last = -(-(end * self.up) // self.down)  # outputs whose newest input sample has arrived
        m = np.arange(self._produced, last, dtype=np.int64)
        pos = m * self.down
        newest = pos // self.up  # global index of the newest input sample each output uses
        local = newest - (self._consumed - (self.taps - 1))
        window = buf[local[:, None] - np.arange(self.taps)[None, :]]
        y = np.einsum("ij,ij->i", window, self.phases[pos % self.up]).astype(np.float32)
        self._history = buf[buf.size - (self.taps - 1):].copy()
        self._consumed, self._produced = end, int(last)
        return y


@dataclass(frozen=True)
class StreamPlan:
    """How the stream is opened: devices, device rates, samples per callback, one stream or two."""

    input: Device
    output: Device
    in_rate: int
    out_rate: int
    in_block: int
    out_block: int
    duplex: bool


def plan_streams(sd, model_rate: int, block: int, input_device, output_device, server: str = "auto",
                 callbacks: int = 1) -> StreamPlan:
    """Resolve devices (None: audio.server's) and pick each side's rate: the model's if the device
    takes it, else its default; each callback carries 1/callbacks of a model block."""
    if block % callbacks:
        raise EVCError(f"audio.callbacks_per_block = {callbacks} does not divide the model's block of "
                       f"{block} samples")
    block //= callbacks
    inp = resolve_device(input_device, "input") if input_device is not None else server_device(server, "input")
    out = resolve_device(output_device, "output") if output_device is not None else server_device(server, "output")
    in_rate = _rate(sd, inp, "input", model_rate)
    out_rate = _rate(sd, out, "output", model_rate)
    return StreamPlan(inp, out, in_rate, out_rate, _device_block(block, model_rate, in_rate),
                      _device_block(block, model_rate, out_rate),
                      duplex=inp.hostapi == out.hostapi and in_rate == out_rate)


def _device_block(block: int, model_rate: int, rate: int) -> int:
    """One model block's duration in device samples (rounded when not whole)."""
    return max(1, round(block * rate / model_rate))


def _rate(sd, device: Device, kind: str, model_rate: int) -> int:
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    tried = []
    for rate in dict.fromkeys((model_rate, int(device.default_samplerate))):
        try:
            check(device=device.index, samplerate=rate, channels=1, dtype="float32")
            return rate
        except sd.PortAudioError as e:
            tried.append(f"{rate} Hz: {e}")
    raise EVCError(f"{kind} device {device.index} '{device.name}' refuses mono float32 audio "
                   f"({'; '.join(tried)}): choose another with --{kind}")


class LiveSession:
    """Runs `converter` between a microphone and a speaker until stopped.

    converter: anything with process((block_samples,) float32) -> (block_samples,),
    block_samples, spec (sample_rate), reset(), stats() and a `bypass` attribute
    (engine.pipeline's StreamingConverter). Devices: an index, a name substring or None
    (engine.yaml's audio.input_device/output_device, then the system default). `plan`
    skips PortAudio: tests drive the callbacks themselves.
    """

    def __init__(self, converter, cfg: EngineConfig, input_device: Optional[Union[int, str]] = None,
                 output_device: Optional[Union[int, str]] = None, plan: Optional[StreamPlan] = None):
        self.converter = converter
        self.cfg = cfg
        self.rate = int(converter.spec.sample_rate)
        self.block = int(converter.block_samples)
        if plan is None:
            plan = plan_streams(sounddevice(), self.rate, self.block,
                                cfg.audio.input_device if input_device is None else input_device,
                                cfg.audio.output_device if output_device is None else output_device,
                                cfg.audio.server, cfg.audio.callbacks_per_block)
        self.plan = plan
        k = cfg.audio.callbacks_per_block
        # queue and headroom are counted in callback chunks from here on
        self.max_queued = k * cfg.audio.max_queued_blocks
        self.headroom = k * max(cfg.audio.headroom_blocks, SERVER_HEADROOM.get(cfg.audio.server, 1))
        self.trim_above = k * TRIM_ABOVE_BLOCKS
        self.ring_slack = k * RING_SLACK_BLOCKS
        self.dry_when_late = cfg.audio.late_blocks == "dry"
        self.notes: list[str] = []
        self._streams: list = []
        self._worker: Optional[threading.Thread] = None
        self._running = False
        self._error: Optional[BaseException] = None
        self._started_at: Optional[float] = None
        self._stopped_at: Optional[float] = None
        self._stream_latency = (0.0, 0.0)
        self._duplex_open = False
        self._build_buffers()

    def _build_buffers(self) -> None:
        p, slack = self.plan, self.max_queued + self.ring_slack + self.headroom
        self._in = RingBuffer(slack * p.in_block)
        self._out = RingBuffer(slack * p.out_block)
        # the headroom the worker gets: converted blocks it may be behind the speaker's callbacks
        self._pad = np.zeros(self.headroom * p.out_block, np.float32)
        self._out.write(self._pad)
        self._chunk = np.zeros(p.in_block, np.float32)
        self._trim_buf = np.zeros(p.out_block, np.float32)
        # staged: chunks are gathered into model blocks (callbacks carry part of a block, or resampled audio)
        self._staging = p.in_rate != self.rate or p.out_rate != self.rate or p.in_block != self.block
        self._down = StreamResampler(p.in_rate, self.rate) if p.in_rate != self.rate else None
        self._up = StreamResampler(self.rate, p.out_rate) if p.out_rate != self.rate else None
        self._staged = RingBuffer(slack * self.block)
        self._block_buf = np.zeros(self.block, np.float32)
        # dry audio for late blocks of two separate streams: the input callback feeds it,
        # the output callback drains it every time, so it stays current
        self._dry_ok = p.in_rate == p.out_rate and p.in_block == p.out_block
        self._dry = RingBuffer(2 * p.in_block)
        self._dry_buf = np.zeros(p.out_block, np.float32)
        self._lags = np.zeros(2)  # (capture, playback) seconds from PortAudio's timestamps
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.flags = dict.fromkeys(FLAG_NAMES, 0)
        self.late = 0
        self.dropped = 0  # input chunks, by the worker
        self.trimmed = 0  # output blocks, by the output callback
        self.blocks = 0
        self._input_seen = False
        self._out_calls = 0
        self._calls = 0  # callbacks of any stream: check() watches it move
        self._seen_calls, self._seen_at = -1, time.monotonic()
        self._late_samples = 0  # written by the callback only
        self._skipped_samples = 0  # written by the worker only
        self._queued_mean = 0.0
        self._queued_max = 0.0

    # ---- the PortAudio callbacks: copies and counters only -------------------------------

    def _duplex_callback(self, indata, outdata, frames, t, status) -> None:
        self._calls += 1
        if status:
            self._count(status)
        self._lags[0] = t.currentTime - t.inputBufferAdcTime
        self._lags[1] = t.outputBufferDacTime - t.currentTime
        x = indata[:, 0]
        self._in.write(x)
        self._play(outdata[:, 0], frames, x)

    def _input_callback(self, indata, frames, t, status) -> None:
        self._calls += 1
        if status:
            self._count(status)
        self._lags[0] = t.currentTime - t.inputBufferAdcTime
        x = indata[:, 0]
        self._in.write(x)
        if self._dry_ok:
            self._dry.write(x)
        self._input_seen = True

    def _output_callback(self, outdata, frames, t, status) -> None:
        if status:
            self._count(status)
        self._lags[1] = t.outputBufferDacTime - t.currentTime
        self._out_calls += 1
        self._calls += 1
        out = outdata[:, 0]
        if not self._input_seen:
            out.fill(0.0)  # the microphone has not started: nothing can be late yet
            return
        dry = None
        if self._dry_ok and frames == self._dry_buf.size:
            self._dry.read(self._dry_buf)
            dry = self._dry_buf
        if self._out.available >= frames + self.trim_above * self.plan.out_block:
            self._out.read(self._trim_buf)  # two devices' clocks drift apart: keep the queue short
            self.trimmed += 1
        self._play(out, frames, dry)

    def _play(self, out, frames: int, dry) -> None:
        """out := the next converted block; when there is none, dry input or silence, counted late."""
        if self._out.available >= frames:
            self._out.read(out)
            return
        self.late += 1
        self._late_samples += frames
        if self.dry_when_late and dry is not None and dry.shape == out.shape:
            out[:] = dry
        else:
            out.fill(0.0)

    def _count(self, status) -> None:
        """Rare path (a flag is set): allocation here is acceptable."""
        for name in FLAG_NAMES:
            if getattr(status, name):
                self.flags[name] += 1

    # ---- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        poll = min(0.005, self.block / self.rate / 8)
        try:
            while self._running:
                if not self._step():
                    time.sleep(poll)
        except BaseException as e:  # reported by run()/stop() in the caller's thread
            self._error = e
            self._running = False

    def _step(self) -> bool:
        """Convert one waiting input chunk; False when less than one is waiting."""
        n = self.plan.in_block
        waiting = self._in.available // n
        if waiting == 0:
            return False
        for _ in range(waiting - self.max_queued):
            self._drop()
        self._sample_latency(min(waiting, self.max_queued))
        self._in.read(self._chunk)
        if self._staging:
            self._convert_staged(self._chunk)
        else:
            self._emit(self.converter.process(self._chunk))
            self.blocks += 1
        return True

    def _drop(self) -> None:
        """Discard the oldest waiting chunk.

        Its output slot is (or will be) filled by a late block, so it counts as skipped:
        one late block stands in for one dropped block and the delay stays as it was.
        """
        self._in.read(self._chunk)
        self.dropped += 1
        self._skipped_samples += self.plan.out_block

    def _convert_staged(self, chunk: np.ndarray) -> None:
        self._staged.write(self._down.process(chunk) if self._down else chunk)
        while self._staged.available >= self.block:
            self._staged.read(self._block_buf)
            y = self.converter.process(self._block_buf)
            self._emit(self._up.process(y) if self._up else y)
            self.blocks += 1

    def _emit(self, y: np.ndarray) -> None:
        """Queue converted audio for the callback, minus what was already played late in its place.

        Late slots are paid back from the backlog of input that waited while they played.
        Slots still owed once the worker has caught up had no input behind them (the input
        stream stalled while the output ran on): they are forgiven and the output ring is
        topped up to its headroom again; paying them from new input would make every
        later block late too, for as long as the output runs.
        """
        late = self._late_samples
        owed = late - self._skipped_samples
        if owed > 0 and self._caught_up():
            self._skipped_samples = late
            self._out.write(self._pad[:max(0, self._pad.size - self._out.available)])
            owed = 0
        if owed > 0:
            k = min(owed, y.size)
            self._skipped_samples += k
            y = y[k:]
        self._out.write(y)

    def _caught_up(self) -> bool:
        """No full input chunk or model block waits behind the one being emitted."""
        return self._in.available < self.plan.in_block and self._staged.available < self.block

    def _sample_latency(self, waiting: int) -> None:
        """Queue seen by the block the worker takes now: the chunks waiting with it, the staged
        samples and the output ring ahead of it (seconds; running mean and maximum)."""
        queued = (waiting * self.plan.in_block / self.plan.in_rate + self._staged.available / self.rate
                  + self._out.available / self.plan.out_rate)
        self._queued_mean += 0.05 * (queued - self._queued_mean)
        self._queued_max = max(self._queued_max, queued)

    # ---- control ------------------------------------------------------------------------

    def start(self) -> None:
        """Reset the converter, start the worker, open and start the stream(s).

        One duplex stream where the plan allows it, unless it starts with a backlog of
        input (PortAudio's ALSA host API through PulseAudio starts capturing up to 1 s
        before the first callback, and a duplex stream never catches up): then two
        streams, the output started first so that the input has no time to pile up.
        """
        if self._running:
            raise EVCError("the live session is already running")
        self._begin()
        try:
            if self.plan.duplex:
                self._streams = self._open_duplex()
            if self._streams and self._backlogged():
                self._restart_as_pair()
            if not self._streams:
                self._streams = self._open_pair()
        except BaseException:
            self.stop()
            raise
        self._duplex_open = len(self._streams) == 1
        self._stream_latency = self._latencies()

    def _begin(self) -> None:
        self.converter.reset()
        self._build_buffers()
        self._error = None
        self._running = True
        self._started_at, self._stopped_at = time.monotonic(), None
        self._worker = threading.Thread(target=self._work, name="evc-live-worker", daemon=True)
        self._worker.start()

    def _common(self) -> dict:
        return dict(dtype="float32", channels=1, latency=self.cfg.audio.latency)

    def _open_duplex(self) -> list:
        sd, p = sounddevice(), self.plan
        try:
            stream = sd.Stream(device=(p.input.index, p.output.index), samplerate=p.in_rate,
                               blocksize=p.in_block, callback=self._duplex_callback, **self._common())
        except sd.PortAudioError as e:
            self.notes.append(f"one duplex stream failed ({e}): using separate input and output streams")
            return []
        stream.start()
        return [stream]

    def _backlogged(self) -> bool:
        """True when the duplex stream's input runs more than BACKLOG_BLOCKS behind what PortAudio promised."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self.blocks < SETTLE_BLOCKS and time.monotonic() < deadline and self._running:
            time.sleep(0.005)
        backlog = float(self._lags[0])
        promised = float(self._streams[0].latency[0]) + BACKLOG_BLOCKS * self.block / self.rate
        if backlog <= promised:
            return False
        self.notes.append(f"the duplex stream started {1000 * backlog:.0f} ms behind its input: "
                          "reopened as separate input and output streams")
        return True

    def _restart_as_pair(self) -> None:
        self._close_streams()
        self._end_worker()
        self._begin()

    def _open_pair(self) -> list:
        """Input and output streams; the output starts first, the input once output callbacks are paced."""
        sd, p = sounddevice(), self.plan
        try:
            inp = sd.InputStream(device=p.input.index, samplerate=p.in_rate, blocksize=p.in_block,
                                 callback=self._input_callback, **self._common())
            out = sd.OutputStream(device=p.output.index, samplerate=p.out_rate, blocksize=p.out_block,
                                  callback=self._output_callback, **self._common())
        except sd.PortAudioError as e:
            raise EVCError(f"cannot open the audio devices ({e}): check them with `evc devices`") from None
        self._streams = [inp, out]  # so that stop() closes both if starting fails
        out.start()
        self._wait_paced(p.out_block / p.out_rate)
        inp.start()
        return [inp, out]

    def _wait_paced(self, period: float) -> None:
        """Until output callbacks come one per period (PortAudio first primes its buffer in a burst,
        and may then pause while the server starts the stream), or STARTUP_TIMEOUT_S."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        seen, seen_at = 0, None
        while time.monotonic() < deadline:
            n, now = self._out_calls, time.monotonic()
            if n == seen + 1 and seen_at is not None and now - seen_at >= period / 2:
                return
            if n != seen:
                seen, seen_at = n, now
            time.sleep(0.002)

    def _latencies(self) -> tuple[float, float]:
        """(input, output) latency in seconds that PortAudio reports for the open stream(s)."""
        if len(self._streams) == 1:
            lat = self._streams[0].latency
            return float(lat[0]), float(lat[1])
        return float(self._streams[0].latency), float(self._streams[1].latency)

    def _close_streams(self) -> None:
        """Output first: an output callback after the input stopped would count as late.

        In a helper thread, waited for CLOSE_TIMEOUT_S: PortAudio may block for good, or
        fail, closing a stream whose device or audio server went away; that is noted, not raised.
        """
        streams, self._streams = self._streams, []
        if not streams:
            return
        failures: list[str] = []
        closer = threading.Thread(target=_close_all, args=(streams, failures), name="evc-live-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        if closer.is_alive():
            abandon_portaudio()
            self.notes.append(f"PortAudio did not close the audio stream within {CLOSE_TIMEOUT_S:g} s: abandoned, "
                              "this process cannot open audio again")
        self.notes.extend(failures)

    def _end_worker(self) -> None:
        self._running = False
        if self._worker is not None:
            self._worker.join()
            self._worker = None
            self._stopped_at = time.monotonic()

    def stop(self) -> dict:
        """Stop streams, then the worker (idempotent); returns stats(). EVCError if the worker failed."""
        self._close_streams()
        self._end_worker()
        if self._error is not None:
            e, self._error = self._error, None
            raise EVCError(f"live conversion stopped: {type(e).__name__}: {e}") from e
        return self.stats()

    def check(self) -> None:
        """Stop and raise EVCError when the worker failed or the audio stopped: no callback
        for STALL_S (a device unplugged, its audio server gone). Call it every second or so."""
        if self._error is not None:
            self.stop()  # raises the worker's error
        now = time.monotonic()
        if self._calls != self._seen_calls:
            self._seen_calls, self._seen_at = self._calls, now
            return
        if self._streams and now - self._seen_at > STALL_S:
            silent = now - self._seen_at
            self.stop()
            raise EVCError(f"the audio device stopped: no audio callback for {silent:.1f} s (device unplugged or "
                           f"its audio server stopped); the session ended after {self.blocks} blocks")

    def run(self, until: Optional[float] = None) -> dict:
        """start(), run for `until` seconds (None: until stop() from another thread), stop(); stats()."""
        self.start()
        deadline = None if until is None else time.monotonic() + until
        try:
            while self._running and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.02 if deadline is None else max(0.0, min(0.02, deadline - time.monotonic())))
                self.check()
        finally:
            stats = self.stop()
        return stats

    def __enter__(self) -> LiveSession:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def bypass(self) -> bool:
        return bool(self.converter.bypass)

    @bypass.setter
    def bypass(self, value: bool) -> None:
        self.converter.bypass = bool(value)

    def set_emotion(self, name: str, strength: Optional[float] = None) -> None:
        self.converter.set_emotion(name, strength)

    # ---- reporting ---------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters and timings so far.

        latency_ms estimates microphone-to-speaker delay: the device lags from PortAudio's
        callback timestamps (capture: now - ADC time; playback: DAC time - now), or the
        latency PortAudio reports when the host API gives no timestamps, plus the audio
        waiting in the rings (a running mean; latency_max_ms with the largest queue seen),
        plus the converter's and the resamplers' own delay.
        """
        conv = self.converter.stats()
        device_s = self._device_lag()
        fixed_ms = 1000.0 * device_s + self._model_delay_ms()
        end = self._stopped_at or time.monotonic()
        return {
            "emotion": getattr(self.converter, "emotion_name", None),
            "strength": getattr(self.converter, "strength", None),
            "bypass": self.bypass,
            "seconds": 0.0 if self._started_at is None else end - self._started_at,
            "blocks": self.blocks,
            "p50_ms": conv.get("p50_ms", 0.0), "p99_ms": conv.get("p99_ms", 0.0), "rtf": conv.get("rtf", 0.0),
            "xruns": self.xruns(),
            "dropped": self.dropped + self.trimmed, "late": self.late,
            "latency_ms": fixed_ms + 1000.0 * self._queued_mean,
            "latency_max_ms": fixed_ms + 1000.0 * self._queued_max,
            "queued_ms": 1000.0 * self._queued_mean, "queued_max_ms": 1000.0 * self._queued_max,
            "device_lag_ms": tuple(1000.0 * float(v) for v in self._lags),
            "stream_latency_ms": tuple(1000.0 * v for v in self._stream_latency),
            "rates": (self.plan.in_rate, self.plan.out_rate), "duplex": self._duplex_open,
            "devices": (self.plan.input.name, self.plan.output.name), "notes": list(self.notes),
        }

    def _device_lag(self) -> float:
        """Capture + playback lag in seconds: timestamps where PortAudio gives them, else its reported latency."""
        measured = [float(v) for v in self._lags]
        reported = self._stream_latency
        return sum(m if m > 0 else r for m, r in zip(measured, reported))

    def xruns(self) -> dict:
        """Ring overruns, callback output underruns (= late blocks) and PortAudio status flags."""
        flags = dict(self.flags)
        total = self._in.overruns + self._out.overruns + self.late + sum(flags.values())
        return {"total": total, "input_overruns": self._in.overruns, "output_overruns": self._out.overruns,
                "output_underruns": self.late, "portaudio": flags}

    def _model_delay_ms(self) -> float:
        delay = getattr(self.converter, "delay_samples", 0) or 0
        extra = (self._down.delay / self.rate if self._down else 0.0) + (
            self._up.delay / self.plan.out_rate if self._up else 0.0)
        return 1000.0 * (delay / self.rate + extra)

    def summary(self) -> str:
        """One line for the end of a run."""
        s = self.stats()
        return (f"live: {s['seconds']:.1f} s, {s['blocks']} blocks; compute p50 {s['p50_ms']:.2f} ms "
                f"p99 {s['p99_ms']:.2f} ms, RTF {s['rtf']:.3f}; xruns {s['xruns']['total']} "
                f"({_flag_text(s['xruns'])}); dropped {s['dropped']}, late {s['late']}; "
                f"latency ~{s['latency_ms']:.0f} ms (max {s['latency_max_ms']:.0f})")


def _close_all(streams: list, failures: list[str]) -> None:
    """Stop and close each stream, last opened first; PortAudio's complaints go to `failures`."""
    for stream in reversed(streams):
        try:
            stream.stop()
            stream.close()
        except Exception as e:  # sounddevice.PortAudioError, whose module may not be imported here
            failures.append(f"closing the audio stream: {e}")


def _flag_text(x: dict) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in x.items() if k not in ("total", "portaudio") and v]
    parts += [f"PortAudio {k.replace('_', ' ')} {v}" for k, v in x["portaudio"].items() if v]
    return ", ".join(parts) or "none"
