"""A private PulseAudio server with a FIFO microphone and a null-sink speaker.

    Mic (writer thread) ─s16le─► FIFO ─► module-pipe-source "mic"  ─► PortAudio input
    PortAudio output ─► module-null-sink "spk" ─► spk.monitor ─► parec ─► Recorder

The server is our child process (foreground, so stop() ends exactly it), runs from a
temporary directory (socket, cookie, state and log live there) and never touches a
desktop's sound server. `env` reaches it from client subprocesses; `activate()` points
this process's clients (PortAudio through ALSA's pulse plugin) at it and makes
PortAudio, which lists devices once at initialisation, look again.

Facts checked with PulseAudio 16.1 on Debian 12, as root: module-pipe-source creates
its FIFO (and fails if the path exists); it delivers nothing while nobody writes, so
the Mic writes silence all the time; with no recording client it stops reading, and
the backlog would reach the next client (see _config).

Time: the Mic writes one chunk per `chunk` samples of wall-clock time, each at the end
of the interval it covers, as a sound card delivers a microphone's samples; sample j
is "captured" at `mic.capture_time(j) = mic.t0 + j / rate` (time.monotonic). The
Recorder stamps every read of parec's output; a sample is read no earlier than it is
played, so the earliest read time moved back to sample 0, `started_at`, places the
recording on the same clock. Latency = play time - capture time.

The one harness: `evc bench e2e` and the live-audio tests both use it.
"""

from __future__ import annotations

import array
import ctypes.util
import fcntl
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

import numpy as np

from engine.errors import EVCError

SINK, SOURCE = "spk", "mic"
START_TIMEOUT_S = 10.0
INSTALL_HINT = "install pulseaudio and pulseaudio-utils (Debian/Ubuntu: apt-get install pulseaudio pulseaudio-utils)"


def unavailable() -> str | None:
    """Why a private PulseAudio server cannot serve PortAudio here, or None when it can."""
    return missing_programs(("pulseaudio", "pactl", "parec"), INSTALL_HINT) or missing_libraries()


def missing_programs(programs: tuple[str, ...], hint: str) -> str | None:
    missing = [b for b in programs if shutil.which(b) is None]
    return f"{', '.join(missing)} not found: {hint}" if missing else None


def missing_libraries() -> str | None:
    """Why PortAudio cannot reach a PulseAudio-protocol server here (no PortAudio, no ALSA pulse plugin)."""
    if ctypes.util.find_library("portaudio") is None:
        return "the PortAudio library is not found (Debian/Ubuntu: apt-get install libportaudio2)"
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") + glob.glob(
            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"):
        return "ALSA's pulse plugin is not found (Debian/Ubuntu: apt-get install libasound2-plugins)"
    return None


def _config(fifo: Path, socket: Path, rate: int) -> str:
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
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}",
        "",
    ])


