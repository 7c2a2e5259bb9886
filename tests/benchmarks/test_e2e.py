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


@pytest.mark.audio
@pytest.mark.slow
def test_bypass_and_conversion_through_pulseaudio(tmp_path, capsys):
    if e2e.why_not(None):
        pytest.skip(e2e.why_not(None))
    model = write_toy_model(tmp_path / "toy", SignalSpec())
    out = tmp_path / "out"
    assert main(["bench", "e2e", "--model", str(model), "--seconds", "3", "--period", "0.5", "--out", str(out)]) == 0
    report = json.loads((out / "e2e.json").read_text())
    bypass, conversion = report["runs"]
    assert (bypass["mode"], conversion["mode"]) == ("bypass", "conversion")
    assert bypass["delay"]["found"] >= bypass["delay"]["bursts"] - 1 >= 3
    assert report["block_ms"] < bypass["delay"]["median_ms"] < 1000 * e2e.MAX_DELAY_S
    for run in report["runs"]:
        assert run["xruns"]["total"] >= 0 and run["late"] >= 0 and run["dropped"] >= 0 and run["blocks"] > 50
    assert (out / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bypass" in capsys.readouterr().out
