"""Subcommands of the runtime, registered into `evc` by engine.cli.

File-level commands (register, bank, convert) live in engine.cli_files, live audio
commands (live, devices) in engine.cli_live; both import their heavy modules lazily.
"""

from __future__ import annotations

import argparse
import importlib


def register(sub: argparse._SubParsersAction) -> None:
    """Add the runtime subcommands."""
    for name in ("engine.cli_files", "engine.cli_live"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
