"""The PulseAudio harness itself: its server, microphone clock and recorder."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

from benchmarks.pulse import PulseServer, to_pcm16, unavailable, unread_bytes
from benchmarks.signals import click

pytestmark = [pytest.mark.audio, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]


def test_the_speaker_monitor_records_what_is_played(tmp_path):
    burst = click(3)
    with PulseServer() as pa:
        recorder = pa.record()
        time.sleep(0.3)
        pcm = tmp_path / "burst.raw"
        pcm.write_bytes(to_pcm16(np.concatenate([np.zeros(1600, np.float32), burst, np.zeros(1600, np.float32)])))
        subprocess.run(["pacat", "--playback", "--device=spk", "--rate=16000", "--channels=1", "--format=s16le",
                        "--raw", str(pcm)], env=pa.env, check=True, timeout=10)
        time.sleep(0.3)
        recording = recorder.stop()
    c = np.correlate(recording, burst, mode="valid") / np.dot(burst, burst)
    assert c.max() == pytest.approx(1.0, abs=0.01)
    assert np.isfinite(recorder.started_at)


def test_the_microphone_keeps_wall_clock_time():
    with PulseServer() as pa:
        time.sleep(1.0)
        written, elapsed = pa.mic.written, time.monotonic() - pa.mic.t0
        first = pa.mic.play(np.zeros(800, np.float32))
        assert pa.mic.wait(timeout=2.0)
        backlog_ms = pa.mic.max_backlog_ms
    assert abs(written / 16000 - elapsed) < 0.05
    assert first >= written
    assert 0.0 <= backlog_ms < 100.0  # the server reads the pipe as it is written


def test_unread_bytes_counts_what_the_pipe_holds():
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"\0" * 320)
        assert unread_bytes(write_end) == unread_bytes(read_end) == 320
        os.read(read_end, 120)
        assert unread_bytes(write_end) == 200
    finally:
        os.close(read_end)
        os.close(write_end)


def test_stop_ends_the_server_and_restores_the_environment():
    before = os.environ.get("PULSE_SERVER")
    pa = PulseServer().start()
    directory, proc = pa.dir, pa._proc
    pa.activate()
    assert os.environ["PULSE_SERVER"] == f"unix:{directory / 'native'}"
    pa.stop()
    assert proc.poll() is not None and not directory.exists()
    assert os.environ.get("PULSE_SERVER") == before
