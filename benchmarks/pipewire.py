"""A private PipeWire server, reached through its PulseAudio interface (pipewire-pulse).

    dbus-daemon ─ pipewire (graph, Dummy-Driver clock) ─ wireplumber (links, defaults)
                                                       └ pipewire-pulse (PulseAudio protocol)

Desktop Linux runs PipeWire; PortAudio reaches it as it reaches PulseAudio, through
ALSA's pulse plugin talking to pipewire-pulse. So the harness is PulseServer's (the
FIFO microphone, the null-sink speaker recorded by parec), built with pactl on a
running pipewire-pulse instead of a PulseAudio startup script. All four processes are
our children, with their runtime directory, configuration and session bus in a
temporary directory: a desktop's own PipeWire is never touched.

Tuning: the graph runs at the model's rate (no resampling in the server) with a
quantum of `period` samples (default 10 ms), and pipewire-pulse grants clients
requests down to one quantum; checked with PipeWire 0.3.65 and WirePlumber 0.4.13
on Debian 12. WirePlumber needs a session bus: without one it exits at once and
nothing gets linked.
"""

from __future__ import annotations

import subprocess

from benchmarks.pulse import SINK, SOURCE, PulseServer, _end, missing_libraries, missing_programs, wait_until_up
from engine.errors import EVCError

PROGRAMS = ("pipewire", "pipewire-pulse", "wireplumber", "dbus-daemon", "pactl", "parec")
INSTALL_HINT = "install pipewire, pipewire-pulse, wireplumber and dbus (Debian/Ubuntu: apt-get install pipewire " \
               "pipewire-pulse wireplumber dbus pulseaudio-utils)"


def unavailable() -> str | None:
    """Why a private PipeWire server cannot serve PortAudio here, or None when it can."""
    return missing_programs(PROGRAMS, INSTALL_HINT) or missing_libraries()


def _graph_conf(rate: int, quantum: int) -> str:
    return (f"context.properties = {{\n  default.clock.rate = {rate}\n  default.clock.allowed-rates = [ {rate} ]\n"
            f"  default.clock.quantum = {quantum}\n  default.clock.min-quantum = {quantum}\n}}\n")


def _pulse_conf(rate: int, quantum: int) -> str:
    q = f"{quantum}/{rate}"
    return f"pulse.properties = {{\n  pulse.min.req = {q}\n  pulse.min.frag = {q}\n  pulse.min.quantum = {q}\n}}\n"


class PipeWireServer(PulseServer):
    """`with PipeWireServer() as pw:` as PulseServer (mic, record(), activate()), served by PipeWire."""

    name = "PipeWire"

    @staticmethod
    def unavailable() -> str | None:
        return unavailable()  # the module's, looked up at call time (tests replace it)

    def __init__(self, rate: int = 16000, chunk: int = 160, period: int | None = None):
        super().__init__(rate, chunk)
        self.quantum = period or rate // 100
        self._procs: list[subprocess.Popen] = []
        self._log = None

    @property
    def pulse_env(self) -> dict:
        runtime = self.dir / "runtime"
        return {"XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime / 'pulse/native'}",
                "PULSE_RUNTIME_PATH": str(runtime / "pulse"), "PULSE_STATE_PATH": str(self.dir / "state")}

    def start(self, timeout: float = 15.0) -> PipeWireServer:
        return super().start(timeout)

    def _launch(self, timeout: float) -> None:
        for sub in ("runtime", "state", "home", "config/pipewire/pipewire.conf.d",
                    "config/pipewire/pipewire-pulse.conf.d"):
            (self.dir / sub).mkdir(mode=0o700, parents=True)
        (self.dir / "config/pipewire/pipewire.conf.d/evc.conf").write_text(_graph_conf(self.rate, self.quantum))
        (self.dir / "config/pipewire/pipewire-pulse.conf.d/evc.conf").write_text(_pulse_conf(self.rate, self.quantum))
        bus = f"unix:path={self.dir / 'runtime/bus'}"
        env = {**self.env, "HOME": str(self.dir / "home"), "XDG_CONFIG_HOME": str(self.dir / "config"),
               "DBUS_SESSION_BUS_ADDRESS": bus, "PIPEWIRE_LOG_SYSTEMD": "false"}
        self._log = log = (self.dir / "server.log").open("ab")
        self._spawn(["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={bus}"], env, log)
        self._wait_for(lambda: (self.dir / "runtime/bus").exists(), "the session bus", timeout)
        self._spawn(["pipewire"], env, log)
        self._wait_for(lambda: (self.dir / "runtime/pipewire-0").exists(), "pipewire", timeout)
        self._spawn(["wireplumber"], env, log)
        self._spawn(["pipewire-pulse"], env, log)
        self._wait_for(lambda: self._pactl("info").returncode == 0, "pipewire-pulse", timeout)
        self._proc = self._procs[1]  # kill() ends the graph itself, as a crash of PipeWire would
        self._load_modules(timeout)

    def _spawn(self, cmd: list[str], env: dict, log) -> None:
        self._procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL))

    def _wait_for(self, ready, what: str, timeout: float) -> None:
        wait_until_up(ready, self._procs, timeout, "PipeWire", self.log_tail, what)

    def _pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)

    def _load_modules(self, timeout: float) -> None:
        """The PulseServer's devices, made with pactl; WirePlumber takes the defaults once it has started."""
        fifo = self.dir / "mic.fifo"
        for module in (f"module-null-sink sink_name={SINK} rate={self.rate} channels=1",
                       f"module-null-sink sink_name=drain rate={self.rate} channels=1",
                       f"module-pipe-source source_name={SOURCE} file={fifo} format=s16le rate={self.rate} channels=1",
                       f"module-loopback source={SOURCE} sink=drain latency_msec=20"):
            out = self._pactl("load-module", *module.split())
            if out.returncode != 0:
                raise EVCError(f"PipeWire refused {module.split()[0]}: {out.stderr.strip()}")
        self._wait_for(self._defaults_taken, "default devices", timeout)

    def _defaults_taken(self) -> bool:
        """Asked for, and in effect: WirePlumber applies a configured default after pactl returns,
        and a stream opened before then is linked to whatever was default."""
        wanted = (("sink", SINK), ("source", SOURCE))
        if any(self._pactl(f"set-default-{kind}", name).returncode for kind, name in wanted):
            return False
        return all(self._pactl(f"get-default-{kind}").stdout.strip() == name for kind, name in wanted)

    def config(self, cfg):
        """PortAudio's 'high' latency: with 'low', ALSA's pulse plugin on pipewire-pulse asks for
        audio in bursts (two callbacks back to back every 32 ms), and every other block is late."""
        import dataclasses

        return dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, headroom_blocks=2))

    def log_tail(self, lines: int = 3) -> str:
        errors = [line for line in self.log().splitlines() if "[E]" in line or " E " in line]
        return " | ".join(errors[-lines:]) or "no error logged"

    def stop(self) -> None:
        procs, self._procs = self._procs, []
        self._proc = None
        if self.mic is not None:
            self.mic.stop()
        self._restore_env()
        for proc in reversed(procs):
            _end(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        super().stop()
