"""Tiny random-weight checkpoints (support.tiny_checkpoints, training/configs/tiny.yaml) and
their exports, built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.threads import one_torch_thread
from support.tiny_checkpoints import write_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


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
