"""Subcommands of the runtime: registered into `evc` by engine.cli."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the runtime subcommands (convert, live, register, bank, devices)."""
