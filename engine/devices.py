"""Audio devices through PortAudio: list them, resolve a user's choice to one device.

sounddevice loads the PortAudio library when it is imported, so it is imported only
here, inside functions, and its OSError becomes one line saying what to install:
`import engine` and every file command work on a machine without PortAudio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

from engine.errors import EVCError

Kind = Literal["input", "output"]
PORTAUDIO_HINT = ("install the PortAudio library (Debian/Ubuntu: apt-get install libportaudio2; "
                  "Fedora: dnf install portaudio; macOS: brew install portaudio)")


def sounddevice():
    """The sounddevice module, or EVCError when the PortAudio library cannot be loaded."""
    try:
        import sounddevice as sd
    except OSError as e:
        raise EVCError(f"live audio needs PortAudio, which is not available ({e}): {PORTAUDIO_HINT}") from None
    except ImportError:
        raise EVCError("live audio needs the sounddevice package: pip install sounddevice") from None
    return sd


def abandon_portaudio() -> None:
    """Let the process exit although PortAudio hangs closing a stream whose device vanished.

    With a JACK server killed under it, Pa_StopStream never returns, and sounddevice's exit
    handler (Pa_Terminate) would then wait on that stream forever. Unregistering the handler
    is all that is left to do; PortAudio is unusable in this process afterwards.
    """
    import atexit

    global _abandoned
    atexit.unregister(sounddevice()._exit_handler)
    _abandoned = True


_abandoned = False


def portaudio_abandoned() -> bool:
    """True once abandon_portaudio() ran: initialising or terminating PortAudio again would hang."""
    return _abandoned


@dataclass(frozen=True)
class Device:
    """One PortAudio device as `evc devices` lists it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


def list_devices() -> list[Device]:
    """Every device PortAudio sees, in its index order, with the defaults marked."""
    sd = sounddevice()
    hostapis = sd.query_hostapis()
    default_in, default_out = _defaults(sd)
    return [Device(index=int(d["index"]), name=str(d["name"]), hostapi=str(hostapis[d["hostapi"]]["name"]),
                   max_input_channels=int(d["max_input_channels"]),
                   max_output_channels=int(d["max_output_channels"]),
                   default_samplerate=float(d["default_samplerate"]),
                   default_input=d["index"] == default_in, default_output=d["index"] == default_out)
            for d in sd.query_devices()]


def _defaults(sd) -> tuple[int, int]:
    """(default input index, default output index); -1 where there is none."""
    default_in, default_out = (int(i) if i is not None else -1 for i in sd.default.device)
    return default_in, default_out


def resolve_device(spec: Optional[Union[int, str]], kind: Kind, devices: Optional[list[Device]] = None) -> Device:
    """The device `spec` names for `kind`: an index, a case-insensitive name substring, or
    None for the system default. EVCError (one line) when nothing or several match.

    A name matching one device exactly wins over substring matches ('pulse' vs
    'pulse monitor'); a string of digits is an index, as on the command line.
    """
    devices = list_devices() if devices is None else devices
    usable = [d for d in devices if d.channels(kind) > 0]
    if not usable:
        raise EVCError(f"no audio {kind} device found (PortAudio sees {len(devices)} device(s)): "
                       "connect one, or start an audio server such as PulseAudio or PipeWire")
    if spec is None:
        return _default(usable, kind)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return _by_index(int(spec), usable, devices, kind)
    return _by_name(str(spec), usable, kind)


JACK_HOST_API = "JACK Audio Connection Kit"
SERVERS = ("auto", "pulse", "pipewire", "jack")
"""engine.yaml audio.server: whose devices a None device setting means."""


def server_device(server: str, kind: Kind, devices: Optional[list[Device]] = None) -> Device:
    """The device audio.server names for `kind` when engine.yaml names none.

    auto: the system default; pulse and pipewire: ALSA's 'pulse' device (PulseAudio, or
    PipeWire's PulseAudio interface); jack: PortAudio's JACK host API (the JACK server
    JACK_DEFAULT_SERVER names, else 'default').
    """
    devices = list_devices() if devices is None else devices
    if server == "jack":
        usable = [d for d in devices if d.hostapi == JACK_HOST_API and d.channels(kind) > 0]
        if not usable:
            raise EVCError(f"audio.server is jack but PortAudio sees no JACK {kind} device: is a JACK server "
                           "running (jackd, or PipeWire's JACK interface)?")
        return usable[0]
    return resolve_device("pulse" if server in ("pulse", "pipewire") else None, kind, devices)


def _default(usable: list[Device], kind: Kind) -> Device:
    marked = [d for d in usable if (d.default_input if kind == "input" else d.default_output)]
    if marked:
        return marked[0]
    return usable[0]  # PortAudio names no default (some ALSA setups): the first that can do the job


def _by_index(index: int, usable: list[Device], devices: list[Device], kind: Kind) -> Device:
    for d in usable:
        if d.index == index:
            return d
    if any(d.index == index for d in devices):
        raise EVCError(f"audio device {index} has no {kind} channels: pick another ({_choices(usable)})")
    raise EVCError(f"no audio device with index {index}: {kind} devices are {_choices(usable)}")


def _by_name(name: str, usable: list[Device], kind: Kind) -> Device:
    wanted = name.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    matches = exact or [d for d in usable if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise EVCError(f"no {kind} device matches '{name}': {kind} devices are {_choices(usable)}")
    raise EVCError(f"'{name}' matches {len(matches)} {kind} devices ({_choices(matches)}): "
                   "give more of the name or the index")


def _choices(devices: list[Device]) -> str:
    return ", ".join(f"{d.index} '{d.name}'" for d in devices)


def format_devices(devices: list[Device]) -> str:
    """The table `evc devices` prints: index, defaults (> input, < output), channels, rate, host API, name."""
    lines = [f"{'':2} {'idx':>3}  {'in':>3} {'out':>3}  {'rate':>7}  {'host API':<12} name"]
    for d in devices:
        mark = (">" if d.default_input else " ") + ("<" if d.default_output else " ")
        lines.append(f"{mark} {d.index:>3}  {d.max_input_channels:>3} {d.max_output_channels:>3}  "
                     f"{d.default_samplerate:>7.0f}  {d.hostapi:<12} {d.name}")
    lines.append("> default input, < default output; rate = the device's default sample rate in Hz")
    return "\n".join(lines)
