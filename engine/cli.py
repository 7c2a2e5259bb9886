"""The `evc` command: a parser per subcommand, each handler calling library code.

Each module in _REGISTRARS contributes subcommands through `register(subparsers)`
and imports nothing heavy at module level, so `evc --help` and the runtime commands
never import torch; a package that is not installed simply contributes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from engine.errors import EVCError

_REGISTRARS = ("engine.cli_files", "engine.cli_live", "training.cli", "training.cli_train", "export.cli",
               "benchmarks.cli")

_EXTRA_FOR = {"torch": ("train",), "onnx": ("train",), "espeakng_loader": ("train",),
              "sklearn": ("bench",), "matplotlib": ("bench",), "pyworld": ("train", "bench"), "pysptk": ("bench",),
              "resemblyzer": ("bench",), "webrtcvad": ("bench",), "speechmos": ("bench",), "requests": ("bench",)}
"""The optional package a handler may miss -> the pip extras that install it (pyproject.toml); the
command's own extra is named when it is one of them (`evc bench` -> bench, else the first)."""


def get_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="evc", description="Real-time streaming emotional voice conversion.")
    parser.add_argument("--config", default=None,
                        help="engine configuration YAML (default: engine.yaml of the repository)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _REGISTRARS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def positive_int(text: str) -> int:
    """argparse type for the subcommands' counts and sizes: an integer above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def fatal(message: str, code: int = 1) -> int:
    """Print one line to stderr and return the exit code."""
    print(f"evc: error: {message}", file=sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EVCError as e:
        return fatal(str(e))
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        extras = _EXTRA_FOR.get(top)
        if extras is None:
            raise
        extra = args.command if args.command in extras else extras[0]
        return fatal(f"`evc {args.command}` needs the '{extra}' extra: pip install 'evc[{extra}]' (missing {top})")
    except KeyboardInterrupt:
        return fatal("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
