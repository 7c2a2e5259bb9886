"""`evc bench e2e`: burst location (no audio server needed) and a short run through PulseAudio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import e2e
from benchmarks.signals import click, click_train
from engine.cli import main
from engine.signal import SignalSpec
from support.toy_model import write_toy_model

RATE = 16000


def _recording(delay_s: float, noise: float = 0.0):
    """What a speaker monitor would hold: the burst train `delay_s` later, recording started 0.02 s
    after capture sample 0; (recording, t_first, capture times)."""
    signal, starts = click_train(5.0, 1.0, RATE)
    t_first = 0.02
    shift = int(round((delay_s - t_first) * RATE))
    rec = np.zeros(signal.size + shift, np.float32)
    rec[shift:] = signal
    rec += noise * np.random.default_rng(0).standard_normal(rec.size).astype(np.float32)
    return rec, t_first, [s / RATE for s in starts]


@pytest.mark.parametrize("delay_s", [0.0432, 0.3119, 1.7771])
def test_bursts_are_found_at_their_delay(delay_s):
    rec, t_first, captures = _recording(delay_s, noise=0.01)
    bursts = e2e.burst_delays(rec, t_first, captures, RATE, period=1.0)
    assert [b["method"] for b in bursts] == ["waveform"] * len(captures)
    np.testing.assert_allclose([b["delay_ms"] for b in bursts], 1000 * delay_s, atol=1000 / RATE)


def test_noise_finds_nothing_rather_than_a_guess():
    rec = 0.3 * np.random.default_rng(1).standard_normal(8 * RATE).astype(np.float32)
    bursts = e2e.burst_delays(rec, 0.0, [0.5, 1.5, 2.5], RATE, period=1.0)
    assert [b["delay_ms"] for b in bursts] == [None] * 3
    assert e2e._delay_summary(bursts) == {"bursts": 3, "found": 0, "method": None}


def test_a_burst_without_its_waveform_is_found_by_its_envelope():
    burst = click(0, RATE)
    other = np.random.default_rng(5).standard_normal(burst.size).astype(np.float32) * np.abs(burst)
    segment = np.zeros(RATE, np.float32)
    segment[4000:4000 + burst.size] = other
    offset, method = e2e.locate(segment, burst, RATE, envelope_span=RATE // 2)
    assert method == "envelope" and abs(offset - 4000) <= RATE // 1000
    assert e2e.locate(segment, burst, RATE, envelope_span=3000) is None  # beyond the span: not guessed


def test_skips_with_a_message_where_pulseaudio_is_absent(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("benchmarks.pulse.unavailable", lambda: "pulseaudio not found: install it")
    model = write_toy_model(tmp_path / "toy", SignalSpec())
    assert main(["bench", "e2e", "--model", str(model), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: pulseaudio not found" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "e2e.json").read_text())["skipped"].startswith("pulseaudio not found")


def test_near_silence_correlates_with_nothing():
    """A float path's 1e-8 floor (a vocoder's, through JACK) must not match a burst by its shape alone."""
    burst = click(0, RATE)
    floor = 1e-8 * np.random.default_rng(2).standard_normal(RATE).astype(np.float32)
    floor[2000:2000 + burst.size] += 1e-8 * burst / np.abs(burst).max()  # the burst's shape, but inaudible
    segment = np.concatenate([floor, np.zeros(RATE, np.float32)])
    segment[20000:20000 + burst.size] += burst
    offset, method = e2e.locate(segment, burst, RATE, envelope_span=RATE)
    assert (offset, method) == (20000, "waveform")


class Echo:
    """A converter stand-in: output = -input, so that each mode's output is recognisable."""

    def __init__(self, block: int, delay: int):
        self.spec, self.block_samples, self.delay_samples = SignalSpec(), block, delay
        self._out = np.zeros(block, np.float32)
        self.resets = 0

    def process(self, block):
        np.negative(block, out=self._out)
        return self._out

    def reset(self):
        self.resets += 1

    def stats(self):
        return {}


def test_interleaved_plays_each_burst_through_the_next_mode():
    block, delay = 320, 160
    conv = Echo(block, delay)
    switch = e2e.Interleaved(conv)
    signal, starts = click_train(6.0, 1.0, RATE)
    out = np.concatenate([switch.process(signal[i:i + block]).copy() for i in range(0, signal.size - block + 1, block)])
    assert switch.bursts == len(starts) == 5
    for k, s in enumerate(starts):
        burst = click(k, RATE)
        mode = e2e.MODES[k % 3]
        at = s + (delay if mode == "bypass" else 0)
        sign = -1.0 if mode == "conversion" else 1.0
        np.testing.assert_allclose(out[at:at + burst.size], sign * burst, atol=1e-7, err_msg=mode)
    assert [m for _, m in switch.onsets] == [e2e.MODES[k % 3] for k in range(5)]
    switch.reset()
    assert switch.bursts == 0 and not switch.onsets and conv.resets == 2  # once when built, once now


def test_each_burst_takes_the_mode_the_engine_played_it_through():
    onsets = [(10.02, "wire"), (11.03, "bypass"), (13.02, "conversion")]  # the burst at 12 s never reached it
    bursts = [{"capture_s": t} for t in (10.0, 11.0, 12.0, 13.0, 14.0)]
    assert e2e.modes_played(bursts, onsets, 1.0) == ["wire", "bypass", None, "conversion", None]


def test_added_delays_are_median_differences():
    modes = [{"mode": m, "delay": {"median_ms": v}} for m, v in zip(e2e.MODES, (40.0, 50.0, 61.5))]
    assert e2e.added_delays(modes) == {"conversion-wire": 21.5, "conversion-bypass": 11.5, "bypass-wire": 10.0}
    modes[2]["delay"] = {"found": 0}
    assert e2e.added_delays(modes)["conversion-wire"] is None


@pytest.mark.audio
@pytest.mark.slow
def test_wire_bypass_and_conversion_through_pulseaudio(tmp_path, capsys):
    if e2e.why_not("pulse"):
        pytest.skip(e2e.why_not("pulse"))
    model = write_toy_model(tmp_path / "toy", SignalSpec())
    out = tmp_path / "out"
    assert main(["bench", "e2e", "--model", str(model), "--seconds", "2", "--period", "0.5", "--out", str(out)]) == 0
    report = json.loads((out / "e2e.json").read_text())
    wire, bypass, _ = report["modes"]
    assert [m["mode"] for m in report["modes"]] == list(e2e.MODES)
    assert wire["delay"]["found"] >= wire["delay"]["bursts"] - 1 >= 2
    assert report["block_ms"] < wire["delay"]["median_ms"] < 1000 * e2e.MAX_DELAY_S
    # the bypass delay line is the model's lookahead (0 for the toy model): same delay within 2 ms
    assert report["added_ms"]["bypass-wire"] == pytest.approx(0.0, abs=2.0)
    assert report["bursts_seen_by_engine"] == sum(m["delay"]["bursts"] for m in report["modes"])
    assert report["bursts_seen_by_engine"] >= report["bursts_played"] - 1 >= 9  # 11 bursts in 6 s
    assert report["session"]["blocks"] > 100
    assert (out / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "conversion-wire" in capsys.readouterr().out
