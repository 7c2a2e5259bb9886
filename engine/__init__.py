"""Runtime of the emotional voice conversion engine: never imports torch."""

from engine.signal import EMOTIONS, SignalSpec

__all__ = ["EMOTIONS", "SignalSpec"]
