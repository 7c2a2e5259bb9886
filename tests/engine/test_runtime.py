import json

import numpy as np
import pytest

from engine.config import EngineConfig, RuntimeConfig, SignalConfig
from engine.errors import ModelError
from engine.manifest import check_against_config, load_manifest
from engine.runtime import Sessions, StepRunner, plan_providers
from engine.signal import SignalSpec
from support.memory import assert_retains_nothing_per_block
from support.toy_model import toy_reference, write_toy_model


@pytest.fixture
def toy_dir(tmp_path):
    return write_toy_model(tmp_path / "toy")


def _runner(model_dir):
    manifest = load_manifest(model_dir)
    return StepRunner(Sessions(model_dir, manifest, RuntimeConfig(providers=("cpu",)), quiet=True), manifest)


def test_step_runner_streams_like_the_reference(toy_dir):
    spec = SignalSpec()
    rng = np.random.default_rng(0)
    mels = rng.standard_normal((80, 40)).astype(np.float32)
    emotion = rng.standard_normal(8).astype(np.float32)
    runner = _runner(toy_dir)
    out = np.concatenate([runner.run(mels[:, i:i + 2], emotion).copy() for i in range(0, 40, 2)])
    np.testing.assert_allclose(out, toy_reference(mels, emotion, spec), atol=1e-5)


def test_reset_restarts_the_stream(toy_dir):
    rng = np.random.default_rng(1)
    mels = rng.standard_normal((80, 10)).astype(np.float32)
    runner = _runner(toy_dir)
    first = [runner.run(mels[:, i:i + 2], np.zeros(8, np.float32)).copy() for i in range(0, 10, 2)]
    runner.reset()
    second = [runner.run(mels[:, i:i + 2], np.zeros(8, np.float32)).copy() for i in range(0, 10, 2)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
    assert np.abs(first[1]).max() > 0


def test_step_runner_allocates_nothing_per_block(toy_dir):
    """The engine's step path retains no memory per block (allocations made by engine/ frames)."""
    runner = _runner(toy_dir)
    mel, emotion = np.ones((80, 2), np.float32), np.ones(8, np.float32)
    for _ in range(20):
        runner.run(mel, emotion)
    assert_retains_nothing_per_block(lambda _: runner.run(mel, emotion), blocks=2000)


def test_cpu_is_always_planned_and_cuda_absence_is_explained():
    providers, notes = plan_providers(("cuda", "cpu"))
    assert providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in providers:
        assert any("onnxruntime-gpu" in n for n in notes)


def test_sha256_mismatch_is_refused(toy_dir):
    with open(toy_dir / "step.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_manifest(toy_dir)


@pytest.mark.parametrize("change, field", [({"block_frames": 4}, "block_frames"),
                                           ({"lookahead_frames": 1}, "lookahead_frames")])
def test_config_mismatch_names_the_field(toy_dir, change, field):
    cfg = EngineConfig(signal=SignalConfig(**change))
    with pytest.raises(ModelError, match=field):
        check_against_config(load_manifest(toy_dir), cfg)


def test_manifest_missing_field_is_one_line(toy_dir):
    raw = json.loads((toy_dir / "manifest.json").read_text())
    del raw["embedding_dim"]
    (toy_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="embedding_dim") as err:
        load_manifest(toy_dir)
    assert "\n" not in str(err.value)


def test_missing_model_dir(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_manifest(tmp_path / "nope")
