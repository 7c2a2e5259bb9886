"""The exported model directory: parity over block sizes, the manifest/name contract, graph hygiene."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engine.config import RuntimeConfig
from engine.manifest import NEXT_SUFFIX, STEP_INPUTS, STEP_OUTPUT, load_manifest, sha256_file
from engine.runtime import Sessions, StepRunner
from export.graphs import EmotionEncoderGraph, StepGraph
from export.load import load_networks
from export.reference import log_mel, reference_embedding, render_offline
from export.to_onnx import training_ops
from export.verify import cpu_session, stream_onnx, stream_torch
from support.audio import speech_like

BLOCKS = [1, 2, 4]
TOL = 1e-4
HOP = 160


@pytest.fixture(scope="module")
def networks(checkpoints):
    return load_networks(checkpoints["stage2"], checkpoints["vocoder"])


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3.05 s: 305 frames, ragged against blocks 2 and 4."""
    return speech_like(3.05, seed=3)


@pytest.fixture(scope="module")
def embedding(checkpoints) -> np.ndarray:
    """(D,) embedding of a different utterance, as the bank would hold it."""
    return reference_embedding(checkpoints["stage2"], speech_like(2.0, seed=7, f0=220.0))


@pytest.fixture(scope="module")
def torch_stream(networks, speech, embedding):
    """torch_stream(block) -> StepGraph's streamed audio of `speech`, computed once per block size."""
    graph = StepGraph(networks.content_encoder, networks.generator, networks.vocoder)
    mel, emb, cache = log_mel(speech, networks.spec), torch.from_numpy(embedding)[None], {}

    def get(block: int) -> np.ndarray:
        if block not in cache:
            cache[block] = stream_torch(graph, mel, emb, block)
        return cache[block]

    return get


def _stream_onnx(model_dir, manifest, speech, embedding, level="enable_all") -> np.ndarray:
    shapes = {s["name"]: tuple(s["shape"]) for s in manifest["state"]}
    mel = log_mel(speech, load_manifest(model_dir).spec).numpy()
    block = manifest["signal"]["block_frames"]
    return stream_onnx(cpu_session(model_dir / "step.onnx", level), shapes, mel, embedding[None], block)


def _whole(n_samples: int, block: int) -> int:
    """Samples of the whole blocks of an n_samples utterance."""
    frames = n_samples // HOP
    return (frames - frames % block) * HOP


@pytest.mark.parametrize("block", BLOCKS)
def test_onnx_stream_equals_torch_stream_equals_offline(block, exported, torch_stream, checkpoints, speech,
                                                        embedding):
    model_dir, manifest = exported(block)
    onnx_audio = _stream_onnx(model_dir, manifest, speech, embedding)
    torch_audio = torch_stream(block)
    offline = render_offline(checkpoints["stage2"], checkpoints["vocoder"], speech, embedding)
    n = _whole(speech.size, block)
    assert onnx_audio.shape == torch_audio.shape == (n,)
    assert offline.shape == (speech.size - speech.size % HOP,)
    assert np.abs(offline).max() > 0.05, "near-silent output would make the tolerance meaningless"
    assert np.abs(onnx_audio - torch_audio).max() < TOL
    assert np.abs(torch_audio - offline[:n]).max() < TOL
    assert np.abs(onnx_audio - offline[:n]).max() < TOL


@pytest.mark.parametrize("block", BLOCKS)
def test_export_time_parity_is_recorded_and_within_tolerance(block, exported):
    _, manifest = exported(block)
    parity = manifest["parity"]
    assert parity["tolerance"] == TOL and parity["audio_seconds"] == pytest.approx(3.0)
    step = parity["step"]
    assert step["frames"] == 300 - 300 % block and step["audio_peak"] > 0.05
    assert step["torch_stream_vs_offline"] < TOL and step["onnx_vs_offline"] < TOL
    assert set(step["onnx_vs_torch_stream"]) == {"disable_all", "enable_basic", "enable_all"}
    assert max(step["onnx_vs_torch_stream"].values()) < TOL
    assert max(parity["emotion_encoder"][k] for k in ("embedding", "probs", "strength", "cue")) < TOL


@pytest.mark.parametrize("block", BLOCKS)
def test_engine_step_runner_reproduces_torch_streaming(block, exported, torch_stream, networks, speech, embedding):
    """The manifest and graph names as the engine binds them (IO binding by name) give the same audio."""
    model_dir, _ = exported(block)
    manifest = load_manifest(model_dir)
    runner = StepRunner(Sessions(model_dir, manifest, RuntimeConfig(providers=("cpu",)), quiet=True), manifest)
    mel = log_mel(speech, networks.spec)
    frames = mel.shape[-1] - mel.shape[-1] % block
    engine_audio = np.concatenate([runner.run(mel[0, :, i:i + block].numpy(), embedding).copy()
                                   for i in range(0, frames, block)])
    assert np.abs(engine_audio - torch_stream(block)).max() < TOL


