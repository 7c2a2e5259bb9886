"""`evc train stage1|stage2|vocoder`: registered into `evc` by engine.cli.

Runs unchanged under `torchrun --nproc_per_node N -m engine.cli train ...` for
data-parallel training.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one AINN stage or the vocoder on a corpus in ESD layout")
    p.add_argument("stage", choices=("stage1", "stage2", "vocoder"))
    p.add_argument("--config", dest="train_config", required=True,
                   help="training YAML, or a name under training/configs (tiny, default)")
    p.add_argument("--data", required=True, help="corpus root in ESD layout (ESD or `evc corpus synth` output)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, logs, samples; resumes if present")
    p.add_argument("--init", default=None,
                   help="checkpoint to start from: stage2 needs stage1's; stage1 may continue a stage1")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--steps", type=int, default=None, help="override the stage's step count")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from training.config import load_train_config
    from training.loop import train

    cfg = load_train_config(args.train_config)
    if args.steps is not None:
        stage = dataclasses.replace(cfg.stages[args.stage], steps=args.steps)
        cfg = dataclasses.replace(cfg, stages={**cfg.stages, args.stage: stage})
    result = train(args.stage, cfg, args.data, args.out, init=args.init, device=args.device)
    if result.get("rank", 0) == 0:
        print(json.dumps(result))
    return 0
