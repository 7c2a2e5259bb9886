"""Subcommands of the 'training' package (`evc corpus synth`), registered into `evc` by engine.cli."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands; handlers import their heavy modules lazily."""
    corpus = sub.add_parser("corpus", help="make corpora")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    p = corpus_sub.add_parser("synth", help="synthesise an ESD-like emotional corpus")
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--speakers", type=int, default=10,
                   help="the first N speakers: espeak-ng voices, then Festival voices and their timbre variants")
    p.add_argument("--sentences", type=int, default=300, help="sentences per emotion (ESD has 350)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from training.corpus.synth import synthesize_corpus

    out = synthesize_corpus(args.out, args.speakers, args.sentences, args.seed, args.jobs, args.overwrite)
    n = args.speakers * 5 * args.sentences
    print(f"wrote {n} utterances, metadata.csv and corpus.json to {out}")
    return 0
