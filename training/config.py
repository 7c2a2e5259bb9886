"""Training configuration: one YAML file → frozen dataclasses.

Model sections hold the keyword arguments of each model's constructor; stages are
data (steps, learning rate, trainable networks, loss weights), run by one loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import ConfigError

STAGES = ("stage1", "stage2", "vocoder")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class StageConfig:
    """One training stage: what trains, for how long, with which loss weights."""

    steps: int
    lr: float
    trainable: tuple[str, ...]
    weights: dict[str, float]
    batch_size: int = 8
    segment_frames: int = 128
    lr_decay: float = 0.999
    grad_clip: float = 5.0
    disc_weights: dict[str, float] = field(default_factory=dict)
    # Vocoder only: steps trained on the spectral losses alone before the discriminators
    # join (Parallel WaveGAN's warm-up); it lets a short CPU run spend its steps on the
    # generator.
    adv_start: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs besides the data directory; recorded in every checkpoint."""

    name: str
    seed: int
    models: dict[str, dict[str, Any]]
    stages: dict[str, StageConfig]
    speakers: tuple[str, ...] | None = None
    log_every: int = 10
    val_every: int = 100
    ckpt_every: int = 100
    val_batches: int = 2
    samples_per_val: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


def _stage(name: str, data: dict) -> StageConfig:
    try:
        stage = StageConfig(**{**data, "trainable": tuple(data.get("trainable", ()))})
    except TypeError as e:
        raise ConfigError(f"stages.{name}: {e}") from None
    if stage.adv_start < 0:
        raise ConfigError(f"stages.{name}.adv_start: must be 0 or more")
    if stage.steps <= 0 or stage.batch_size <= 0 or stage.segment_frames <= 0 or stage.lr <= 0:
        raise ConfigError(f"stages.{name}: steps, lr, batch_size and segment_frames must be positive")
    return stage


def config_from_dict(data: dict) -> TrainConfig:
    """Validated TrainConfig; ConfigError names the offending key."""
    if not isinstance(data, dict):
        raise ConfigError("training config: expected a mapping")
    stages = data.get("stages", {})
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"stages.{unknown[0]}: unknown stage (expected {', '.join(STAGES)})")
    rest = {k: v for k, v in data.items() if k != "stages"}
    if rest.get("speakers") is not None:
        rest["speakers"] = tuple(str(s) for s in rest["speakers"])
    try:
        return TrainConfig(**rest, stages={n: _stage(n, s) for n, s in stages.items()})
    except TypeError as e:
        raise ConfigError(f"training config: {e}") from None


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training YAML; a bare name like 'tiny' means training/configs/tiny.yaml."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = CONFIG_DIR / f"{path}.yaml"
    if not p.is_file():
        raise ConfigError(f"training config not found: {path}")
    return config_from_dict(yaml.safe_load(p.read_text()))
