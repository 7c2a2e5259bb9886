"""A private PulseAudio server for live-audio tests: a FIFO microphone and a null-sink speaker.

    writer thread ──s16le──► FIFO ──► module-pipe-source "mic" (default source) ──► PortAudio input
    parec ◄──s16le── "spk.monitor" ◄── module-null-sink "spk" (default sink)    ◄── PortAudio output

PortAudio reaches the server through ALSA's `pulse`/`default` devices (the ALSA plugin
from libasound2-plugins, a dependency of Debian's pulseaudio package). Facts that
shaped this harness, checked with PulseAudio 16.1 on Debian 12 as root:

- module-pipe-source creates the FIFO itself and fails to load if the path exists;
  it removes it on unload.
- It delivers nothing while nobody writes: a PortAudio input (or duplex) stream then
  never calls back. So the microphone writes silence all the time, paced in real time
  (the source reads as fast as data arrives), and `play()` swaps the audio in.
- sounddevice initialises PortAudio at import, so code using it must start after
  `env` is set: run it in a subprocess with `server.env`.

The server runs in the foreground as our child (`--daemonize=no`), so teardown kills
exactly that process, even when a test fails.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

RATE = 16000
CHUNK_S = 0.01
"""Microphone write size: 10 ms of audio per write."""


def unavailable() -> Optional[str]:
    """Why the live-audio tests cannot run here, or None when they can."""
    for tool in ("pulseaudio", "parec", "pactl"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (Debian: apt-get install pulseaudio pulseaudio-utils)"
    if ctypes.util.find_library("portaudio") is None:
        return "PortAudio library not found (Debian: apt-get install libportaudio2)"
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") + glob.glob(
            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"):
        return "ALSA's pulse plugin not found (Debian: apt-get install libasound2-plugins)"
    return None


def _script(fifo: Path, socket: Path, rate: int) -> str:
    return "\n".join([
        f"load-module module-null-sink sink_name=spk rate={rate} channels=1",
        f"load-module module-pipe-source source_name=mic file={fifo} format=s16le rate={rate} channels=1",
        "set-default-sink spk",
        "set-default-source mic",
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}",
        "",
    ])


class Microphone:
    """Writes the FIFO in real time: silence, or the audio handed to play()."""

    def __init__(self, fifo: Path, rate: int):
        self.rate = rate
        self.chunk = round(CHUNK_S * rate)
        self._fd = os.open(fifo, os.O_WRONLY)
        self._pending: Optional[np.ndarray] = None
        self._done = threading.Event()
        self._stop = threading.Event()
        self.started_at: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name="pulse-mic", daemon=True)
        self._thread.start()

    def play(self, audio: np.ndarray) -> None:
        """Queue (N,) float32 audio; `started_at` becomes the monotonic time of its first write."""
        self._done.clear()
        self.started_at = None
        self._pending = np.clip(audio, -1.0, 1.0).astype(np.float32)

    def wait(self, timeout: float) -> bool:
        """True once the queued audio has been written completely."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        silence = np.zeros(self.chunk, np.int16).tobytes()
        t0, k = time.monotonic(), 0
        audio, pos = None, 0
        while not self._stop.is_set():
            if audio is None and self._pending is not None:
                audio, pos, self._pending = (self._pending * 32767).astype(np.int16), 0, None
                self.started_at = time.monotonic()
            if audio is not None:
                data = audio[pos:pos + self.chunk]
                pos += self.chunk
                data = np.pad(data, (0, self.chunk - data.size)).tobytes()
                if pos >= audio.size:
                    audio = None
                    self._done.set()
            else:
                data = silence
            try:
                os.write(self._fd, data)
            except OSError:  # the server went away: nothing left to feed
                return
            k += 1
            # absolute deadlines: a late wake-up is caught up, so the rate stays exact
            delay = t0 + k * CHUNK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Call after the server is gone, so that a write blocked on a full pipe returns."""
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)


class Recorder:
    """parec of the speaker's monitor into memory, with the time its first sample was captured."""

    def __init__(self, env: dict, rate: int):
        self.rate = rate
        self._proc = subprocess.Popen(
            ["parec", "-d", "spk.monitor", f"--rate={rate}", "--channels=1", "--format=s16le",
             "--latency-msec=10", "--raw"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self._data = bytearray()
        self.started_at = float("inf")
        self._thread = threading.Thread(target=self._run, name="pulse-rec", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            self._data += chunk
            # data arrives late, never early: each read bounds the start time from above
            self.started_at = min(self.started_at, time.monotonic() - len(self._data) / 2 / self.rate)

    def stop(self) -> np.ndarray:
        """Stop recording; the recording as (N,) float32."""
        self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)
        n = len(self._data) // 2
        return np.frombuffer(bytes(self._data[:2 * n]), np.int16).astype(np.float32) / 32768.0


class PulseServer:
    """A private PulseAudio server; use as a context manager. `env` reaches it from subprocesses."""

    def __init__(self, rate: int = RATE):
        self.rate = rate
        self.dir = Path(tempfile.mkdtemp(prefix="evc-pulse-"))
        self.fifo = self.dir / "mic.fifo"
        socket = self.dir / "native"
        for sub in ("runtime", "state", "home"):
            (self.dir / sub).mkdir()
        (self.dir / "server.pa").write_text(_script(self.fifo, socket, rate))
        self.env = {**os.environ, "PULSE_RUNTIME_PATH": str(self.dir / "runtime"),
                    "PULSE_STATE_PATH": str(self.dir / "state"), "HOME": str(self.dir / "home"),
                    "PULSE_SERVER": f"unix:{socket}"}
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self._proc: Optional[subprocess.Popen] = None
        self.mic: Optional[Microphone] = None

    def __enter__(self) -> PulseServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 15.0) -> None:
        self._proc = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "-F", str(self.dir / "server.pa"),
             "--use-pid-file=no", "--realtime=no", "--high-priority=no",
             f"--log-target=file:{self.dir / 'server.log'}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not start; its log:\n{self.log()}")
            time.sleep(0.1)
        self.mic = Microphone(self.fifo, self.rate)

    def _ready(self) -> bool:
        if not self.fifo.exists():
            return False
        out = subprocess.run(["pactl", "list", "short", "sources"], env=self.env, capture_output=True,
                             text=True, timeout=10)
        return out.returncode == 0 and "\tmic\t" in out.stdout

    def record(self) -> Recorder:
        return Recorder(self.env, self.rate)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def close(self) -> None:
        if self.mic is not None:
            self.mic.stop()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.mic is not None:
            self.mic.close()
            self.mic = None
        shutil.rmtree(self.dir, ignore_errors=True)