def to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class QueuedMic:
    """A harness microphone: audio queued by play(), taken in real time by the server side
    (take), silence when nothing is queued. Sample j is "captured" at t0 + j / rate."""

    poll_s = 0.005

    def __init__(self, rate: int):
        self.rate = rate
        self.t0: float | None = None
        self.written = 0
        self.late_writes = 0
        self.max_backlog_ms = 0.0
        """The most audio written but not yet read by the server (a FIFO's unread bytes); a
        callback-fed microphone hands its audio over as it is taken and keeps 0."""
        self._queue = np.zeros(0, np.float32)
        self._lock = threading.Lock()

    def take(self, n: int) -> np.ndarray:
        """The next (<= n,) queued samples; `written` advances by n (the rest is silence).

        Under the lock, so that play() sees `written` and the queue move together."""
        with self._lock:
            x, self._queue = self._queue[:n], self._queue[n:]
            self.written += n
        return x

    def play(self, audio: np.ndarray) -> int:
        """Queue (N,) float32 after what is queued; returns the index of its first sample
        (capture_time(index) is when it is 'spoken')."""
        with self._lock:
            start = self.written + self._queue.size
            self._queue = np.concatenate([self._queue, np.asarray(audio, np.float32)])
        return start

    def wait(self, timeout: float | None = None) -> bool:
        """True once everything queued has been taken (False when timeout seconds pass first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.size:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(self.poll_s)
        return True

    def capture_time(self, sample: int) -> float:
        """time.monotonic() at which sample index `sample` was captured."""
        return self.t0 + sample / self.rate

    @property
    def queued_samples(self) -> int:
        return self._queue.size


class Mic(QueuedMic):
    """Feeds the pipe source in real time: queued audio, else silence, one chunk per interval;
    late_writes counts wake-ups more than a chunk late (caught up, see _tick)."""

    def __init__(self, fifo: Path, rate: int, chunk: int):
        super().__init__(rate)
        self.fifo, self.chunk = fifo, chunk
        self.poll_s = chunk / rate
        self._stop = threading.Event()
        self._started = threading.Event()
        self._fd = os.open(fifo, os.O_WRONLY)
        self._thread = threading.Thread(target=self._run, name="pulse-mic", daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        self.t0 = time.monotonic()
        self._started.set()
        try:
            while not self._stop.is_set():
                self._tick()
        except OSError:  # the server went away: nothing left to feed
            return

    def _tick(self) -> None:
        """Write the next chunk at the end of the interval it covers (absolute deadlines: a late
        wake-up is caught up, so the rate stays exact)."""
        wait = self.t0 + (self.written + self.chunk) / self.rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -self.chunk / self.rate:
            self.late_writes += 1
        x = self.take(self.chunk)
        self.max_backlog_ms = max(self.max_backlog_ms, 1000.0 * unread_bytes(self._fd) / 2 / self.rate)
        os.write(self._fd, to_pcm16(np.pad(x, (0, self.chunk - x.size))))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """After the server is gone, so that a write blocked on a full pipe has returned."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        os.close(self._fd)


