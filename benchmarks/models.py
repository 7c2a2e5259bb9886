"""The engine configuration a benchmark runs a model directory with.

A model serves the block size it was exported with, so the benchmark takes signal.*
from the model's manifest rather than from engine.yaml; runtime settings (threads,
providers) come from engine.yaml unless the command overrides them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.config import EngineConfig, load_config
from engine.errors import EVCError
from engine.manifest import load_manifest


def base_config(config_path: str | None) -> EngineConfig:
    return load_config(config_path)


def default_model(cfg: EngineConfig) -> Path:
    """engine.yaml's model directory; EVCError saying to pass --model when it holds no model."""
    path = cfg.model_dir
    if not (path / "manifest.json").is_file():
        raise EVCError(f"no model at {path} (engine.yaml model.dir; the bundled default model may not "
                       "exist yet): pass --model DIR, an `evc export` output")
    return path


def model_config(cfg: EngineConfig, model_dir: str | Path, threads: int | None = None,
                 provider: str | None = None, block_frames: int | None = None) -> EngineConfig:
    """cfg running model_dir at block_frames (default: the model's own block size) and its lookahead."""
    model_dir = Path(model_dir).resolve()
    manifest = load_manifest(model_dir)
    spec = manifest.for_block(block_frames or manifest.spec.block_frames).spec
    signal = dataclasses.replace(cfg.signal, sample_rate=spec.sample_rate, block_frames=spec.block_frames,
                                 lookahead_frames=spec.lookahead_frames)
    runtime = cfg.runtime
    if threads is not None:
        runtime = dataclasses.replace(runtime, intra_op_threads=threads)
    if provider is not None:
        runtime = dataclasses.replace(runtime, providers=("cuda", "cpu") if provider == "cuda" else ("cpu",))
    return dataclasses.replace(cfg, signal=signal, runtime=runtime,
                               model=dataclasses.replace(cfg.model, dir=str(model_dir)))


def block_sizes_of(model_dir: str | Path) -> tuple[int, ...]:
    """The block sizes (frames) the model at model_dir has step graphs for, its default first."""
    try:
        return load_manifest(model_dir, verify=False).block_sizes
    except EVCError as e:
        raise EVCError(f"--model {model_dir}: {e}") from None
