"""A private JACK 2 server on its dummy backend, and a JACK client that is the harness.

    jackd -d dummy (the clock: one period of `period` samples at a time, no sound card)
    evc-bench:mic ──► PortAudio's JACK input port  ─► engine ─► PortAudio's JACK output port ──► evc-bench:spk

Low-latency users run JACK; PortAudio (Debian's is built with JACK) reaches it through
its "JACK Audio Connection Kit" host API. The server runs under a name of its own
(JACK_DEFAULT_SERVER in this process while active), so a user's JACK server is never
touched. The harness is a JACK client of ours (the JACK-Client package): its `mic`
port plays what Mic.play queued, its `spk` port is recorded, and a watcher thread
connects every port the engine's PortAudio stream registers to them.

Time is JACK's frame count: sample j of the microphone and sample j of the recording
are handled in the same process cycle, so capture_time and started_at share one
origin (the first cycle) and a delay is exact to the sample, whatever the wall clock.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import numpy as np

from benchmarks.pulse import QueuedMic, _end, _reinit_portaudio, wait_until_up
from engine.errors import EVCError

HOST_API = "JACK Audio Connection Kit"
INSTALL_HINT = ("install jackd2 and the JACK-Client package (Debian/Ubuntu: apt-get install jackd2; "
                "pip install JACK-Client)")
START_TIMEOUT_S = 10.0
CONNECT_POLL_S = 0.02


def unavailable() -> str | None:
    """Why a private JACK server cannot serve PortAudio here, or None when it can."""
    if shutil.which("jackd") is None:
        return f"jackd not found: {INSTALL_HINT}"
    try:
        import jack  # noqa: F401  (JACK-Client: imports libjack through cffi)
    except (ImportError, OSError) as e:
        return f"the JACK client library is not usable ({e}): {INSTALL_HINT}"
    return None


SERVER_NAME = "evc-private"
"""One name for every private server: JACK keeps a small table of servers in shared memory and
frees a SIGKILLed server's entry only when a server of the same name registers. With a name
per run, seven killed servers (the kill-mid-run test) left no room and jackd failed to start
on the machine until /dev/shm/jack-shm-registry was removed. Two benchmarks cannot share a
machine's JACK at once: the second one's server fails to start, and says so. Not the harness
client's name (evc-bench): a server named like its client hid PortAudio's JACK host API."""


class JackMic(QueuedMic):
    """The harness's microphone: queued audio, else silence, one JACK period at a time;
    late_writes counts the JACK xruns the harness client sees."""

    def fill(self, out: np.ndarray) -> None:
        """Called in the process cycle: out := the next len(out) queued samples, zero-padded."""
        x = self.take(out.size)
        out[: x.size] = x
        out[x.size:] = 0.0


class JackRecorder:
    """The speaker port's audio from the cycle it was made in; stop() -> (N,) float32."""

    def __init__(self, mic: JackMic):
        self.started_at = mic.capture_time(mic.written)
        self._chunks: list[np.ndarray] = []
        self.recording = True

    def take(self, x: np.ndarray) -> None:
        if self.recording:
            self._chunks.append(x.copy())

    def stop(self) -> np.ndarray:
        self.recording = False
        if not self._chunks:
            raise EVCError("the JACK recorder received nothing")
        return np.concatenate(self._chunks)


