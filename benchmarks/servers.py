"""The private audio servers the live benchmarks and tests run through, by name.

    pulse     PulseAudio (benchmarks.pulse)
    pipewire  PipeWire with WirePlumber and its PulseAudio interface (benchmarks.pipewire)
    jack      JACK 2 with its dummy backend (benchmarks.jack)

Each is a context manager started here and stopped on exit, and gives the same
harness: `mic` (play, wait, capture_time, queued_samples, rate), `record()` (a
recorder whose stop() returns the speaker's audio, stamped by `started_at`),
`input_device`/`output_device` (what LiveSession opens), `config(cfg)` (the engine
settings tuned for the server) and `kill()` (the server dies under a running session).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass

from engine.errors import EVCError

SERVERS = ("pulse", "pipewire", "jack")


def _server_class(name: str):
    if name == "pulse":
        from benchmarks.pulse import PulseServer

        return PulseServer
    if name == "pipewire":
        from benchmarks.pipewire import PipeWireServer

        return PipeWireServer
    if name == "jack":
        from benchmarks.jack import JackServer

        return JackServer
    raise EVCError(f"unknown audio server '{name}': expected one of {', '.join(SERVERS)}")


def unavailable(name: str) -> str | None:
    """Why server `name` cannot run here (a missing program or library), or None."""
    return _server_class(name).unavailable()


@contextmanager
def audio_server(name: str, rate: int, period: int | None = None):
    """A started private server `name` at `rate` Hz that this process's PortAudio sees; stopped on exit.

    period: the server's processing period in samples where it has one (JACK, PipeWire's
    quantum); None takes the server's own choice for the rate.
    """
    server = _server_class(name)(rate=rate, period=period)
    server.start()
    try:
        server.activate()
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class LiveSetup:
    """How a live benchmark plays: through which server, with what period, block size and
    callbacks per block (None: the server's period, the model's block, the server's choice)."""

    server: str = "pulse"
    server_period: int | None = None
    block_frames: int | None = None
    callbacks: int | None = None

    @classmethod
    def from_args(cls, args) -> LiveSetup:
        return cls(args.server, args.server_period, args.block_frames, args.callbacks_per_block)

    def engine_config(self, srv, cfg):
        """cfg as the session through `srv` runs it: the server's tuning, then this setup's callbacks."""
        cfg = srv.config(cfg)
        if self.callbacks is None:
            return cfg
        return dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, callbacks_per_block=self.callbacks))


DEFAULT_SETUP = LiveSetup()
