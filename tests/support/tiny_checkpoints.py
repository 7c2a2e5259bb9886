"""Tiny random-weight checkpoints of every stage (training/configs/tiny.yaml) in
training/loop.py's payload format, for end-to-end and export tests.

Weights are re-drawn at unit gain: small inits make near-silence, against which a 1e-4
audio tolerance would prove nothing. Needs torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import rng_state, save_checkpoint
from training.config import load_train_config
from training.loop import STAGE_NETWORKS

SPEAKERS = ("0011", "0012")
"""The training speakers the checkpoints record (export copies them into the manifest)."""


def audible(model: nn.Module) -> nn.Module:
    """Re-draw conv/linear weights at unit gain and biases at 0.1 (in place)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.ConvTranspose1d):
                w = torch.randn_like(m.weight) * (m.stride[0] / m.weight[:, 0].numel()) ** 0.5
            elif isinstance(m, (nn.Conv1d, nn.Linear)):
                w = torch.randn_like(m.weight) * m.weight[0].numel() ** -0.5
            else:
                continue
            if parametrize.is_parametrized(m, "weight"):
                m.weight = w  # weight norm's right_inverse splits it into magnitude and direction
            else:
                m.weight.copy_(w)
            if m.bias is not None:
                m.bias.normal_(0.0, 0.1)
    return model


def write_checkpoint(path: Path, stage: str, seed: int = 0, signal: dict | None = None,
                     speakers: tuple[str, ...] | None = SPEAKERS, generator: dict | None = None) -> Path:
    """A `stage` ("stage1", "stage2" or "vocoder") checkpoint; signal: the contract it records
    (default SignalSpec()'s); speakers None: a checkpoint from before training speakers were recorded;
    generator: options merged over the tiny config's generator (e.g. the source skip)."""
    cfg, spec = load_train_config("tiny"), SignalSpec()
    if generator:
        cfg = dataclasses.replace(cfg, models={**cfg.models, "generator": {**cfg.models["generator"], **generator}})
    torch.manual_seed(seed)
    models = {n: audible(m) for n, m in build_models(cfg.models, spec, STAGE_NETWORKS[stage]).items()}
    recorded = {} if speakers is None else {"speakers": list(speakers)}
    save_checkpoint(path, {
        "stage": stage, "step": 1, "run_id": f"tiny-{stage}-{seed}", "config": cfg.to_dict(), **recorded,
        "signal": signal or spec.to_dict(), "rng": rng_state(),
        "models": {n: m.state_dict() for n, m in models.items()}, "optimizers": {}, "schedulers": {}})
    return path