def unread_bytes(fd: int) -> int:
    """Bytes written to a pipe and not yet read (FIONREAD; Linux answers it on either end)."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


class Recorder:
    """parec of the speaker's monitor into memory; `started_at` places it on time.monotonic()."""

    def __init__(self, env: dict, rate: int, latency_ms: int = 10):
        cmd = ["parec", f"--device={SINK}.monitor", f"--rate={rate}", "--channels=1", "--format=s16le", "--raw",
               f"--latency-msec={latency_ms}"]
        self.rate = rate
        self.started_at = float("inf")
        self._data = bytearray()
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self._thread = threading.Thread(target=self._read, name="pulse-recorder", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = self._proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            self._data += chunk
            # data arrives late, never early: each read bounds the time of sample 0 from above
            self.started_at = min(self.started_at, time.monotonic() - len(self._data) // 2 / self.rate)

    def stop(self) -> np.ndarray:
        """Stop recording; the recording, (N,) float32."""
        self._proc.terminate()
        self._proc.wait(timeout=5.0)
        self._thread.join(timeout=5.0)
        if not self._data:
            raise EVCError("the PulseAudio recorder (parec) delivered nothing")
        n = len(self._data) // 2
        return np.frombuffer(bytes(self._data[: 2 * n]), "<i2").astype(np.float32) / 32768.0


class PulseServer:
    """A private server as our child process: `with PulseServer() as pa:`, then pa.mic, pa.record(),
    pa.env (the environment for client subprocesses) or pa.activate() (for this process)."""

    name = "PulseAudio"
    input_device = output_device = "pulse"
    """The PortAudio devices (ALSA's pulse plugin) that reach the server activate() points at."""

    @staticmethod
    def unavailable() -> str | None:
        return unavailable()  # the module's, looked up at call time (tests replace it)

    def __init__(self, rate: int = 16000, chunk: int = 160, period: int | None = None):
        """period: the microphone's write size in samples (default chunk, 10 ms at 16 kHz)."""
        self.rate, self.chunk = rate, period or chunk
        self.dir: Path | None = None
        self.mic: Mic | None = None
        self._proc: subprocess.Popen | None = None
        self._saved_env: dict | None = None

    @property
    def pulse_env(self) -> dict:
        """The variables that point PulseAudio clients at this server."""
        return {"PULSE_RUNTIME_PATH": str(self.dir / "runtime"), "PULSE_STATE_PATH": str(self.dir / "state"),
                "PULSE_SERVER": f"unix:{self.dir / 'native'}"}

    @property
    def env(self) -> dict:
        """This process's environment with pulse_env, for client subprocesses."""
        return {**os.environ, **self.pulse_env}

    def start(self, timeout: float = START_TIMEOUT_S) -> PulseServer:
        why = self.unavailable()
        if why:
            raise EVCError(f"no {self.name}: {why}")
        self.dir = Path(tempfile.mkdtemp(prefix="evc-pulse-"))
        try:
            self._launch(timeout)
            self.mic = Mic(self.dir / "mic.fifo", self.rate, self.chunk)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, timeout: float) -> None:
        """Run the server in the foreground as our child, so that stop() ends exactly that process."""
        for sub in ("runtime", "state", "home"):
            (self.dir / sub).mkdir(mode=0o700)
        config = self.dir / "server.pa"
        config.write_text(_config(self.dir / "mic.fifo", self.dir / "native", self.rate))
        env = {**self.env, "HOME": str(self.dir / "home")}  # its cookie stays in our directory
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # never register with a desktop session
        self._proc = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "-F", str(config), "--use-pid-file=no",
             "--realtime=no", "--high-priority=no", f"--log-target=file:{self.dir / 'server.log'}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(self._ready, [self._proc], timeout, "PulseAudio", self.log_tail)

    def _ready(self) -> bool:
        if not (self.dir / "mic.fifo").exists():
            return False
        out = subprocess.run(["pactl", "list", "short", "sources"], env=self.env, capture_output=True, text=True,
                             timeout=10)
        return out.returncode == 0 and f"\t{SOURCE}\t" in out.stdout

    def log(self) -> str:
        path = self.dir / "server.log" if self.dir else None
        return path.read_text(errors="replace")[-4000:] if path and path.is_file() else "(no log)"

    def log_tail(self, lines: int = 3) -> str:
        """The server log's last error lines, on one line."""
        errors = [line for line in self.log().splitlines() if line.startswith("E:")]
        return " | ".join(errors[-lines:]) or "no error logged"

    def activate(self) -> None:
        """Point this process's PulseAudio clients here and make PortAudio rescan its devices."""
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in self.pulse_env}
        os.environ.update(self.pulse_env)
        _reinit_portaudio()

    def record(self) -> Recorder:
        return Recorder(self.env, self.rate)

    def config(self, cfg):
        """The engine settings for this server: as they are (PortAudio's 'low' latency suits it)."""
        return cfg

    def kill(self) -> None:
        """SIGKILL the server, as when a desktop's sound server crashes under a running session."""
        if self._proc is not None:
            self._proc.kill()

    def stop(self) -> None:
        if self.mic is not None:
            self.mic.stop()
        self._restore_env()
        if self._proc is not None:
            _end(self._proc)
            self._proc = None
        if self.mic is not None:
            self.mic.close()
            self.mic = None
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
    from engine.devices import portaudio_abandoned

    try:
        import sounddevice as sd
    except (ImportError, OSError):
        return  # no PortAudio: nothing to rescan; the caller reports it when it opens a stream
    if portaudio_abandoned():
        return  # Pa_Terminate would wait forever on the stream that hung
    sd._terminate()
    sd._initialize()


def wait_until_up(ready, procs: list[subprocess.Popen], timeout: float, server: str, log_tail,
                  step: str | None = None) -> None:
    """Poll ready() every 0.1 s; a one-line EVCError (with the server log's tail) when one of
    the server's processes exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [str(p.args[0]) for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else f"not ready after {timeout:g} s"
            raise EVCError(f"the private {server} server did not come up ({f'{step}: ' if step else ''}{why}): "
                           f"{log_tail()}")
        time.sleep(0.1)


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM our server child; SIGKILL it if it has not gone within 5 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
