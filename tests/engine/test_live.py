"""engine.live, engine.devices and engine.cli_live without an audio server.

The PortAudio callbacks are called directly with synthetic buffers, or from a fake
sounddevice module whose streams call back from their own threads; the converter is a
stand-in (out = gain * in, optionally slow), so every number here is exact.
"""

from __future__ import annotations

import builtins
import io
import subprocess
import sys
import threading
import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from engine import cli, cli_live, devices, live, ring
from engine.config import AudioConfig, EngineConfig
from engine.devices import Device
from engine.errors import EVCError
from engine.live import LiveSession, StreamPlan, StreamResampler
from engine.signal import SignalSpec

RATE, BLOCK = 16000, 320
PERIOD = BLOCK / RATE
NO_TIMES = SimpleNamespace(inputBufferAdcTime=0.0, outputBufferDacTime=0.0, currentTime=0.0)


class Flags:
    """sounddevice.CallbackFlags stand-in: falsy without flags."""

    def __init__(self, **set_flags):
        self.__dict__.update(dict.fromkeys(live.FLAG_NAMES, False), **set_flags)

    def __bool__(self) -> bool:
        return any(getattr(self, n) for n in live.FLAG_NAMES)


NO_FLAGS = Flags()


class StandIn:
    """Converter stand-in: out = gain * block (the block itself under bypass); sleeps `delay_s` per block."""

    def __init__(self, block: int = BLOCK, gain: float = 0.5, delay_s: float = 0.0):
        self.spec = SignalSpec()
        self.block_samples = block
        self.gain, self.delay_s = gain, delay_s
        self.bypass = False
        self.emotion_name, self.strength = None, None
        self.calls = 0
        self._out = np.zeros(block, np.float32)

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        np.multiply(block, 1.0 if self.bypass else self.gain, out=self._out)
        self.calls += 1
        return self._out

    def reset(self) -> None:
        pass

    def stats(self) -> dict:
        return {"blocks": self.calls, "p50_ms": 0.1, "p99_ms": 0.2, "rtf": 0.01}

    def set_emotion(self, name: str, strength=None) -> None:
        self.emotion_name, self.strength = name, strength


def device(index=0, name="fake", hostapi="Fake API", rate=48000.0, ins=1, outs=1, default=True) -> Device:
    return Device(index, name, hostapi, ins, outs, rate, default_input=default and ins > 0,
                  default_output=default and outs > 0)


def plan(duplex=True, rate=RATE, block=BLOCK) -> StreamPlan:
    d = device()
    return StreamPlan(d, d, rate, rate, block, block, duplex)


def config(**audio) -> EngineConfig:
    return EngineConfig(audio=AudioConfig(**audio))


def session(duplex=True, **audio) -> LiveSession:
    return LiveSession(StandIn(), config(**audio), plan=plan(duplex))


