"""engine.yaml → a validated, frozen EngineConfig.

Every key is checked against the dataclass fields below: an unknown key, a wrong
type or an impossible value raises ConfigError with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import yaml

from engine.errors import ConfigError
from engine.signal import SignalSpec, exact_div

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "default"
DEFAULT_CONFIG = PACKAGE_DIR.parent / "engine.yaml"

Provider = Literal["cuda", "cpu"]


@dataclass(frozen=True)
class SignalConfig:
    sample_rate: int = 16000
    block_frames: int = 2
    lookahead_frames: int = 1


@dataclass(frozen=True)
class ModelConfig:
    dir: str = "default"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"


@dataclass(frozen=True)
class RuntimeConfig:
    providers: tuple[Provider, ...] = ("cuda", "cpu")
    intra_op_threads: int = 1
    inter_op_threads: int = 1


@dataclass(frozen=True)
class BankConfig:
    path: str = "default"
    crossfade_blocks: int = 4
    pitch_move: float = 0.5
    level_move: float = 0.0


@dataclass(frozen=True)
class AudioConfig:
    input_device: Optional[Union[int, str]] = None
    output_device: Optional[Union[int, str]] = None
    latency: Literal["low", "high"] = "low"
    late_blocks: Literal["dry", "silence"] = "dry"
    max_queued_blocks: int = 4
    headroom_blocks: int = 1
    callbacks_per_block: int = 1
    server: Literal["auto", "pulse", "pipewire", "jack"] = "auto"


@dataclass(frozen=True)
class EngineConfig:
    signal: SignalConfig = field(default_factory=SignalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    source: Optional[str] = None

    @property
    def spec(self) -> SignalSpec:
        """The signal contract this configuration asks for."""
        return SignalSpec(
            sample_rate=self.signal.sample_rate,
            block_frames=self.signal.block_frames,
            lookahead_frames=self.signal.lookahead_frames,
        )

    @property
    def model_dir(self) -> Path:
        if self.model.dir == "default":
            return DEFAULT_MODEL_DIR
        return self._resolve(self.model.dir)

    @property
    def bank_path(self) -> Path:
        if self.bank.path == "default":
            return self.model_dir / "bank.json"
        return self._resolve(self.bank.path)

    def _resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        if p.is_absolute() or self.source is None:
            return p
        return Path(self.source).parent / p


_POSITIVE = {
    "signal.sample_rate", "signal.block_frames", "runtime.intra_op_threads",
    "runtime.inter_op_threads", "audio.max_queued_blocks", "audio.headroom_blocks",
    "audio.callbacks_per_block",
}
_NON_NEGATIVE = {"signal.lookahead_frames", "bank.crossfade_blocks"}
_FRACTION = {"bank.pitch_move", "bank.level_move"}


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of ({_describe(typing.get_args(tp)[0])})"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            type(None): "null"}.get(tp, str(tp))


def _check(value, tp, key: str):
    """Value converted to tp, or ConfigError naming key and what was expected."""
    origin = typing.get_origin(tp)
    ok = True
    if origin is Literal:
        ok = value in typing.get_args(tp)
    elif origin is Union:
        for option in typing.get_args(tp):
            try:
                return _check(value, option, key)
            except ConfigError:
                pass
        ok = False
    elif origin is tuple:
        if not isinstance(value, list) or not value:
            ok = False
        else:
            return tuple(_check(v, typing.get_args(tp)[0], key) for v in value)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is type(None):
        ok = value is None
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    return value


def _build(cls, data, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"source"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key, tp = prefix + name, hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key + ".")
            continue
        value = _check(value, tp, key)
        if key in _POSITIVE and value <= 0:
            raise ConfigError(f"{key}: expected a positive integer, got {value}")
        if key in _NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key}: expected an integer >= 0, got {value}")
        if key in _FRACTION and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key}: expected a number from 0 to 1, got {value:g}")
        kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict, source: Optional[str] = None) -> EngineConfig:
    """Validated EngineConfig from a parsed YAML mapping."""
    cfg = _build(EngineConfig, data or {}, "")
    try:
        spec = SignalSpec(**vars(cfg.signal))
        # Checked now, not at first use: a rate with no whole number of hops per second.
        exact_div(spec.sample_rate, spec.hop, "sample_rate")
    except ValueError as e:
        raise ConfigError(_signal_error(cfg.signal, str(e))) from None
    return dataclasses.replace(cfg, source=source)


def _signal_error(signal: SignalConfig, error: str) -> str:
    """A SignalSpec error as one line naming the signal.* key the user can change.

    The spec also checks fields engine.yaml does not expose (f_max, hop...); only
    sample_rate can break those, so their errors are reported against it.
    """
    name, _, reason = error.partition(": ")
    if name in vars(signal):
        return f"signal.{name}: {reason}"
    return f"signal.sample_rate: {signal.sample_rate} does not fit the signal contract ({error})"


def load_config(path: Optional[str | Path] = None) -> EngineConfig:
    """Read engine.yaml (the repository's own when path is None)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        if path == DEFAULT_CONFIG:
            return EngineConfig()
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    # Absolute, so that relative model/bank paths stay anchored to the file after a chdir.
    return config_from_dict(data, source=str(path.resolve()))
