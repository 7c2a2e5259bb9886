"""Tiny random-weight checkpoints (training/configs/tiny.yaml) and their exports, built once.

Weights are re-drawn at unit gain (support.tiny_checkpoints.audible): HiFi-GAN's 0.01
init makes near-silence, against which a 1e-4 audio tolerance would prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.signal import SignalSpec
from support.tiny_checkpoints import audible
from training.build import build_models
from training.checkpoint import rng_state, save_checkpoint
from training.config import load_train_config

NETWORKS = {
    "stage1": ("content_encoder", "emotion_encoder", "recognition", "generator", "adversary"),
    "stage2": ("content_encoder", "emotion_encoder", "recognition", "generator"),
    "vocoder": ("vocoder", "mpd", "msd"),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny per-block convs only pay for thread synchronisation on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_checkpoint(path: Path, stage: str, seed: int = 0, signal: dict | None = None) -> Path:
    """A checkpoint of `stage` in training/loop.py's payload format, tiny networks, audible weights.

    Unlike support.tiny_checkpoints, it also writes stage1 and takes a signal contract.
    """
    cfg, spec = load_train_config("tiny"), SignalSpec()
    torch.manual_seed(seed)
    models = {n: audible(m) for n, m in build_models(cfg.models, spec, NETWORKS[stage]).items()}
    save_checkpoint(path, {
        "stage": stage, "step": 1, "run_id": f"tiny-{stage}-{seed}", "config": cfg.to_dict(),
        "signal": signal or spec.to_dict(), "rng": rng_state(),
        "models": {n: m.state_dict() for n, m in models.items()}, "optimizers": {}, "schedulers": {}})
    return path


@pytest.fixture(scope="session", name="write_checkpoint")
def write_checkpoint_fixture():
    """write_checkpoint itself, for tests that need a checkpoint of their own."""
    return write_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """stage2.pt (seed 0), vocoder.pt (seed 1) and stage1.pt (seed 2) of the tiny config."""
    root = tmp_path_factory.mktemp("ckpt")
    return {stage: write_checkpoint(root / f"{stage}.pt", stage, seed) for seed, stage in
            enumerate(("stage2", "vocoder", "stage1"))}


@pytest.fixture(scope="session")
def exported(checkpoints, tmp_path_factory):
    """exported(block_frames) -> (model_dir, manifest dict); each block size is exported once."""
    from export.model_dir import export_model

    cache: dict[int, tuple[Path, dict]] = {}

    def get(block: int) -> tuple[Path, dict]:
        if block not in cache:
            out = tmp_path_factory.mktemp(f"model_b{block}") / "model"
            export_model(checkpoints["stage2"], checkpoints["vocoder"], out, block_frames=block)
            cache[block] = out, json.loads((out / "manifest.json").read_text())
        return cache[block]

    return get
