"""Subcommands of the 'benchmarks' package, registered into `evc` by engine.cli.

    evc bench latency   per-block compute, RTF and stage shares per (block size, threads)
    evc bench e2e       end-to-end delay through a private audio server (PulseAudio, PipeWire, JACK)
    evc bench soak      live conversion for minutes: xruns, block times and memory per minute
    evc bench quality   MCD, emotion accuracy, strength (and its sweep), speaker similarity, F0,
                        DNSMOS on a corpus, by seen and unseen speakers
"""

from __future__ import annotations

import argparse
import importlib

from engine.cli import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add `evc bench`; handlers import their heavy modules lazily."""
    p = sub.add_parser("bench", help="latency, end-to-end and conversion-quality benchmarks")
    kinds = p.add_subparsers(dest="bench", metavar="BENCH")
    kinds.required = True
    _latency(kinds.add_parser("latency", help="per-block compute of the streaming pipeline, RTF, stage shares"))
    _e2e(kinds.add_parser("e2e", help="end-to-end delay through a private audio server"))
    _soak(kinds.add_parser("soak", help="live conversion for minutes on end: xruns, block times, memory"))
    _quality(kinds.add_parser("quality", help="objective conversion quality against baselines on a corpus"))


def _handler(module: str):
    """args -> module.cmd(args), the module imported only when the command runs."""
    return lambda args: importlib.import_module(module).cmd(args)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _latency(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=None, metavar="DIR",
                   help="exported model directory; repeat once per block size (default: engine.yaml model.dir)")
    p.add_argument("--threads", type=_ints, default=[1], metavar="LIST", help="intra-op thread counts (default 1)")
    p.add_argument("--blocks", type=_ints, default=None, metavar="LIST",
                   help="block sizes in frames (default: those of the models); sizes no model serves are skipped")
    p.add_argument("--provider", choices=("cpu", "cuda"), default=None,
                   help="execution provider (default: engine.yaml runtime.providers)")
    p.add_argument("--n", type=positive_int, default=2000, help="timed blocks per setting (default 2000)")
    p.add_argument("--warmup", type=positive_int, default=200, help="untimed blocks first (default 200)")
    p.add_argument("--out", default="bench-out/latency", metavar="DIR", help="where latency.json/.png go")
    p.set_defaults(func=_handler("benchmarks.latency"))


def _e2e(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="DIR", help="exported model directory (default: engine.yaml)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="seconds of bursts per mode (wire, bypass, conversion: interleaved in one run; default 60)")
    p.add_argument("--period", type=float, default=1.0, help="seconds between bursts (default 1)")
    p.add_argument("--out", default="bench-out/e2e", metavar="DIR", help="where e2e.json/.png go")
    _server_options(p)
    p.set_defaults(func=_handler("benchmarks.e2e"))


def _server_options(p: argparse.ArgumentParser) -> None:
    from benchmarks.servers import SERVERS

    p.add_argument("--server", choices=SERVERS, default="pulse",
                   help="the private audio server the engine plays through (default pulse)")
    p.add_argument("--block-frames", type=positive_int, default=None, metavar="N",
                   help="block size in frames, one the model has a step graph for (default: the model's own)")
    p.add_argument("--server-period", type=positive_int, default=None, metavar="SAMPLES",
                   help="the server's period (JACK) or quantum (PipeWire) in samples at the model's rate "
                        "(default: 5 ms for JACK, 10 ms for PipeWire)")
    p.add_argument("--callbacks-per-block", type=positive_int, default=None, metavar="N",
                   help="audio callbacks per model block (default: 2 through JACK, else 1)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _soak(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="DIR", help="exported model directory (default: engine.yaml)")
    p.add_argument("--minutes", type=_positive_float, default=60.0, help="length of the run (default 60)")
    p.add_argument("--interval", type=_positive_float, default=60.0, metavar="S",
                   help="seconds per record (default 60: one per minute)")
    p.add_argument("--load", type=int, default=0, choices=range(0, 9), metavar="N",
                   help="busy processes beside the engine, as on a user's machine (default 0)")
    p.add_argument("--out", default="bench-out/soak", metavar="DIR", help="where soak.csv/.json/.png go")
    _server_options(p)
    p.set_defaults(func=_handler("benchmarks.soak"))


def _count_or_all(text: str) -> int | None:
    """A count >= 0, or 'all' (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or 'all', got {text!r}")
    return value


def _quality(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="CORPUS", help="ESD-layout corpus root (ESD or `evc corpus synth`)")
    p.add_argument("--split", default="test", choices=("train", "evaluation", "test"),
                   help="split the conversions come from (default test); evaluators train on 'train'")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="exported model directory (default: engine.yaml model.dir; references and baselines only "
                        "when none)")
    p.add_argument("--out", default="bench-out/quality", metavar="DIR", help="where quality.md/.json/.png go")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="at most N source sentences per speaker (default all)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="worker processes for features and scoring (default: CPUs)")
    p.add_argument("--mos-limit", type=_count_or_all, default=2, metavar="N",
                   help="DNSMOS on the first N source sentences per speaker, about 1 s per utterance and system "
                        "(default 2; 0 none; 'all')")
    p.add_argument("--sweep", type=_count_or_all, default=1, metavar="N",
                   help="sweep the model's strength knob on the first N source sentences per speaker "
                        "(default 1; 0 none; 'all')")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache of fitted evaluators, features and corpus-only rows (default $XDG_CACHE_HOME/evc, "
                        "~/.cache/evc)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache: refit everything")
    p.add_argument("--examples", type=int, default=3, help="utterances drawn in quality.png (default 3)")
    p.add_argument("--degrade", action="store_true",
                   help="the systems hear every source through noise at 20 dB SNR and a generated room "
                        "(seeded per sentence); targets, and the source the speaker is compared with, stay clean")
    p.set_defaults(func=_handler("benchmarks.quality"))