def blocks(n: int, block: int = BLOCK, seed: int = 0) -> np.ndarray:
    """(n, block, 1) float32 distinct random blocks, as PortAudio hands them over (frames, channels)."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, block, 1)).astype(np.float32)


# ---- callbacks, rings and worker, driven by hand ------------------------------------------


def test_duplex_blocks_flow_in_order_through_rings_and_worker():
    s = session()
    ins, out = blocks(50), np.zeros((BLOCK, 1), np.float32)
    played = []
    for x in ins:
        s._duplex_callback(x, out, BLOCK, NO_TIMES, NO_FLAGS)
        played.append(out[:, 0].copy())
        assert s._step()
    assert not played[0].any()  # the pre-filled block of silence
    for k in range(1, 50):
        np.testing.assert_array_equal(played[k], 0.5 * ins[k - 1, :, 0])
    assert (s.late, s.dropped, s.xruns()["total"], s.blocks) == (0, 0, 0, 50)


@pytest.mark.parametrize("policy", ["dry", "silence"])
def test_late_block_plays_dry_or_silence_and_its_conversion_is_skipped(policy):
    s = session(late_blocks=policy)
    ins, out = blocks(4), np.zeros((BLOCK, 1), np.float32)
    s._duplex_callback(ins[0], out, BLOCK, NO_TIMES, NO_FLAGS)  # plays the pre-filled silence
    s._duplex_callback(ins[1], out, BLOCK, NO_TIMES, NO_FLAGS)  # the worker has not run: late
    expected = ins[1, :, 0] if policy == "dry" else np.zeros(BLOCK, np.float32)
    np.testing.assert_array_equal(out[:, 0], expected)
    assert s.late == 1 and s.xruns()["output_underruns"] == 1
    assert s._step() and s._step()  # block 0's conversion is due in slot 1, already played: skipped
    s._duplex_callback(ins[2], out, BLOCK, NO_TIMES, NO_FLAGS)
    np.testing.assert_array_equal(out[:, 0], 0.5 * ins[1, :, 0])  # slot 2 plays block 1: delay unchanged
    assert s.late == 1


def test_worker_drops_the_oldest_blocks_beyond_max_queued():
    s = session(max_queued_blocks=3)
    ins, out = blocks(7), np.zeros((BLOCK, 1), np.float32)
    for x in ins[:6]:  # the worker is stuck: slot 0 plays the pre-fill, slots 1-5 are late
        s._duplex_callback(x, out, BLOCK, NO_TIMES, NO_FLAGS)
    assert s._step()
    assert (s.dropped, s.blocks, s.late) == (3, 1, 5)  # 6 waiting: 3 oldest dropped, 1 converted
    np.testing.assert_array_equal(s.converter._out, 0.5 * ins[3, :, 0])
    assert s._in.available == 2 * BLOCK
    assert s._step() and s._step()
    s._duplex_callback(ins[6], out, BLOCK, NO_TIMES, NO_FLAGS)
    np.testing.assert_array_equal(out[:, 0], 0.5 * ins[5, :, 0])  # back to a delay of one block
    assert s.late == 5


def test_separate_streams_wait_for_input_and_trim_a_growing_queue():
    s = session(duplex=False)
    ins, out = blocks(8), np.zeros((BLOCK, 1), np.float32)
    s._output_callback(out, BLOCK, NO_TIMES, NO_FLAGS)  # no input yet: silence, not late, prefill kept
    assert not out.any() and s.late == 0 and s._out.available == BLOCK
    for x in ins[:6]:  # the input device runs ahead of the output device
        s._input_callback(x, BLOCK, NO_TIMES, NO_FLAGS)
        s._step()
    assert s._out.available == 7 * BLOCK
    s._output_callback(out, BLOCK, NO_TIMES, NO_FLAGS)
    assert s.trimmed == 1 and s._out.available == 5 * BLOCK  # the oldest (pre-fill) discarded, one played
    np.testing.assert_array_equal(out[:, 0], 0.5 * ins[0, :, 0])
    s._output_callback(out, BLOCK, NO_TIMES, NO_FLAGS)  # still more than 3 waiting: trim again
    np.testing.assert_array_equal(out[:, 0], 0.5 * ins[2, :, 0])
    s._output_callback(out, BLOCK, NO_TIMES, NO_FLAGS)
    np.testing.assert_array_equal(out[:, 0], 0.5 * ins[3, :, 0])
    assert s.trimmed == 2 and s.late == 0 and s._out.available == 2 * BLOCK


def test_input_stall_costs_late_blocks_while_it_lasts_and_none_after():
    """Separate streams: the input stops for 30 blocks while the output runs on.

    Those slots have no input behind them, so nothing converted can ever be owed for them:
    once input resumes the output must play conversions again, one block behind as before.
    """
    s = session(duplex=False)
    ins, out = blocks(40), np.zeros((BLOCK, 1), np.float32)

    def period(x):
        s._input_callback(x, BLOCK, NO_TIMES, NO_FLAGS)
        s._step()
        s._output_callback(out, BLOCK, NO_TIMES, NO_FLAGS)

    for x in ins[:5]:
        period(x)
    assert s.late == 0
    for _ in range(30):
        s._output_callback(out, BLOCK, NO_TIMES, NO_FLAGS)
    stalled = s.late
    assert stalled == 30 - 1  # the headroom block covered the first slot
    for x in ins[5:]:
        period(x)
    assert s.late == stalled
    np.testing.assert_array_equal(out[:, 0], 0.5 * ins[-2, :, 0])  # the delay is one block again


def test_status_flags_are_counted():
    s = session()
    out = np.zeros((BLOCK, 1), np.float32)
    s._duplex_callback(blocks(1)[0], out, BLOCK, NO_TIMES, Flags(input_overflow=True, output_underflow=True))
    s._duplex_callback(blocks(1)[0], out, BLOCK, NO_TIMES, Flags(output_underflow=True))
    x = s.xruns()
    assert x["portaudio"]["input_overflow"] == 1 and x["portaudio"]["output_underflow"] == 2
    assert x["total"] == 1 + 3  # the second callback was also late


def test_callbacks_allocate_nothing():
    """1000 calls of each callback: engine code keeps nothing, and allocates no buffer even briefly.

    Blocks of 4096 samples (16 KiB): a temporary copy would raise the peak by that much;
    the views the callbacks slice stay far below.
    """
    n = 4096
    s = LiveSession(StandIn(block=n), config(), plan=plan(True, block=n))
    pair = LiveSession(StandIn(block=n), config(), plan=plan(False, block=n))
    x, out, sink = blocks(1, n)[0], np.zeros((n, 1), np.float32), np.zeros(n, np.float32)
    flt = [tracemalloc.Filter(True, live.__file__), tracemalloc.Filter(True, ring.__file__)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(flt)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for k in range(1000):
            s._duplex_callback(x, out, n, NO_TIMES, NO_FLAGS)
            s._in.read(sink)
            if k % 2:
                s._out.write(sink)  # every other block is late: both paths run
            pair._input_callback(x, n, NO_TIMES, NO_FLAGS)
            pair._output_callback(out, n, NO_TIMES, NO_FLAGS)
            pair._in.read(sink)
            pair._out.write(sink)
        peak = tracemalloc.get_traced_memory()[1] - base
        after = tracemalloc.take_snapshot().filter_traces(flt)
    finally:
        tracemalloc.stop()
    kept = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert kept < 512, after.compare_to(before, "lineno")[:5]  # the counters' current int objects
    assert peak < 4096, f"a callback allocated {peak} bytes at once"
    assert s.late == 500 and pair.late == 0


# ---- a fake sounddevice: streams that call back from their own threads ----------------------


class FakePortAudioError(Exception):
    pass


class FakeStream:
    """Calls back every `period` s from a thread: input from sd.source, output kept in self.played."""

    def __init__(self, sd, kind, callback, samplerate, blocksize, device, **kw):
        if kind == "duplex" and sd.refuse_duplex:
            raise FakePortAudioError("Invalid device pairing")
        self.sd, self.kind, self.callback, self.n = sd, kind, callback, blocksize
        self.samplerate, self.device, self.kw = samplerate, device, kw
        self.latency = (0.01, 0.02) if kind == "duplex" else 0.01
        self.played: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        sd.opened.append(self)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self):
        pass

    def _pump(self):
        t0, k = time.monotonic(), 0
        out = np.zeros((self.n, 1), np.float32)
        while not self._stop.is_set():
            self._tick(out)
            k += 1
            time.sleep(max(0.0, t0 + k * self.sd.period - time.monotonic()))

    def _tick(self, out):
        t = self.sd.times
        if self.kind == "output":
            self.callback(out, self.n, t, NO_FLAGS)
        else:
            x = self.sd.next_input(self.n)
            if self.kind == "input":
                self.callback(x, self.n, t, NO_FLAGS)
                return
            self.callback(x, out, self.n, t, NO_FLAGS)
        self.played.append(out[:, 0].copy())


class FakeSD:
    """The parts of sounddevice that engine.live and engine.devices use."""

    PortAudioError = FakePortAudioError

    def __init__(self, devices=None, rates=(16000, 48000), period=PERIOD, source=None, refuse_duplex=False,
                 input_lag=0.0):
        self.devices = devices if devices is not None else [
            {"name": "fake", "index": 0, "hostapi": 0, "max_input_channels": 2, "max_output_channels": 2,
             "default_samplerate": 48000.0}]
        self.rates, self.period, self.refuse_duplex = set(rates), period, refuse_duplex
        self.source = source if source is not None else np.zeros(0, np.float32)
        self.pos = 0
        self.opened: list[FakeStream] = []
        self.times = SimpleNamespace(inputBufferAdcTime=0.0, outputBufferDacTime=0.02, currentTime=input_lag)
        self.default = SimpleNamespace(device=[0, 0] if self.devices else [-1, -1])

    def next_input(self, n):
        x = np.zeros((n, 1), np.float32)
        chunk = self.source[self.pos:self.pos + n]
        x[:chunk.size, 0] = chunk
        self.pos += n
        return x

    def query_devices(self):
        return self.devices

    def query_hostapis(self):
        return ({"name": "Fake API"}, {"name": "Other API"})

    def check_input_settings(self, device, samplerate, **kw):
        if samplerate not in self.rates:
            raise FakePortAudioError("Invalid sample rate")

    check_output_settings = check_input_settings

    def Stream(self, **kw):  # noqa: N802 (sounddevice's names)
        return FakeStream(self, "duplex", **kw)

    def InputStream(self, **kw):  # noqa: N802
        return FakeStream(self, "input", **kw)

    def OutputStream(self, **kw):  # noqa: N802
        return FakeStream(self, "output", **kw)


@pytest.fixture
def fake_sd(monkeypatch):
    def install(**kw) -> FakeSD:
        sd = FakeSD(**kw)
        monkeypatch.setattr(devices, "sounddevice", lambda: sd)
        monkeypatch.setattr(live, "sounddevice", lambda: sd)
        return sd
    return install


def exact_or_silent(played: np.ndarray, expected: np.ndarray) -> int:
    """Each played block (n, B) equals the expected one or is silent (a late block, silence
    policy: a loaded machine may delay a thread); returns how many are silent."""
    silent = ~played.any(axis=1)
    np.testing.assert_array_equal(played[~silent], expected[~silent])
    return int((silent & expected.any(axis=1)).sum())


@pytest.mark.parametrize("duplex", [True, False])
def test_fake_device_run_delivers_every_block_in_order(fake_sd, duplex):
    src = np.concatenate([np.zeros((3, BLOCK)), blocks(60)[:, :, 0]]).astype(np.float32)
    sd = fake_sd(source=src.reshape(-1), refuse_duplex=not duplex)
    s = LiveSession(StandIn(), config(late_blocks="silence"))
    stats = s.run(until=70 * PERIOD)
    assert stats["duplex"] is duplex
    played = np.stack(sd.opened[-1].played)
    lag = int(np.flatnonzero(played.any(axis=1))[0]) - 3  # in callbacks: an output stream starts first
    assert 1 <= lag <= 5
    expected = np.zeros_like(played)
    n = min(len(played) - lag, len(src))
    expected[lag:lag + n] = 0.5 * src[:n]
    assert exact_or_silent(played, expected) <= stats["late"] <= 3
    assert stats["dropped"] == 0 and stats["xruns"]["total"] == stats["late"]


def test_slow_worker_keeps_latency_bounded_then_recovers(fake_sd):
    src = blocks(150)[:, :, 0]
    sd = fake_sd(source=src.reshape(-1), period=0.01)
    conv = StandIn(delay_s=0.025)  # 2.5 x slower than real time
    s = LiveSession(conv, config(max_queued_blocks=3, late_blocks="silence"))
    s.start()
    time.sleep(0.6)
    slow = s.stats()
    conv.delay_s = 0.0
    time.sleep(0.6)
    s.stop()
    assert slow["dropped"] > 5 and slow["late"] > 5
    # the queue never held more than max_queued blocks waiting plus the one in the output ring
    assert slow["queued_max_ms"] <= (3 + 2) * PERIOD * 1000
    # recovered: each of the last 30 callbacks plays the conversion of the block before its own
    # (on a quiet machine none is late; a loaded one may delay a few)
    played = np.stack(sd.opened[-1].played)
    c = len(played) - 30
    assert exact_or_silent(played[c:], 0.5 * src[c - 1:c + 29]) <= 10


def test_duplex_started_behind_its_input_reopens_as_two_streams(fake_sd):
    sd = fake_sd(input_lag=0.5)
    s = LiveSession(StandIn(), config())
    stats = s.run(until=0.3)
    assert [st.kind for st in sd.opened] == ["duplex", "input", "output"]
    assert not stats["duplex"] and "reopened as separate" in stats["notes"][0]


def test_device_refusing_16k_runs_at_its_rate_with_resampling(fake_sd):
    sd = fake_sd(rates={48000})
    p = live.plan_streams(sd, RATE, BLOCK, None, None)
    assert (p.in_rate, p.out_rate, p.in_block, p.out_block) == (48000, 48000, 960, 960)
    s = LiveSession(StandIn(), config(), plan=p)
    t = np.arange(48000 * 2) / 48000
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 960, 1)
    out, played = np.zeros((960, 1), np.float32), []
    for x in sine:
        s._duplex_callback(x, out, 960, NO_TIMES, NO_FLAGS)
        s._step()
        played.append(out[:, 0].copy())
    y = np.concatenate(played)[48000:]
    delay = 960 + s._down.delay * 3 + s._up.delay  # one block + both resamplers, in 48 kHz samples
    ref = 0.5 * 0.5 * np.sin(2 * np.pi * 440 * (t[48000:] - delay / 48000))
    assert np.abs(y - ref).max() < 2e-3
    assert s.late == 0


@pytest.mark.parametrize("duplex", [True, False])
def test_two_callbacks_per_block_play_a_block_half_a_block_sooner(duplex):
    """Callbacks of half a block: a block plays from the callback after it is converted.

    With one callback per block, played block k is input block k - 1 (a block of headroom,
    test_duplex_blocks_flow...); here played chunk c is input chunk c - 2, i.e. the
    delay from a block's first sample to its playback shrinks from 2 blocks to 1.5.
    """
    half = BLOCK // 2
    s = LiveSession(StandIn(), config(callbacks_per_block=2), plan=plan(duplex, block=half))
    ins, out, played = blocks(40, half), np.zeros((half, 1), np.float32), []
    for x in ins:
        if duplex:
            s._duplex_callback(x, out, half, NO_TIMES, NO_FLAGS)
        else:
            s._input_callback(x, half, NO_TIMES, NO_FLAGS)
            s._output_callback(out, half, NO_TIMES, NO_FLAGS)
        played.append(out[:, 0].copy())
        s._step()
    assert not np.concatenate(played[:2]).any()  # a block of headroom, in two pieces
    for c in range(2, 40):
        np.testing.assert_array_equal(played[c], 0.5 * ins[c - 2, :, 0])
    assert (s.late, s.dropped, s.blocks, s.converter.calls) == (0, 0, 20, 20)


def test_callbacks_per_block_must_divide_the_block(fake_sd):
    sd = fake_sd()
    assert live.plan_streams(sd, RATE, BLOCK, None, None, callbacks=4).in_block == BLOCK // 4
    with pytest.raises(EVCError, match="audio.callbacks_per_block = 3 does not divide the model's block of 320"):
        live.plan_streams(sd, RATE, BLOCK, None, None, callbacks=3)


def test_plan_falls_back_and_refuses_with_one_line(fake_sd):
    sd = fake_sd(rates={44100}, devices=[
        {"name": "mic", "index": 0, "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
         "default_samplerate": 44100.0},
        {"name": "speaker", "index": 1, "hostapi": 1, "max_input_channels": 0, "max_output_channels": 2,
         "default_samplerate": 48000.0}])
    sd.default.device = [0, 1]
    with pytest.raises(EVCError, match="output device 1 'speaker' refuses") as e:
        live.plan_streams(sd, RATE, BLOCK, None, None)
    assert "\n" not in str(e.value)
    sd.rates = {44100, 48000}
    p = live.plan_streams(sd, RATE, BLOCK, "mic", "speak")
    assert (p.in_rate, p.out_rate, p.in_block, p.out_block, p.duplex) == (44100, 48000, 882, 960, False)


# ---- the resampler ------------------------------------------------------------------------


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (16000, 48000), (16000, 44100)])
def test_resampler_chunking_changes_nothing_and_passes_speech_band(rates):
    a, b = rates
    t = np.arange(a) / a
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    whole = StreamResampler(a, b).process(x)
    r, parts, i = StreamResampler(a, b), [], 0
    for n in np.random.default_rng(0).integers(1, 1000, 200):
        parts.append(r.process(x[i:i + n]))
        i += int(n)
    parts.append(r.process(x[i:]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.size == b
    ref = 0.5 * np.sin(2 * np.pi * 1000 * (np.arange(b) / b - r.delay / b))
    assert np.abs(whole - ref)[200:].max() < 1e-4


def test_resampler_keeps_aliases_out_of_16k():
    t = np.arange(48000) / 48000
    for f, floor_db in ((8800, -35), (12000, -80)):
        y = StreamResampler(48000, 16000).process((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32))
        assert 20 * np.log10(np.sqrt(np.mean(y[100:] ** 2)) / (0.5 / np.sqrt(2))) < floor_db


# ---- devices ------------------------------------------------------------------------------


DEVICES = [device(0, "HDA Intel: ALC (hw:0,0)", "ALSA", 44100.0, 2, 2, default=False),
           device(1, "pulse", "ALSA", 44100.0, 32, 32, default=False),
           device(2, "default", "ALSA", 44100.0, 32, 32, default=True),
           device(3, "USB Mic", "ALSA", 48000.0, 1, 0, default=False)]


def test_resolve_device_by_index_name_and_default():
    assert devices.resolve_device(None, "input", DEVICES).index == 2
    assert devices.resolve_device(3, "input", DEVICES).name == "USB Mic"
    assert devices.resolve_device("3", "input", DEVICES).name == "USB Mic"
    assert devices.resolve_device("usb", "input", DEVICES).index == 3
    assert devices.resolve_device("PULSE", "output", DEVICES).index == 1


@pytest.mark.parametrize("spec, kind, message", [
    ("a", "input", "'a' matches 2 input devices"),
    ("nothing", "output", "no output device matches 'nothing'"),
    (3, "output", "audio device 3 has no output channels"),
    (9, "input", "no audio device with index 9"),
])
def test_resolve_device_errors_are_one_line(spec, kind, message):
    with pytest.raises(EVCError, match=message) as e:
        devices.resolve_device(spec, kind, DEVICES)
    assert "\n" not in str(e.value)


def test_no_devices_is_one_line():
    with pytest.raises(EVCError, match="no audio input device found"):
        devices.resolve_device(None, "input", [])


def test_devices_table_marks_defaults_and_rates(fake_sd, capsys):
    fake_sd()
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "><   0" in out and "48000" in out and "Fake API" in out


# ---- PortAudio missing --------------------------------------------------------------------


@pytest.fixture
def no_portaudio(monkeypatch):
    real = builtins.__import__

    def fake_import(name, *args, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real(name, *args, **kw)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_portaudio_is_one_line(no_portaudio, capsys):
    with pytest.raises(EVCError, match="live audio needs PortAudio.*apt-get install libportaudio2") as e:
        devices.list_devices()
    assert "\n" not in str(e.value)
    with pytest.raises(EVCError, match="PortAudio"):
        LiveSession(StandIn(), config())
    for argv in (["devices"], ["live"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "PortAudio" in err


def test_import_engine_without_sounddevice():
    code = """
