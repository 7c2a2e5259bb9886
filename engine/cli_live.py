"""Live audio commands: `evc devices` and `evc live`.

`evc live` converts the microphone to the speaker until q, Ctrl-C, end of stdin or
--duration. While it runs, stdin takes one command per line (an emotion name, a
strength, b for bypass, q to quit) and stderr shows a status line. sounddevice, the
model runtime and numba are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

from engine.config import EngineConfig, load_config
from engine.errors import EVCError

STATUS_EVERY_S = 0.5
"""Refresh of the status line on a terminal."""
LOG_EVERY_S = 5.0
"""Status line interval when stderr is a file or pipe (no carriage-return redraws in logs)."""
HELP = "commands: NAME switches emotion, a number sets strength (0-1.5), b toggles bypass, q quits"


def register(sub: argparse._SubParsersAction) -> None:
    """Add devices and live."""
    p = sub.add_parser("devices", help="list audio devices, their channels and sample rates")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("live", help="convert the microphone to the speaker in real time")
    p.add_argument("--model", default=None, help="exported model directory (default: engine.yaml model.dir)")
    p.add_argument("--emotion", default=None,
                   help="bank entry to start with (default: the first non-neutral entry of the bank)")
    p.add_argument("--strength", type=float, default=None,
                   help="0 = the bank's neutral entry, 1 = the reference itself, up to 1.5 (default: the reference)")
    p.add_argument("--input", default=None, help="microphone: index or name substring (see `evc devices`)")
    p.add_argument("--output", default=None, help="speaker: index or name substring (see `evc devices`)")
    p.add_argument("--bypass", action="store_true", help="start with the conversion bypassed (b toggles it)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_live)


def cmd_devices(args: argparse.Namespace) -> int:
    from engine.devices import format_devices, list_devices

    devices = list_devices()
    if not devices:
        raise EVCError("no audio devices found: PortAudio sees none (start an audio server such as "
                       "PulseAudio or PipeWire, or connect a device)")
    print(format_devices(devices))
    return 0


def _config(args: argparse.Namespace) -> EngineConfig:
    cfg = load_config(args.config)
    if getattr(args, "model", None):
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dir=str(Path(args.model).resolve())))
    return cfg


def cmd_live(args: argparse.Namespace) -> int:
    from engine.bank import EmotionBank
    from engine.devices import sounddevice
    from engine.live import LiveSession
    from engine.pipeline import StreamingConverter

    if args.duration is not None and args.duration <= 0:
        raise EVCError(f"--duration: expected a positive number of seconds, got {args.duration:g}")
    sounddevice()  # no PortAudio: say so before spending seconds loading the model
    cfg = _config(args)
    bank = EmotionBank(cfg.bank_path)
    converter = StreamingConverter(cfg, bank=bank)
    names = [e.name for e in bank.list()]
    _start_emotion(converter, bank, args)
    session = LiveSession(converter, cfg, args.input, args.output)
    p = session.plan
    _say(f"input '{p.input.name}' at {p.in_rate} Hz, output '{p.output.name}' at {p.out_rate} Hz"
         f"{'' if p.in_rate == p.out_rate == session.rate else f' (resampled to {session.rate} Hz)'}")
    _say(HELP)
    run_live(session, names, args.duration, sys.stdin, sys.stderr)
    return 0


def _start_emotion(converter, bank, args: argparse.Namespace) -> None:
    """--emotion, else the first non-neutral bank entry; bypass (with a note) when the bank is empty."""
    name = args.emotion or default_emotion(bank.list())
    if name is None:
        _say(f"the emotion bank {bank.path} is empty: running in bypass (register one: evc register NAME REF.wav)")
        converter.bypass = True
        return
    converter.set_emotion(name, args.strength)
    converter.bypass = args.bypass


def default_emotion(entries: list) -> Optional[str]:
    """The first entry that is not neutral (by name or predicted category), else the first; None if empty."""
    from engine.bank import NEUTRAL

    for e in entries:
        if e.name != NEUTRAL.lower() and e.category != NEUTRAL:
            return e.name
    return entries[0].name if entries else None


@dataclass(frozen=True)
class Command:
    """One stdin line, parsed: action in emotion | strength | bypass | quit | help | error."""

    action: str
    value: object = None


def parse_command(line: str, names: list[str]) -> Optional[Command]:
    """The command on one stdin line; None for a blank line.

    Single-letter commands and numbers are read first, so a bank entry named 'b' or '1'
    cannot be selected from here (evc live --emotion can).
    """
    word = line.strip()
    key = word.lower()
    if not word:
        return None
    if key in ("q", "quit", "exit"):
        return Command("quit")
    if key in ("b", "bypass"):
        return Command("bypass")
    if key in ("?", "h", "help"):
        return Command("help")
    try:
        return Command("strength", float(word))
    except ValueError:
        pass
    if key in (n.lower() for n in names):
        return Command("emotion", key)
    known = ", ".join(names) if names else "none registered"
    return Command("error", f"unknown command '{word}' (emotions: {known}); {HELP}")


def apply_command(session, cmd: Command, quit_event: threading.Event) -> Optional[str]:
    """Carry out cmd on the session; returns a line to show, or None."""
    conv = session.converter
    try:
        if cmd.action == "quit":
            quit_event.set()
            return None
        if cmd.action == "bypass":
            session.bypass = not session.bypass
            return f"bypass {'on' if session.bypass else 'off'}"
        if cmd.action == "emotion":
            session.set_emotion(cmd.value, conv.strength)
            return f"emotion {conv.emotion_name}"
        if cmd.action == "strength":
            if conv.emotion_name is None:
                return "no emotion selected: type an emotion name first"
            session.set_emotion(conv.emotion_name, cmd.value)
            return f"strength {cmd.value:g}"
        return HELP if cmd.action == "help" else str(cmd.value)
    except EVCError as e:
        return str(e)


def format_status(s: dict) -> str:
    """The one-line status: emotion, strength, compute, RTF, xruns, dropped/late, latency."""
    emotion = "bypass" if s["bypass"] else (s["emotion"] or "-")
    strength = "ref" if s["strength"] is None else f"{s['strength']:.2f}"
    return (f"{emotion} {strength} | compute p50 {s['p50_ms']:.2f} p99 {s['p99_ms']:.2f} ms RTF {s['rtf']:.3f} "
            f"| xruns {s['xruns']['total']} | dropped {s['dropped']} late {s['late']} "
            f"| latency {s['latency_ms']:.0f} ms")


def run_live(session, names: list[str], duration: Optional[float], stdin: TextIO, err: TextIO) -> dict:
    """Run `session` with stdin commands and a status line on `err` until quit/EOF/duration/Ctrl-C.

    End of stdin quits unless a duration was given (so `evc live --duration 10 < /dev/null`
    runs its ten seconds). Prints the summary line and returns the final stats.
    """
    quit_event = threading.Event()
    tty = err.isatty()
    show = _printer(err, tty)
    reader = threading.Thread(target=_read_commands, args=(session, names, stdin, quit_event, show, duration),
                              name="evc-live-stdin", daemon=True)
    session.start()
    for note in session.notes:
        show(f"note: {note}")
    reader.start()
    try:
        _status_loop(session, quit_event, duration, show, tty)
    except KeyboardInterrupt:
        pass  # Ctrl-C is the normal way to stop: shut down cleanly below
    finally:
        stats = session.stop()
        show(session.summary())
    return stats


def _status_loop(session, quit_event: threading.Event, duration, show, tty: bool) -> None:
    start = last = time.monotonic()
    every = STATUS_EVERY_S if tty else LOG_EVERY_S
    while session.running and not quit_event.wait(STATUS_EVERY_S / 5):
        session.check()
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            return
        if now - last >= every:
            show(format_status(session.stats()), status=True)
            last = now


def _read_commands(session, names, stdin: TextIO, quit_event, show, duration) -> None:
    for line in stdin:
        cmd = parse_command(line, names)
        if cmd is not None:
            message = apply_command(session, cmd, quit_event)
            if message:
                show(message)
        if quit_event.is_set():
            return
    if duration is None:
        quit_event.set()


def _printer(err: TextIO, tty: bool):
    """show(line, status=False): on a terminal the status line redraws in place."""
    lock = threading.Lock()

    def show(line: str, status: bool = False) -> None:
        with lock:
            if tty:
                err.write("\r\x1b[K" + line + ("" if status else "\n"))
            else:
                err.write(line + "\n")
            err.flush()

    return show


def _say(message: str) -> None:
    print(f"evc: {message}", file=sys.stderr)
