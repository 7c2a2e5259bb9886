"""Training configuration: one YAML file → frozen dataclasses.

Model sections hold the keyword arguments of each model's constructor; stages are
data (steps, learning rate, trainable networks, loss weights), run by one loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
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
    # At most this many utterances of the split, evenly spread (the vocoder's envelope
    # targets cost 0.3 s of WORLD analysis each); None: all.
    max_utterances: int | None = None
    # Microphone realism on the training inputs (training.data.augment.Degradation's fields
    # that differ from its defaults; {} takes them all); None: clean inputs. Not for the vocoder,
    # whose input is the generator's mel, never a microphone's.
    augment: dict | None = None
    # Network options this stage changes, merged over the top-level `models` for this stage's run
    # and recorded so in its checkpoints (the bundled recipe gives the generator its source skip
    # from Stage II on: training.models.generator).
    models: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs besides the data directory; recorded in every checkpoint."""

    name: str
    seed: int
    models: dict[str, dict[str, Any]]
    stages: dict[str, StageConfig]
    speakers: tuple[str, ...] | None = None
    # Speakers never loaded for training or validation (held out for evaluation): the
    # checkpoints and the exported manifest record which speakers were trained on.
    exclude_speakers: tuple[str, ...] = ()
    # Processes for the cached WORLD analyses of training.data.analysis.
    analysis_jobs: int = 1
    # Frames of the future the model may see (SignalSpec.lookahead_frames): frame k renders
    # hop k - lookahead_frames; it adds as much to the latency (see training.data.analysis).
    lookahead_frames: int = 0
    log_every: int = 10
    val_every: int = 100
    ckpt_every: int = 100
    val_batches: int = 2
    samples_per_val: int = 2

    def to_dict(self) -> dict:
        return asdict(self)

    def for_stage(self, stage: str) -> TrainConfig:
        """This config with `stage`'s network options merged over `models`."""
        changes = self.stages[stage].models or {}
        models = {name: {**(self.models.get(name) or {}), **(changes.get(name) or {})}
                  for name in {*self.models, *changes}}
        return replace(self, models=models)


def _stage(name: str, data: dict) -> StageConfig:
    try:
        stage = StageConfig(**{**data, "trainable": tuple(data.get("trainable", ()))})
    except TypeError as e:
        raise ConfigError(f"stages.{name}: {e}") from None
    if stage.max_utterances is not None and stage.max_utterances <= 0:
        raise ConfigError(f"stages.{name}.max_utterances: must be positive")
    if stage.augment is not None:
        degradation(name, stage.augment)
    if stage.models is not None:
        from training.build import NETWORKS

        valid = isinstance(stage.models, dict) and set(stage.models) <= set(NETWORKS)
        if not valid or not all(isinstance(v, dict) for v in stage.models.values()):
            raise ConfigError(f"stages.{name}.models: expected network name -> options ({', '.join(NETWORKS)})")
    if stage.steps <= 0 or stage.batch_size <= 0 or stage.segment_frames <= 0 or stage.lr <= 0:
        raise ConfigError(f"stages.{name}: steps, lr, batch_size and segment_frames must be positive")
    return stage


def degradation(stage: str, fields: dict):
    """training.data.augment.Degradation from a stage's `augment` mapping (lists become ranges)."""
    from training.data.augment import Degradation

    if stage == "vocoder":
        raise ConfigError("stages.vocoder.augment: the vocoder's input is the generator's mel, not a microphone's")
    try:
        return Degradation(**{k: tuple(v) if isinstance(v, list) else v for k, v in (fields or {}).items()})
    except TypeError as e:
        raise ConfigError(f"stages.{stage}.augment: {e}") from None


def _speaker(name) -> str:
    """A speaker as the corpus names it: 19, "19" and "0019" are "0019"."""
    return f"{int(name):04d}" if str(name).isdigit() else str(name)


def config_from_dict(data: dict) -> TrainConfig:
    """Validated TrainConfig; ConfigError names the offending key."""
    if not isinstance(data, dict):
        raise ConfigError("training config: expected a mapping")
    stages = data.get("stages", {})
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"stages.{unknown[0]}: unknown stage (expected {', '.join(STAGES)})")
    rest = {k: v for k, v in data.items() if k != "stages"}
    for key in ("speakers", "exclude_speakers"):
        if rest.get(key) is not None:
            rest[key] = tuple(_speaker(s) for s in rest[key])
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
