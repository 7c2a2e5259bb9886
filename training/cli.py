"""Subcommands of the 'training' package, registered into `evc` by engine.cli."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands; handlers import their heavy modules lazily."""
