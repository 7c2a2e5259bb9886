"""Live audio through each private audio server: PulseAudio, PipeWire (its PulseAudio interface)
and JACK (dummy backend). `evc live` and the e2e benchmark run a few seconds each with no xrun;
a server killed under a running session ends it with one line; unknown names are refused.

A server that is not installed, or cannot start on this machine, skips its tests with the reason.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import e2e, servers
from engine.cli import main
from engine.errors import EVCError
from engine.live import CLOSE_TIMEOUT_S, STALL_S
from engine.signal import SignalSpec
from support.toy_model import write_toy_model

pytestmark = [pytest.mark.audio, pytest.mark.slow]
RATE = 16000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("toy") / "model", SignalSpec())


@pytest.fixture(params=servers.SERVERS)
def server_name(request) -> str:
    """Each server's name; skipped with the reason where it is not installed."""
    why = e2e.why_not(request.param)
    if why:
        pytest.skip(f"{request.param}: {why}")
    return request.param


@pytest.fixture
def server(server_name):
    """A started server of each kind, active in this process; skipped with the reason where it cannot start."""
    started = servers.audio_server(server_name, RATE)
    try:
        srv = started.__enter__()
    except EVCError as e:
        pytest.skip(f"{server_name} cannot start here: {e}")
    try:
        yield server_name, srv
    finally:
        started.__exit__(None, None, None)


def _engine_yaml(tmp_path, toy, server: str):
    """The toy model through `server`; through JACK in two callbacks per 20 ms block."""
    path = tmp_path / "engine.yaml"
    callbacks = 2 if server == "jack" else 1
    path.write_text(f"signal:\n  lookahead_frames: 0\nmodel:\n  dir: {toy}\nruntime:\n  providers: [cpu]\n"
                    f"audio:\n  server: {server}\n  callbacks_per_block: {callbacks}\n")
    return path


CLEAN = "xruns 0 (none); dropped 0, late 0"


def _live_summary(config: Path, monkeypatch, capsys) -> str:
    """The summary line of a 3 s `evc live` session with `config`."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc = main(["--config", str(config), "live", "--duration", "3"])
    err = capsys.readouterr().err
    summary = [line for line in err.splitlines() if line.startswith("live:")]
    assert rc == 0 and summary, err
    return summary[-1]


def test_evc_live_runs_through_the_server_without_xruns(server, toy, tmp_path, monkeypatch, capsys):
    config = _engine_yaml(tmp_path, toy, server[0])
    # Up to three sessions: JACK's dummy backend without realtime scheduling missed a cycle or two in
    # 1 of 3 runs on this 2-core VM with nothing else running (block compute p99 0.56 ms), and in two
    # sessions running one after the other in a full test run of a fresh clone (PortAudio input
    # overflow and output underflow, compute p99 0.63 ms of the 20 ms block); an engine that cannot
    # keep up fails all three
    for _ in range(3):
        summary = _live_summary(config, monkeypatch, capsys)
        if CLEAN in summary:
            break
    assert CLEAN in summary, summary


def _server_fault(report: dict) -> bool:
    """The server, not the engine, spoiled the run: it missed a cycle (JACK without realtime
    scheduling, on a busy machine: xruns with the server's late microphone writes, or xruns while
    the engine converted every block in time, 2 PortAudio flags in one of three full test runs of a
    fresh clone on an idle machine), or delivered bursts to the engine late or not at all (PipeWire,
    once in CI's fresh machine and once in a fresh clone: no xrun, and no burst played through
    wire mode; the report did not say more then). The engine saw every block, so a burst it did
    not see within half a period of its capture came late from the server."""
    session = report["session"]
    engine_in_time = session["late"] == 0 and session["dropped"] == 0
    late_server = session["xruns"]["total"] and (session["mic_late_writes"] or engine_in_time)
    return bool(late_server) or report["bursts_seen_by_engine"] < report["bursts_played"]


def test_the_e2e_benchmark_runs_through_the_server_without_xruns(server_name, toy):
    report = e2e.run(toy, seconds=1.5, period=0.5, setup=servers.LiveSetup(server_name))
    if _server_fault(report):  # one more run: the engine must then keep up and hear every burst
        report = e2e.run(toy, seconds=1.5, period=0.5, setup=servers.LiveSetup(server_name))
    json.dumps(report)
    session = report["session"]
    assert session["xruns"]["total"] == 0 and session["late"] == 0 and session["dropped"] == 0, session
    wire = report["modes"][0]["delay"]
    found = {m["mode"]: m["delay"] for m in report["modes"]}
    seen = f"{report['bursts_seen_by_engine']} of {report['bursts_played']} bursts seen by the engine"
    assert wire["found"] >= 2 and report["block_ms"] < wire["median_ms"] < 500.0, (seen, found, session)


KILL_CHILD = """
import sys, time
from benchmarks import e2e, servers
from engine.config import config_from_dict
from engine.errors import EVCError
from engine.live import LiveSession

with servers.audio_server(sys.argv[1], 16000) as srv:
    cfg = srv.config(config_from_dict({"signal": {"lookahead_frames": 0}, "model": {"dir": sys.argv[2]},
                                       "runtime": {"providers": ["cpu"]}}))
    session = LiveSession(e2e.converter_with_probe(cfg), cfg, srv.input_device, srv.output_device)
    session.start()
    time.sleep(1.0)
    session.check()
    srv.kill()
    killed = time.monotonic()
    try:
        while time.monotonic() - killed < 30:
            session.check()
            time.sleep(0.1)
        print("NOT NOTICED")
    except EVCError as e:
        print(f"ERROR {time.monotonic() - killed:.2f} {e}")
    session.stop()
"""


def test_a_server_killed_mid_run_ends_the_session_with_one_line(server_name, toy):
    """In a child process, so that the exit is tested too: PortAudio may hang for good closing a
    stream whose server died (JACK), and the process must still end."""
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, server_name, str(toy)], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    lines = [line for line in child.stdout.splitlines() if line.startswith(("ERROR", "NOT"))]
    assert child.returncode == 0 and len(lines) == 1, child.stdout + child.stderr[-2000:]
    _, noticed_after, message = lines[0].split(" ", 2)
    assert "audio device stopped" in message or "live conversion stopped" in message, message
    assert float(noticed_after) < STALL_S + CLOSE_TIMEOUT_S + 2.0
    assert time.monotonic() - start < 45.0


def test_an_unknown_server_name_is_refused(tmp_path, toy, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "e2e", "--model", str(toy), "--server", "alsa-direct"])
    assert e.value.code == 2 and "invalid choice: 'alsa-direct'" in capsys.readouterr().err
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("audio:\n  server: oss\n")
    assert main(["--config", str(cfg), "live", "--duration", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "audio.server" in err[0], err
    with pytest.raises(EVCError, match="unknown audio server 'oss'"):
        servers.unavailable("oss")