class JackServer:
    """`with JackServer(rate, period=80) as j:` then j.mic, j.record(), j.activate(); see the module doc."""

    name = "JACK"

    @staticmethod
    def unavailable() -> str | None:
        return unavailable()  # the module's, looked up at call time (tests replace it)

    def __init__(self, rate: int = 16000, chunk: int = 160, period: int | None = None):
        self.rate = rate
        self.period = period or rate // 200  # 5 ms
        self.server_name = SERVER_NAME
        self.dir: str | None = None
        self.mic: JackMic | None = None
        self.input_device: int | None = None
        self.output_device: int | None = None
        self._proc: subprocess.Popen | None = None
        self._client = None
        self._recorder: JackRecorder | None = None
        self._saved: str | None = None
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> JackServer:
        why = unavailable()
        if why:
            raise EVCError(f"no JACK: {why}")
        self.dir = tempfile.mkdtemp(prefix="evc-jack-")
        try:
            self._launch(timeout)
            self._open_client()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, timeout: float) -> None:
        env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1", "JACK_NO_START_SERVER": "1"}
        self._log = open(os.path.join(self.dir, "server.log"), "wb")
        self._proc = subprocess.Popen(
            ["jackd", "--no-realtime", "-n", self.server_name, "-d", "dummy", "-r", str(self.rate),
             "-p", str(self.period), "-C", "1", "-P", "1"],
            env=env, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)
        wait_until_up(self._ready, [self._proc], timeout, "JACK", self.log_tail)

    def _ready(self) -> bool:
        out = subprocess.run(["jack_lsp", "-s", self.server_name], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "JACK_NO_START_SERVER": "1"}) if shutil.which("jack_lsp") else None
        return out is not None and out.returncode == 0 and "system:playback_1" in out.stdout

    def _open_client(self) -> None:
        import jack

        self.mic = JackMic(self.rate)
        client = jack.Client("evc-bench", servername=self.server_name, no_start_server=True)
        mic_port, spk_port = client.outports.register("mic"), client.inports.register("spk")

        @client.set_process_callback
        def process(frames: int) -> None:
            if self.mic.t0 is None:
                self.mic.t0 = time.monotonic()
            self.mic.fill(mic_port.get_array())
            if self._recorder is not None:
                self._recorder.take(spk_port.get_array())

        @client.set_xrun_callback
        def xrun(delay: float) -> None:
            self.mic.late_writes += 1

        client.activate()
        self._client = client
        self._watching.set()
        self._watcher = threading.Thread(target=self._connect_engine, name="jack-connect", daemon=True)
        self._watcher.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.mic.t0 is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _connect_engine(self) -> None:
        """Connect each port another client (PortAudio's) registers: its inputs to our mic, our spk to its outputs."""
        client, done = self._client, set()
        while self._watching.is_set():
            try:
                for port in client.get_ports(is_audio=True):
                    owner = port.name.split(":", 1)[0]
                    if owner in ("system", "evc-bench") or port.name in done:
                        continue
                    if port.is_input:
                        client.connect("evc-bench:mic", port.name)
                    else:
                        client.connect(port.name, "evc-bench:spk")
                    done.add(port.name)
                done &= {p.name for p in client.get_ports(is_audio=True)}
            except Exception:  # the server went away (kill()) or the port vanished between two calls
                if self._proc is None or self._proc.poll() is not None:
                    return
            time.sleep(CONNECT_POLL_S)

    def activate(self) -> None:
        """Point this process's JACK clients (PortAudio) at this server and find its PortAudio devices."""
        if self._saved is None:
            self._saved = os.environ.get("JACK_DEFAULT_SERVER", "")
        os.environ["JACK_DEFAULT_SERVER"] = self.server_name
        os.environ["JACK_NO_START_SERVER"] = "1"
        _reinit_portaudio()
        import sounddevice as sd

        apis = [i for i, a in enumerate(sd.query_hostapis()) if a["name"] == HOST_API]
        if not apis:
            raise EVCError("PortAudio here was built without JACK support (no 'JACK Audio Connection Kit' host API)")
        api = sd.query_hostapis(apis[0])
        self.input_device, self.output_device = api["default_input_device"], api["default_output_device"]

    def record(self) -> JackRecorder:
        self._recorder = JackRecorder(self.mic)
        return self._recorder

    def config(self, cfg):
        """The engine settings for JACK: two callbacks per block where JACK periods divide half a
        block, so a converted block plays from the next half block, not a whole block later.

        Not one callback per period: the worker must then finish a block within one period,
        and with 5 ms periods and 20 ms blocks (four callbacks) 7 and 31 of 3280 blocks were
        late in two 65 s runs (the worst blocks take 5-10 ms), none with two callbacks.
        """
        half = cfg.spec.block_samples // 2
        if cfg.spec.block_samples % 2 or half % self.period:
            return cfg
        return dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, callbacks_per_block=2))

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = open(os.path.join(self.dir, "server.log"), errors="replace").read()
        except (OSError, TypeError):
            return "no log"
        return " | ".join(text.strip().splitlines()[-lines:]) or "no error logged"

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self._watching.clear()
        if self._saved is not None:
            os.environ["JACK_DEFAULT_SERVER"] = self._saved
            if not self._saved:
                del os.environ["JACK_DEFAULT_SERVER"]
            self._saved = None
            _reinit_portaudio()
        if self._client is not None:
            try:
                self._client.deactivate()
                self._client.close()
            except Exception:  # the server is already gone: nothing left to close
                pass
            self._client = None
        if self._proc is not None:
            _end(self._proc)
            self._proc = None
            self._log.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