import sys
class NoPortAudio:
    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
sys.meta_path.insert(0, NoPortAudio())
import engine, engine.live, engine.devices, engine.cli_live, engine.cli
engine.cli.get_parser()
assert "sounddevice" not in sys.modules
try:
    engine.devices.list_devices()
except engine.errors.EVCError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("live audio needs PortAudio")


# ---- the live command's controls ------------------------------------------------------------


NAMES = ["angry", "happy", "neutral"]


@pytest.mark.parametrize("line, expected", [
    ("angry\n", ("emotion", "angry")), ("  HAPPY ", ("emotion", "happy")), ("0.5", ("strength", 0.5)),
    ("1", ("strength", 1.0)), ("b", ("bypass", None)), ("q\n", ("quit", None)), ("quit", ("quit", None)),
    ("?", ("help", None)),
])
def test_parse_command(line, expected):
    cmd = cli_live.parse_command(line, NAMES)
    assert (cmd.action, cmd.value) == expected


def test_parse_command_blank_and_unknown():
    assert cli_live.parse_command("  \n", NAMES) is None
    cmd = cli_live.parse_command("furious", NAMES)
    assert cmd.action == "error" and "unknown command 'furious'" in cmd.value and "angry, happy" in cmd.value


class FakeSession:
    """What run_live and apply_command use of a LiveSession."""

    def __init__(self):
        self.converter = StandIn()
        self.running, self.started, self.stopped = False, False, False
        self.checks = 0
        self.notes = ["the duplex stream started 300 ms behind its input: reopened as separate streams"]

    @property
    def bypass(self):
        return self.converter.bypass

    @bypass.setter
    def bypass(self, value):
        self.converter.bypass = value

    def set_emotion(self, name, strength=None):
        if strength is not None and not 0 <= strength <= 1.5:
            raise EVCError(f"strength: expected a number in [0, 1.5], got {strength:g}")
        self.converter.set_emotion(name, strength)

    def start(self):
        self.running = self.started = True

    def check(self):
        self.checks += 1

    def stop(self):
        self.running, self.stopped = False, True
        return self.stats()

    def stats(self):
        return {"emotion": self.converter.emotion_name, "strength": self.converter.strength,
                "bypass": self.bypass, "p50_ms": 1.0, "p99_ms": 2.0, "rtf": 0.1, "dropped": 0, "late": 0,
                "latency_ms": 80.0, "xruns": {"total": 0}}

    def summary(self):
        return "live: summary"


