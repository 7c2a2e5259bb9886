"""Checkpoints: written atomically, resumed exactly, loaded strictly.

A checkpoint records the stage, step, every network's weights, the optimizers and
schedulers, all RNG states, the training config and the signal contract.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.errors import ModelError
from engine.signal import SignalSpec


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, stage: str | tuple[str, ...] | None = None,
                    spec: SignalSpec | None = None) -> dict:
    """The checkpoint at `path`, checked; ModelError (one line) when it cannot be used.

    stage: the stage(s) it must come from; spec: the signal contract it must match.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ModelError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "models" not in ckpt or "stage" not in ckpt:
        raise ModelError(f"{path}: not an evc training checkpoint")
    stages = (stage,) if isinstance(stage, str) else stage
    if stages and ckpt["stage"] not in stages:
        raise ModelError(f"{path}: a '{ckpt['stage']}' checkpoint, expected {' or '.join(stages)}")
    if spec is not None and ckpt.get("signal") != spec.to_dict():
        diff = [k for k, v in spec.to_dict().items() if ckpt.get("signal", {}).get(k) != v]
        raise ModelError(f"{path}: signal contract differs in {', '.join(diff) or 'every field'}")
    return ckpt


def load_weights(models: dict[str, torch.nn.Module], ckpt: dict, names=None) -> None:
    """Load the named networks (default: all in the checkpoint) with strict=True."""
    for name in names or ckpt["models"]:
        if name not in models:
            continue
        models[name].load_state_dict(ckpt["models"][name], strict=True)
