"""engine.yaml → EngineConfig: the shipped file, one-line errors naming the key, paths."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

import engine
from engine.config import DEFAULT_CONFIG, DEFAULT_MODEL_DIR, EngineConfig, config_from_dict, load_config
from engine.errors import ConfigError
from engine.manifest import check_against_config, load_manifest
from engine.signal import SignalSpec

REPO_YAML = Path(engine.__file__).resolve().parent.parent / "engine.yaml"
_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<value>[^#]*?)\s*(?:#\s*(?P<comment>.*))?$")


def _yaml_keys(text: str) -> dict[str, str]:
    """Dotted leaf key -> its trailing comment ('' when it has none), parsed from the text."""
    keys, section = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, f"engine.yaml line not understood: {line!r}"
        if not match["value"]:
            section = match["key"]  # a mapping header such as `signal:`
            continue
        key = f"{section}.{match['key']}" if match["indent"] else match["key"]
        keys[key] = (match["comment"] or "").strip()
    return keys


def _fields(cls, prefix: str = "") -> set[str]:
    """Dotted names of every configurable leaf field of a config dataclass."""
    names = set()
    for name, tp in typing.get_type_hints(cls).items():
        if name == "source":
            continue
        names |= _fields(tp, f"{prefix}{name}.") if dataclasses.is_dataclass(tp) else {prefix + name}
    return names


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    return path


def test_repo_yaml_is_the_default_and_loads():
    assert DEFAULT_CONFIG.resolve() == REPO_YAML
    cfg = load_config()
    assert dataclasses.replace(cfg, source=None) == EngineConfig()  # the file states the defaults
    assert cfg == load_config(REPO_YAML)


def test_the_defaults_run_the_bundled_model():
    """An installed engine has no engine.yaml beside it and runs on the defaults: they must take
    the bundled model (its 10 ms lookahead, where the signal contract's default has none)."""
    check_against_config(load_manifest(DEFAULT_MODEL_DIR), EngineConfig())
    assert EngineConfig().spec == dataclasses.replace(SignalSpec(), lookahead_frames=1)


def test_every_key_of_the_repo_yaml_has_a_comment_and_every_option_is_listed():
    keys = _yaml_keys(REPO_YAML.read_text())
    assert not [k for k, comment in keys.items() if len(comment) < 10], "keys without a trailing comment"
    assert set(keys) == _fields(EngineConfig)


@pytest.mark.parametrize("data, key", [
    ({"signal": {"sample_rte": 16000}}, "signal.sample_rte"),
    ({"sound": {}}, "sound"),
    ({"runtime": {"providers": ["cuda"], "threads": 2}}, "runtime.threads"),
    ({"source": "x.yaml"}, "source"),
])
def test_unknown_key(data, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert message.startswith(f"{key}: unknown key") and "\n" not in message


@pytest.mark.parametrize("data, key", [
    ({"signal": {"sample_rate": "16k"}}, "signal.sample_rate"),
    ({"signal": {"block_frames": 2.5}}, "signal.block_frames"),
    ({"signal": {"block_frames": True}}, "signal.block_frames"),
    ({"model": {"dir": 3}}, "model.dir"),
    ({"model": {"precision": "fp64"}}, "model.precision"),
    ({"runtime": {"providers": "cuda"}}, "runtime.providers"),
    ({"runtime": {"providers": []}}, "runtime.providers"),
    ({"runtime": {"providers": ["gpu"]}}, "runtime.providers"),
    ({"audio": {"input_device": 1.5}}, "audio.input_device"),
    ({"audio": {"late_blocks": "loud"}}, "audio.late_blocks"),
    ({"signal": 3}, "signal"),
    ({"audio": None}, "audio"),
])
def test_wrong_type(data, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert message.startswith(f"{key}: expected ") and "\n" not in message


@pytest.mark.parametrize("key", ["signal.sample_rate", "signal.block_frames", "runtime.intra_op_threads",
                                 "runtime.inter_op_threads", "audio.max_queued_blocks"])
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_must_be_positive(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError) as info:
        config_from_dict({section: {name: value}})
    assert str(info.value) == f"{key}: expected a positive integer, got {value}"


@pytest.mark.parametrize("key", ["signal.lookahead_frames", "bank.crossfade_blocks"])
def test_counts_must_be_non_negative(key):
    section, name = key.split(".")
    assert getattr(getattr(config_from_dict({section: {name: 0}}), section), name) == 0
    with pytest.raises(ConfigError) as info:
        config_from_dict({section: {name: -1}})
    assert str(info.value) == f"{key}: expected an integer >= 0, got -1"


@pytest.mark.parametrize("key", ["bank.pitch_move", "bank.level_move"])
def test_move_weights_are_fractions(key):
    section, name = key.split(".")
    assert getattr(config_from_dict({section: {name: 0}}).bank, name) == 0.0
    assert getattr(config_from_dict({section: {name: 1}}).bank, name) == 1.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError) as info:
            config_from_dict({section: {name: bad}})
        assert str(info.value) == f"{key}: expected a number from 0 to 1, got {bad:g}"


@pytest.mark.parametrize("sample_rate", [12000, 44100])
def test_sample_rate_outside_the_signal_contract_names_the_key(sample_rate):
    """12 kHz cannot hold the 8 kHz mel range; 44.1 kHz is no whole number of 160-sample hops."""
    with pytest.raises(ConfigError) as info:
        config_from_dict({"signal": {"sample_rate": sample_rate}})
    message = str(info.value)
    assert message.startswith("signal.sample_rate: ") and str(sample_rate) in message and "\n" not in message


def test_block_and_lookahead_set_the_spec():
    cfg = config_from_dict({"signal": {"block_frames": 4, "lookahead_frames": 2}})
    assert (cfg.spec.block_samples, cfg.spec.lookahead_frames) == (640, 2)
    assert cfg.spec.algorithmic_latency_ms == pytest.approx(60.0)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "signal:\n  block_frames: [2\n"))
    assert "not valid YAML" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^audio\.latency: expected one of 'low', 'high', got 'lowest'$"):
        load_config(_write(tmp_path, "audio:\n  latency: lowest\n"))