def test_commands_switch_emotion_strength_and_bypass():
    s, quit_event = FakeSession(), threading.Event()
    apply = cli_live.apply_command
    assert apply(s, cli_live.Command("strength", 0.5), quit_event).startswith("no emotion selected")
    assert apply(s, cli_live.Command("emotion", "angry"), quit_event) == "emotion angry"
    assert apply(s, cli_live.Command("strength", 0.5), quit_event) == "strength 0.5"
    assert apply(s, cli_live.Command("emotion", "happy"), quit_event) == "emotion happy"
    assert s.converter.strength == 0.5  # the strength carries over to the next emotion
    assert apply(s, cli_live.Command("strength", 7.0), quit_event).startswith("strength: expected")
    assert apply(s, cli_live.Command("bypass"), quit_event) == "bypass on" and s.bypass
    assert not quit_event.is_set()
    apply(s, cli_live.Command("quit"), quit_event)
    assert quit_event.is_set()


def test_run_live_reads_stdin_until_q_and_prints_a_summary():
    s, err = FakeSession(), io.StringIO()
    stats = cli_live.run_live(s, NAMES, None, io.StringIO("angry\n0.8\nb\nq\n"), err)
    assert s.stopped and stats["emotion"] == "angry" and stats["strength"] == 0.8 and stats["bypass"]
    lines = err.getvalue().splitlines()
    assert lines == [f"note: {s.notes[0]}", "emotion angry", "strength 0.8", "bypass on", "live: summary"]


