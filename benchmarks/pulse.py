"""A private PulseAudio server with a FIFO microphone and a null-sink speaker.

    Mic (writer thread) ─s16le─► FIFO ─► module-pipe-source "mic"  ─► PortAudio input
    PortAudio output ─► module-null-sink "spk" ─► spk.monitor ─► parec ─► Recorder

The server runs as this user from a temporary directory (its socket, pid file, cookie
and log live there), so it never touches a desktop's sound server; `activate()` points
this process's PulseAudio clients (PortAudio through ALSA's pulse plugin) at it.

Time: the Mic writes one chunk per `chunk` samples of wall-clock time, each at the end
of the interval it covers, as a sound card delivers a microphone's samples; sample j
is "captured" at `mic.t0 + j / rate` (time.monotonic). The Recorder stamps every read
of parec's output; sample i of the recording was played no later than the read that
delivered it, and `t_first`, the earliest such bound moved back to sample 0, places
the recording on the same clock. Latency = play time - capture time.

Used by `evc bench e2e` and by the live-audio tests (which import it from here).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from engine.errors import EVCError

SINK, SOURCE = "spk", "mic"
START_TIMEOUT_S = 10.0
INSTALL_HINT = "install pulseaudio and pulseaudio-utils (Debian/Ubuntu: apt-get install pulseaudio pulseaudio-utils)"


def pulse_missing() -> str | None:
    """Why no private PulseAudio server can run here, or None when it can."""
    missing = [b for b in ("pulseaudio", "pactl", "parec") if shutil.which(b) is None]
    return f"{', '.join(missing)} not found: {INSTALL_HINT}" if missing else None


def _config(fifo: Path, rate: int) -> str:
    """The server's startup script.

    A pipe source with no recording client stops reading its FIFO, which then fills with
    up to 2 s of audio that the next client receives at once: a duplex stream would
    carry that backlog as latency forever. A loopback into a second null sink keeps one
    client on the source, so it always reads in real time, as a sound card captures.
    auth-anonymous: the socket sits in a 0700 directory, so only this user reaches it
    anyway, and clients need no cookie from the server's private HOME.
    """
    return "\n".join([
        f"load-module module-null-sink sink_name={SINK} rate={rate} channels=1",
        f"load-module module-null-sink sink_name=drain rate={rate} channels=1",
        f"load-module module-pipe-source source_name={SOURCE} file={fifo} format=s16le rate={rate} channels=1",
        f"load-module module-loopback source={SOURCE} sink=drain latency_msec=20",
        f"set-default-sink {SINK}",
        f"set-default-source {SOURCE}",
        "load-module module-native-protocol-unix auth-anonymous=1",
        "",
    ])


def to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class Mic:
    """Feeds the pipe source in real time: queued audio, else silence, one chunk per interval."""

    def __init__(self, fifo: Path, rate: int, chunk: int):
        self.fifo, self.rate, self.chunk = fifo, rate, chunk
        self.t0: float | None = None
        self.written = 0
        self.late_writes = 0
        self._queue = np.zeros(0, np.float32)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pulse-mic", daemon=True)

    def start(self) -> Mic:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise EVCError(f"could not open the PulseAudio pipe source's FIFO {self.fifo}")
        return self

    def _run(self) -> None:
        fd = os.open(self.fifo, os.O_WRONLY)
        try:
            self.t0 = time.monotonic()
            self._started.set()
            while not self._stop.is_set():
                self._tick(fd)
        finally:
            os.close(fd)

    def _tick(self, fd: int) -> None:
        """Write the next chunk at the end of the interval it covers."""
        wait = self.t0 + (self.written + self.chunk) / self.rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -self.chunk / self.rate:
            self.late_writes += 1
        with self._lock:
            x, self._queue = self._queue[: self.chunk], self._queue[self.chunk:]
        os.write(fd, to_pcm16(np.pad(x, (0, self.chunk - x.size))))
        self.written += self.chunk

    def play(self, x: np.ndarray) -> int:
        """Queue (N,) float32 after what is queued; returns the index of its first sample."""
        with self._lock:
            start = self.written + self._queue.size
            self._queue = np.concatenate([self._queue, np.asarray(x, np.float32)])
        return start

    def wait(self) -> None:
        """Until everything queued has been written."""
        while self._queue.size:
            time.sleep(self.chunk / self.rate)

    def capture_time(self, sample: int) -> float:
        """time.monotonic() at which sample index `sample` was captured."""
        return self.t0 + sample / self.rate

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


class Recorder:
    """parec on the speaker's monitor, read in a thread that stamps every read."""

    def __init__(self, env: dict, rate: int, latency_ms: int = 10):
        cmd = ["parec", f"--device={SINK}.monitor", f"--rate={rate}", "--channels=1", "--format=s16le", "--raw",
               f"--latency-msec={latency_ms}"]
        self.rate = rate
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self._chunks: list[bytes] = []
        self._bounds: list[float] = []
        self._thread = threading.Thread(target=self._read, name="pulse-recorder", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        n = 0
        while True:
            data = self._proc.stdout.read1(4096)
            if not data:
                return
            stamp = time.monotonic()
            self._chunks.append(data)
            n += len(data) // 2
            self._bounds.append(stamp - n / self.rate)

    def stop(self) -> tuple[np.ndarray, float]:
        """(recording (N,) float32, monotonic time of its sample 0)."""
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait(timeout=5.0)
        self._thread.join(timeout=5.0)
        raw = b"".join(self._chunks)
        x = np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.float32) / 32767.0
        if not self._bounds:
            raise EVCError("the PulseAudio recorder (parec) delivered nothing")
        return x, min(self._bounds)


