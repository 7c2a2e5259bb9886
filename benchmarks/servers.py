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

from contextlib import contextmanager

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