def test_run_live_quits_at_end_of_stdin_unless_a_duration_is_given():
    s = FakeSession()
    t0 = time.monotonic()
    cli_live.run_live(s, NAMES, None, io.StringIO(""), io.StringIO())
    assert s.stopped and time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    s = FakeSession()
    cli_live.run_live(s, NAMES, 0.3, io.StringIO(""), io.StringIO())
    assert time.monotonic() - t0 >= 0.3 and s.checks >= 3


def test_run_live_stops_the_session_when_its_device_vanishes():
    class Vanishing(FakeSession):
        def check(self):
            raise EVCError("the audio device stopped calling back")

    s = Vanishing()
    with pytest.raises(EVCError, match="stopped calling back"):
        cli_live.run_live(s, NAMES, 5.0, io.StringIO(""), io.StringIO())
    assert s.stopped


def test_status_line():
    s = FakeSession()
    s.converter.set_emotion("angry", 0.75)
    line = cli_live.format_status(s.stats())
    assert line == "angry 0.75 | compute p50 1.00 p99 2.00 ms RTF 0.100 | xruns 0 | dropped 0 late 0 | latency 80 ms"
    assert "\n" not in line


def test_default_emotion_is_the_first_non_neutral_entry():
    e = lambda name, category: SimpleNamespace(name=name, category=category)  # noqa: E731
    assert cli_live.default_emotion([]) is None
    assert cli_live.default_emotion([e("calm", "Neutral"), e("angry", "Angry"), e("sad", "Sad")]) == "angry"
    assert cli_live.default_emotion([e("neutral", "Neutral"), e("calm", "Neutral")]) == "neutral"
