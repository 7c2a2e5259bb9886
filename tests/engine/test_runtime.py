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


PITCH = np.ones((4, 2), np.float32)  # the toy step graph takes a pitch block and ignores it


def test_step_runner_streams_like_the_reference(toy_dir):
    spec = SignalSpec()
    rng = np.random.default_rng(0)
    mels = rng.standard_normal((80, 40)).astype(np.float32)
    emotion = rng.standard_normal(8).astype(np.float32)
    runner = _runner(toy_dir)
    out = np.concatenate([runner.run(mel=mels[:, i:i + 2], pitch=PITCH, emotion=emotion).copy()
                          for i in range(0, 40, 2)])
    np.testing.assert_allclose(out, toy_reference(mels, emotion, spec), atol=1e-5)


def test_step_runner_binds_every_declared_input_and_output(toy_dir):
    runner = _runner(toy_dir)
    assert {n: a.shape for n, a in runner.inputs.items()} == {"mel": (1, 80, 2), "pitch": (1, 4, 2),
                                                              "emotion": (1, 8)}
    assert {n: a.shape for n, a in runner.outputs.items()} == {"audio": (1, 320)}
    out = runner.run(mel=np.full((80, 2), 0.5, np.float32), pitch=PITCH, emotion=np.full(8, 0.25, np.float32))
    assert np.shares_memory(out, runner.outputs["audio"])  # a view of the bound buffer, not a copy
    np.testing.assert_allclose(out, 0.5 + 8 * 0.25, atol=1e-6)  # zero state: mean(state) = 0


def test_reset_restarts_the_stream(toy_dir):
    rng = np.random.default_rng(1)
    mels = rng.standard_normal((80, 10)).astype(np.float32)
    runner = _runner(toy_dir)
    zero = np.zeros(8, np.float32)
    first = [runner.run(mel=mels[:, i:i + 2], pitch=PITCH, emotion=zero).copy() for i in range(0, 10, 2)]
    runner.reset()
    second = [runner.run(mel=mels[:, i:i + 2], pitch=PITCH, emotion=zero).copy() for i in range(0, 10, 2)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
    assert np.abs(first[1]).max() > 0


def test_step_runner_allocates_nothing_per_block(toy_dir):
    """The engine's step path retains no memory per block (allocations made by engine/ frames)."""
    runner = _runner(toy_dir)
    mel, emotion = np.ones((80, 2), np.float32), np.ones(8, np.float32)
    for _ in range(20):
        runner.run(mel=mel, pitch=PITCH, emotion=emotion)
    assert_retains_nothing_per_block(lambda _: runner.run(mel=mel, pitch=PITCH, emotion=emotion), blocks=2000)


def test_sessions_refuse_a_graph_the_model_lacks(toy_dir):
    """A model exported before vocoder.onnx existed: one line naming the graph."""
    manifest = load_manifest(toy_dir)
    with pytest.raises(ModelError, match="no 'vocoder' graph") as err:
        Sessions(toy_dir, manifest, RuntimeConfig(providers=("cpu",)), quiet=True, graphs=("vocoder",))
    assert "\n" not in str(err.value)


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


def test_a_step_graph_without_the_pitch_input_is_an_older_export(toy_dir):
    """A model exported before pitch was explicit: refused in one line that says to re-export."""
    raw = json.loads((toy_dir / "manifest.json").read_text())
    raw["graphs"]["step"]["inputs"] = [t for t in raw["graphs"]["step"]["inputs"] if t["name"] != "pitch"]
    (toy_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="no input pitch.*re-export") as err:
        check_against_config(load_manifest(toy_dir), EngineConfig(signal=SignalConfig(lookahead_frames=0)))
    assert "\n" not in str(err.value)


def test_a_prosody_input_that_takes_the_level_as_a_shift_from_the_source_is_an_older_export(tmp_path):
    """The previous export's move took the level as a shift from the source's, which the engine no longer
    computes: refused in one line that says to re-export, not fed a level it reads otherwise."""
    model = write_toy_model(tmp_path / "toy", prosody=True)
    cfg = EngineConfig(signal=SignalConfig(lookahead_frames=0))
    check_against_config(load_manifest(model), cfg)
    raw = json.loads((model / "manifest.json").read_text())
    del raw["prosody_level"]
    (model / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="shift from the source.*re-export") as err:
        check_against_config(load_manifest(model), cfg)
    assert "\n" not in str(err.value)


def test_training_speakers_are_none_when_the_manifest_does_not_record_them(toy_dir):
    raw = json.loads((toy_dir / "manifest.json").read_text())
    assert "training" not in raw
    assert load_manifest(toy_dir).training_speakers is None
    raw["training"] = {"speakers": ["0011", "0012"]}
    (toy_dir / "manifest.json").write_text(json.dumps(raw))
    assert load_manifest(toy_dir).training_speakers == ["0011", "0012"]


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