class PulseServer:
    """Start with `with PulseServer() as pa:`; pa.mic, pa.record(), pa.activate()."""

    def __init__(self, rate: int = 16000, chunk: int = 160):
        self.rate, self.chunk = rate, chunk
        self.dir: Path | None = None
        self.mic: Mic | None = None
        self._pid: int | None = None
        self._saved_env: dict | None = None

    @property
    def env(self) -> dict:
        """Variables that point PulseAudio clients at this server."""
        run = self.dir / "run"
        return {"PULSE_RUNTIME_PATH": str(run), "PULSE_SERVER": f"unix:{run / 'native'}"}

    def start(self) -> PulseServer:
        why = pulse_missing()
        if why:
            raise EVCError(f"no PulseAudio: {why}")
        self.dir = Path(tempfile.mkdtemp(prefix="evc-pulse-"))
        try:
            self._launch()
            self.mic = Mic(self.dir / "mic.fifo", self.rate, self.chunk).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        (self.dir / "run").mkdir(mode=0o700)
        config = self.dir / "server.pa"
        config.write_text(_config(self.dir / "mic.fifo", self.rate))
        env = {**os.environ, **self.env, "HOME": str(self.dir)}  # its cookie and state stay in our directory
        cmd = ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit", "-n", "-F", str(config),
               f"--log-target=file:{self.dir / 'pulse.log'}"]
        subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        pid_file = self.dir / "run" / "pid"
        if pid_file.is_file():
            self._pid = int(pid_file.read_text().split()[0])
        self._wait_for_source()

    def _wait_for_source(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            out = subprocess.run(["pactl", "list", "short", "sources"], env={**os.environ, **self.env},
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and any(line.split("\t")[1:2] == [SOURCE] for line in out.stdout.splitlines()):
                return
            time.sleep(0.1)
        raise EVCError(f"the private PulseAudio server did not come up: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        log = self.dir / "pulse.log" if self.dir else None
        if log is None or not log.is_file():
            return "no log"
        errors = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("E:")]
        return " | ".join(errors[-lines:]) or "no error logged"

    def activate(self) -> None:
        """Point this process's PulseAudio clients here and make PortAudio rescan its devices."""
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        _reinit_portaudio()

    def record(self) -> Recorder:
        return Recorder({**os.environ, **self.env}, self.rate)

    def stop(self) -> None:
        if self.mic is not None:
            self.mic.stop()
            self.mic = None
        self._restore_env()
        if self._pid is not None:
            _terminate(self._pid)
            self._pid = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _restore_env(self) -> None:
        if self._saved_env is None:
            return
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = None
        _reinit_portaudio()

    def __enter__(self) -> PulseServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _reinit_portaudio() -> None:
    """PortAudio lists devices once, at initialisation: start it again so it sees this server."""
    try:
        import sounddevice as sd
    except (ImportError, OSError):
        return  # no PortAudio: nothing to rescan; the caller reports it when it opens a stream
    sd._terminate()
    sd._initialize()


def _terminate(pid: int) -> None:
    """SIGTERM the daemon we started, by its pid; wait up to 5 s for it to go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