def test_empty_yaml_gives_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, "# nothing set\n"))
    assert dataclasses.replace(cfg, source=None) == EngineConfig()


def test_default_model_dir_is_the_bundled_model():
    cfg = config_from_dict({})
    assert DEFAULT_MODEL_DIR == Path(engine.__file__).resolve().parent / "models" / "default"
    assert cfg.model_dir == DEFAULT_MODEL_DIR
    assert cfg.bank_path == DEFAULT_MODEL_DIR / "bank.json"


def test_relative_paths_resolve_against_the_yaml_directory(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "engine.yaml").write_text("model:\n  dir: models/mine\nbank:\n  path: ../banks/b.json\n")
    monkeypatch.chdir(tmp_path)  # a relative config path must still give paths that survive a chdir
    cfg = load_config("conf/engine.yaml")
    assert cfg.model_dir == folder / "models" / "mine"
    assert cfg.bank_path.resolve() == tmp_path / "banks" / "b.json"
    monkeypatch.chdir(folder)
    assert cfg.model_dir.resolve() == folder / "models" / "mine"


def test_absolute_paths_and_bank_beside_model(tmp_path):
    path = _write(tmp_path, f"model:\n  dir: {tmp_path / 'abs'}\n")
    cfg = load_config(path)
    assert cfg.model_dir == tmp_path / "abs"
    assert cfg.bank_path == tmp_path / "abs" / "bank.json"  # bank 'default' follows the model


def test_values_are_converted_to_their_types():
    cfg = config_from_dict({"runtime": {"providers": ["cpu"]}, "audio": {"input_device": "USB", "output_device": 3}})
    assert cfg.runtime.providers == ("cpu",)
    assert (cfg.audio.input_device, cfg.audio.output_device) == ("USB", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.signal.block_frames = 4


def test_yaml_round_trip_of_the_repo_file():
    data = yaml.safe_load(REPO_YAML.read_text())
    assert config_from_dict(data) == dataclasses.replace(load_config(), source=None)


def test_importing_engine_never_imports_torch():
    code = ("import importlib, pkgutil, sys, engine\n"
            "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'torch'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