@pytest.mark.parametrize("block", [2])
def test_optimisation_levels_agree(block, exported, speech, embedding):
    model_dir, manifest = exported(block)
    full = _stream_onnx(model_dir, manifest, speech, embedding, "enable_all")
    none = _stream_onnx(model_dir, manifest, speech, embedding, "disable_all")
    basic = _stream_onnx(model_dir, manifest, speech, embedding, "enable_basic")
    assert np.abs(full - none).max() < 1e-5 and np.abs(full - basic).max() < 1e-5


def test_emotion_encoder_matches_pytorch_at_two_lengths_in_one_session(exported, networks, speech):
    model_dir, _ = exported(2)
    session = cpu_session(model_dir / "emotion_encoder.onnx")
    graph = EmotionEncoderGraph(networks.emotion_encoder, networks.recognition)
    for seconds in (3.05, 1.23):
        mel = log_mel(speech[: int(seconds * 16000)], networks.spec)
        got = session.run(list(graph.OUTPUTS), {"mel": mel.numpy()})
        with torch.no_grad():
            want = [t.numpy() for t in graph(mel)]
        T = mel.shape[-1]
        assert [g.shape for g in got] == [(1, 16), (1, 5), (1,), (1, T)]
        for g, w in zip(got, want):
            assert np.abs(g - w).max() < TOL
        assert got[1].sum() == pytest.approx(1.0, abs=1e-5) and got[3].sum() == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= got[2][0] <= 1.0


def test_reference_embedding_is_the_encoder_graph_embedding(exported, checkpoints, speech):
    model_dir, _ = exported(2)
    mel = log_mel(speech, load_manifest(model_dir).spec)
    (onnx_emb,) = cpu_session(model_dir / "emotion_encoder.onnx").run(["embedding"], {"mel": mel.numpy()})
    emb = reference_embedding(checkpoints["stage2"], speech)
    assert emb.shape == (16,) and emb.dtype == np.float32
    assert np.abs(emb - onnx_emb[0]).max() < TOL


@pytest.mark.parametrize("block", BLOCKS)
def test_manifest_parses_and_its_hashes_verify(block, exported):
    model_dir, raw = exported(block)
    manifest = load_manifest(model_dir, verify=True)
    assert manifest.spec.block_frames == block and manifest.embedding_dim == 16
    assert manifest.algorithmic_latency_ms == pytest.approx(10.0 * block)
    assert manifest.emotions == ("Neutral", "Angry", "Happy", "Sad", "Surprise")
    for g in manifest.graphs.values():
        assert sha256_file(model_dir / g.file) == g.sha256
    assert raw["opset"] == 17 and set(raw["versions"]) == {"torch", "onnx", "onnxruntime"}
    assert raw["training"]["stage2_run_id"] == "tiny-stage2-0"
    assert raw["training"]["vocoder_run_id"] == "tiny-vocoder-1"
    assert set(raw["parameters"]) == {"content_encoder", "emotion_encoder", "recognition", "generator", "vocoder"}
    assert all(v > 0 for v in raw["parameters"].values())


@pytest.mark.parametrize("block", BLOCKS)
def test_graph_names_and_fixed_shapes_match_the_manifest(block, exported):
    model_dir, _ = exported(block)
    manifest = load_manifest(model_dir)
    model = onnx.load(str(model_dir / "step.onnx"))
    state = [t.name for t in manifest.state]
    assert [i.name for i in model.graph.input] == [*STEP_INPUTS, *state]
    assert [o.name for o in model.graph.output] == [STEP_OUTPUT, *(n + NEXT_SUFFIX for n in state)]
    assert len(set(state)) == len(state) and all(n.split("_")[0] in ("ec", "gen", "voc") for n in state)
    declared = {t.name: t.shape for t in (*manifest.step.inputs, *manifest.step.outputs)}
    assert declared["mel"] == (1, 80, block) and declared["emotion"] == (1, 16)
    assert declared["audio"] == (1, block * HOP)
    for t in manifest.state:
        assert declared[t.name] == declared[t.name + NEXT_SUFFIX] == t.shape
        assert all(isinstance(d, int) for d in t.shape) and t.shape[0] == 1


def test_graphs_pass_the_checker_and_hold_no_training_ops(exported):
    model_dir, _ = exported(2)
    for file in ("step.onnx", "emotion_encoder.onnx"):
        model = onnx.load(str(model_dir / file))
        onnx.checker.check_model(model, full_check=True)
        assert training_ops(model) == []
        assert not {n.op_type for n in model.graph.node} & {"Dropout", "BatchNormalization"}
    encoder = load_manifest(model_dir).graphs["emotion_encoder"]
    assert encoder.inputs[0].shape == (1, 80, "T")
    assert [t.shape for t in encoder.outputs] == [(1, 16), (1, 5), (1,), (1, "T")]


def test_training_ops_finds_dropout():
    node = onnx.helper.make_node("Dropout", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    assert training_ops(onnx.helper.make_model(graph)) == ["Dropout"]
