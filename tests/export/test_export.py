"""The exported model directory: parity over block sizes, the manifest/name contract, graph hygiene.

What "parity" means for the step graph's audio: the generator's frames (liftered log-mel,
log-F0, voicing) are compared sample for sample (1e-4), and so is the audio against the
vocoder of the very frames the graph produced; the audio against the offline render is
compared by log-spectral distance (export.verify.SPECTRAL_TOLERANCE_DB). The excitation's
phase integrates F0, so last-bit differences of the generator's log-F0 between ONNX Runtime
and PyTorch shift later pulses by a fraction of a sample: samples differ, spectra do not.
The vocoder graph alone (copy synthesis) has no generator before it and streams exactly.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from scipy.signal import find_peaks

from engine.config import RuntimeConfig
from engine.features import log_mel_offline
from engine.manifest import (
    FRAMES_OUTPUT,
    NEXT_SUFFIX,
    PROSODY_INPUT,
    STEP_INPUTS,
    STEP_OUTPUT,
    VOCODER_INPUTS,
    load_manifest,
    sha256_file,
)
from engine.pitch import reference_pitch
from engine.prosody import MOVE_SIZE
from engine.resynth import CopySynthesis, copy_synthesis
from engine.runtime import Sessions, StepRunner
from engine.signal import SignalSpec
from export.graphs import EmotionEncoderGraph, StepGraph
from export.load import load_networks
from export.model_dir import export_model
from export.reference import (
    convert_frames,
    log_mel,
    ref_pitch,
    reference_embedding,
    render_frames,
    render_offline,
    source_pitch,
)
from export.to_onnx import training_ops
from export.verify import (
    PROBE_MOVE,
    SPECTRAL_TOLERANCE_DB,
    cpu_session,
    log_spectral_distance_db,
    stream_onnx,
    stream_torch,
)
from support.audio import speech_like
from support.tiny_checkpoints import SPEAKERS, write_checkpoint
from training.checkpoint import load_checkpoint, save_checkpoint

BLOCKS = [1, 2, 4]
TOL = 1e-4
HOP = 160
SR = 16000
N_MELS = 80
LEVELS = ("disable_all", "enable_basic", "enable_all")


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
def feeds(networks, speech, embedding) -> tuple[dict, dict]:
    """The step graph's inputs for `speech`: per-frame {mel (1, 80, T), pitch (1, 4, T): the
    tracker's causal features} and constant {emotion (1, D), prosody (1, 5): export's probe move},
    as torch tensors."""
    spec = networks.spec
    return ({"mel": log_mel(speech, spec), "pitch": source_pitch(speech, spec)},
            {"emotion": torch.from_numpy(embedding)[None], "prosody": torch.tensor([PROBE_MOVE])})


@pytest.fixture(scope="module")
def torch_stream(networks, feeds):
    """torch_stream(block) -> StepGraph streamed over `speech`: {audio (T' * hop,), frames (82, T')}, once per block."""
    graph = StepGraph(networks.content_encoder, networks.generator, networks.vocoder)
    frames, constants = feeds
    cache = {}

    def get(block: int) -> dict[str, np.ndarray]:
        if block not in cache:
            cache[block] = stream_torch(graph, list(frames.values()), list(constants.values()), block)
        return cache[block]

    return get


def _stream_onnx(model_dir, manifest, feeds, level="enable_all") -> dict[str, np.ndarray]:
    shapes = {s["name"]: tuple(s["shape"]) for s in manifest["state"]}
    frames, constants = ({k: v.numpy() for k, v in d.items()} for d in feeds)
    session = cpu_session(model_dir / "step.onnx", level)
    return stream_onnx(session, shapes, frames, constants, manifest["signal"]["block_frames"],
                       (STEP_OUTPUT, FRAMES_OUTPUT))


def _vocoder_of(networks, frames: np.ndarray) -> np.ndarray:
    """The offline PyTorch vocoder of generator frames (82, T) -> audio (T * hop,)."""
    return render_frames(networks, torch.from_numpy(frames)[None])[0].numpy()


def _whole(n_samples: int, block: int) -> int:
    """Frames of the whole blocks of an n_samples utterance."""
    frames = n_samples // HOP
    return frames - frames % block


@pytest.mark.parametrize("block", BLOCKS)
def test_onnx_stream_equals_torch_stream_equals_offline(block, exported, torch_stream, networks, checkpoints, feeds,
                                                        speech, embedding):
    """Frames: ONNX stream == torch stream == offline within 1e-4. Audio: each stream is the
    vocoder of its own frames within 1e-4, and sounds like the offline render (log-spectral
    distance within SPECTRAL_TOLERANCE_DB; see the module docstring)."""
    model_dir, manifest = exported(block)
    onnx_out, torch_out = _stream_onnx(model_dir, manifest, feeds), torch_stream(block)
    (mel, pitch), (emotion, move) = feeds[0].values(), feeds[1].values()
    offline_frames = convert_frames(networks, mel, pitch, emotion, move)[0].numpy()
    offline_audio = render_offline(checkpoints["stage2"], checkpoints["vocoder"], speech, embedding, move[0].numpy())
    n = _whole(speech.size, block)
    assert onnx_out["frames"].shape == torch_out["frames"].shape == (N_MELS + 2, n)
    assert onnx_out["audio"].shape == torch_out["audio"].shape == (n * HOP,)
    assert offline_audio.shape == (speech.size - speech.size % HOP,)
    assert np.abs(offline_audio).max() > 0.05, "near-silent output would make the tolerance meaningless"
    assert np.abs(onnx_out["frames"] - torch_out["frames"]).max() < TOL
    assert np.abs(torch_out["frames"] - offline_frames[:, :n]).max() < TOL
    assert np.abs(onnx_out["frames"] - offline_frames[:, :n]).max() < TOL
    for out in (onnx_out, torch_out):
        assert np.abs(out["audio"] - _vocoder_of(networks, out["frames"])).max() < TOL
        assert log_spectral_distance_db(out["audio"], offline_audio[: n * HOP]) < SPECTRAL_TOLERANCE_DB


@pytest.mark.parametrize("block", BLOCKS)
def test_export_time_parity_is_recorded_and_within_tolerance(block, exported):
    _, manifest = exported(block)
    parity = manifest["parity"]
    assert parity["tolerance"] == TOL and parity["spectral_tolerance_db"] == SPECTRAL_TOLERANCE_DB
    assert parity["audio_seconds"] == pytest.approx(3.0)
    step, vocoder = parity["step"], parity["vocoder"]
    assert step["frames_streamed"] == vocoder["frames_streamed"] == 300 - 300 % block
    for errors in (step["frames"], vocoder["audio"]):  # bounded sample by sample
        assert errors["peak"] > 0.05
        assert set(errors["onnx_vs_torch_stream"]) == set(LEVELS)
        assert max(errors["onnx_vs_torch_stream"].values()) < TOL
        assert errors["torch_stream_vs_offline"] < TOL and errors["onnx_vs_offline"] < TOL
    audio = step["audio"]
    assert audio["peak"] > 0.05 and audio["onnx_vs_vocoder_of_onnx_frames"] < TOL
    assert audio["log_spectral_distance_db"] < SPECTRAL_TOLERANCE_DB
    assert np.isfinite(audio["onnx_vs_offline"])  # reported, not bounded (pulse drift)
    assert max(parity["emotion_encoder"][k] for k in ("embedding", "probs", "strength", "cue")) < TOL


def test_a_generator_with_the_levelled_source_skip_and_view_exports_within_tolerance(checkpoints, exported,
                                                                                   tmp_path):
    """The level tracker, the skip and the view read the content encoder's input inside the step graph;
    the tracker and the view's conv add a state tensor each; streaming parity holds as for the plain
    generator."""
    stage2 = write_checkpoint(tmp_path / "stage2.pt", "stage2", seed=0,
                              generator={"source_skip": True, "source_input": True, "level_ref": -4.0})
    export_model(stage2, checkpoints["vocoder"], tmp_path / "m", block_frames=2)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    errors = manifest["parity"]["step"]["frames"]
    assert errors["peak"] > 0.05 and errors["torch_stream_vs_offline"] < TOL
    assert max(errors["onnx_vs_torch_stream"].values()) < TOL
    _, plain = exported(2)
    states = [len(m["state"]) for m in (manifest, plain)]
    assert states[0] == states[1] + 2, states


@pytest.mark.parametrize("block", BLOCKS)
def test_engine_step_runner_reproduces_torch_streaming(block, exported, torch_stream, networks, feeds):
    """The manifest and graph names as the engine binds them (IO binding by name): the frames
    output equals torch streaming's, the audio the vocoder of those frames."""
    model_dir, _ = exported(block)
    manifest = load_manifest(model_dir)
    runner = StepRunner(Sessions(model_dir, manifest, RuntimeConfig(providers=("cpu",)), quiet=True), manifest)
    assert set(runner.outputs) == {STEP_OUTPUT, FRAMES_OUTPUT}
    (mel, pitch), (emotion, move) = (d.values() for d in feeds)
    audio, frames = [], []
    for i in range(0, _whole(mel.shape[-1] * HOP, block), block):
        audio.append(runner.run(mel=mel[0, :, i:i + block].numpy(), pitch=pitch[0, :, i:i + block].numpy(),
                                emotion=emotion[0].numpy(), prosody=move[0].numpy()).copy())
        frames.append(runner.outputs[FRAMES_OUTPUT][0].copy())
    frames = np.concatenate(frames, axis=1)
    assert np.abs(frames - torch_stream(block)["frames"]).max() < TOL
    assert np.abs(np.concatenate(audio) - _vocoder_of(networks, frames)).max() < TOL


@pytest.mark.parametrize("block", [2])
def test_optimisation_levels_agree(block, exported, feeds):
    model_dir, manifest = exported(block)
    out = {level: _stream_onnx(model_dir, manifest, feeds, level) for level in LEVELS}
    for level in ("disable_all", "enable_basic"):
        assert np.abs(out[level]["frames"] - out["enable_all"]["frames"]).max() < 1e-5
        assert log_spectral_distance_db(out[level]["audio"], out["enable_all"]["audio"]) < SPECTRAL_TOLERANCE_DB


def test_emotion_encoder_matches_pytorch_at_two_lengths_in_one_session(exported, networks, speech):
    model_dir, manifest = exported(2)
    session = cpu_session(model_dir / "emotion_encoder.onnx")
    graph = EmotionEncoderGraph(networks.emotion_encoder, networks.recognition)
    centre = networks.emotion_encoder.centre
    assert load_manifest(model_dir).anchor_centre.tolist() == centre.tolist()
    voice = (centre + torch.linspace(-1.0, 1.0, centre.numel()))[None]  # a speaker far from the average
    for seconds in (3.05, 1.23):
        audio = speech[: int(seconds * 16000)]
        mel, pitch = log_mel(audio, networks.spec), ref_pitch(audio, networks.spec)
        got = session.run(list(graph.OUTPUTS), {"mel": mel.numpy(), "pitch": pitch.numpy(), "anchor": voice.numpy()})
        with torch.no_grad():
            want = [t.numpy() for t in graph(mel, pitch, voice)]
            average = graph(mel, pitch, centre[None])[0].numpy()
        T = mel.shape[-1]
        assert [g.shape for g in got] == [(1, 16), (1, 5), (1,), (1, T)]
        for g, w in zip(got, want):
            assert np.abs(g - w).max() < TOL
        assert np.abs(got[0] - average).max() > 100 * TOL  # the anchor reaches the embedding
        assert got[1].sum() == pytest.approx(1.0, abs=1e-5) and got[3].sum() == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= got[2][0] <= 1.0


def test_reference_embedding_is_the_encoder_graph_embedding(exported, checkpoints, speech):
    model_dir, _ = exported(2)
    spec = load_manifest(model_dir).spec
    voice = load_manifest(model_dir).anchor_centre + 0.5
    feeds = {"mel": log_mel(speech, spec).numpy(), "pitch": ref_pitch(speech, spec).numpy(), "anchor": voice[None]}
    (onnx_emb,) = cpu_session(model_dir / "emotion_encoder.onnx").run(["embedding"], feeds)
    emb = reference_embedding(checkpoints["stage2"], speech, voice)
    assert emb.shape == (16,) and emb.dtype == np.float32
    assert np.abs(emb - onnx_emb[0]).max() < TOL


def test_copy_synthesis_through_the_engine_equals_the_pytorch_vocoder(exported, networks, speech):
    """engine.resynth runs vocoder.onnx block by block (ragged tail padded and cut) on the
    engine's log-mel and the tracker's centred pitch: the PyTorch vocoder, offline on the same
    features, gives the same samples within 1e-4 (no generator before it: no pulse drift)."""
    model_dir, _ = exported(2)
    spec = networks.spec
    mel, pitch = log_mel_offline(speech, spec), reference_pitch(speech, spec)
    with torch.no_grad():
        offline = networks.vocoder(torch.from_numpy(mel)[None], torch.from_numpy(pitch)[None]).reshape(-1).numpy()
    got = CopySynthesis(model_dir).render(speech)
    assert got.shape == offline.shape == (speech.size - speech.size % HOP,)  # 305 frames: the last block ragged
    assert np.abs(offline).max() > 0.05
    assert np.abs(got - offline).max() < TOL
    np.testing.assert_array_equal(copy_synthesis(model_dir, speech), got)


def _pulse_train_vocoder(path, signal: dict):
    """A vocoder checkpoint whose filter net outputs constant cepstra (zero projection, bias:
    harmonic filter flat at e^0, noise filter closed), so it renders a bare pulse train."""
    ckpt = load_checkpoint(write_checkpoint(path, "vocoder", seed=1, signal=signal), "vocoder")
    weights = ckpt["models"]["vocoder"]
    weights["net.proj.weight"].zero_()
    bias = weights["net.proj.bias"].zero_()
    bias[bias.numel() // 2] = -15.0  # the noise filter's c0
    save_checkpoint(path, ckpt)
    return path


@pytest.mark.slow
def test_copy_synthesis_compensates_the_lookahead(checkpoints, tmp_path):
    """With a lookahead of L frames, model frame k renders hop k - L: engine.resynth feeds the
    pitch L frames late and drops the first L hops, so the output is time-aligned with its
    input whatever L. A pulse train whose F0 steps from 110 to 330 Hz at frame 101 (the
    ramp spans hop 101) shows its first short period there for L = 0, 1 and 2 alike (measured
    within 11 samples of each other; one frame of misalignment would be 160)."""
    audio, k0 = speech_like(2.0, seed=1), 101
    pitch = np.zeros((2, audio.size // HOP), np.float32)
    pitch[0], pitch[1] = np.where(np.arange(pitch.shape[1]) < k0, np.log(110.0), np.log(330.0)), 1.0
    change = {}
    for lag in (0, 1, 2):
        signal = SignalSpec(lookahead_frames=lag).to_dict()
        stage2 = write_checkpoint(tmp_path / f"stage2_{lag}.pt", "stage2", seed=0, signal=signal)
        export_model(stage2, _pulse_train_vocoder(tmp_path / f"vocoder_{lag}.pt", signal), tmp_path / f"m{lag}",
                     block_frames=2)
        out = copy_synthesis(tmp_path / f"m{lag}", audio, pitch)
        assert out.shape == (audio.size,)
        pulses, _ = find_peaks(out, height=0.3 * np.abs(out).max(), distance=30)
        periods = np.diff(pulses)
        assert np.median(periods[: len(periods) // 4]) == pytest.approx(SR / 110.0, abs=1.0)
        change[lag] = pulses[1:][periods < 97][0]  # the end of the first period under 1 / 165 Hz
    assert k0 * HOP < change[0] < (k0 + 1) * HOP + 50, change
    assert max(abs(change[lag] - change[0]) for lag in (1, 2)) < 20, change


@pytest.mark.parametrize("block", BLOCKS)
def test_manifest_parses_and_its_hashes_verify(block, exported):
    model_dir, raw = exported(block)
    manifest = load_manifest(model_dir, verify=True)
    assert manifest.spec.block_frames == block and manifest.embedding_dim == 16
    assert manifest.algorithmic_latency_ms == pytest.approx(10.0 * block)
    assert manifest.emotions == ("Neutral", "Angry", "Happy", "Sad", "Surprise")
    assert set(manifest.graphs) == {"step", "emotion_encoder", "vocoder"}
    for g in manifest.graphs.values():
        assert sha256_file(model_dir / g.file) == g.sha256
    assert raw["opset"] == 17 and set(raw["versions"]) == {"torch", "onnx", "onnxruntime"}
    assert raw["training"]["stage2_run_id"] == "tiny-stage2-0"
    assert raw["training"]["vocoder_run_id"] == "tiny-vocoder-1"
    assert set(raw["parameters"]) == {"content_encoder", "emotion_encoder", "recognition", "generator", "vocoder"}
    assert all(v > 0 for v in raw["parameters"].values())


def test_manifest_records_the_training_speakers(exported):
    """Both checkpoints record ["0011", "0012"] (support.tiny_checkpoints): export copies their union."""
    model_dir, raw = exported(2)
    assert raw["training"]["speakers"] == list(SPEAKERS)
    assert load_manifest(model_dir).training_speakers == list(SPEAKERS)


def test_checkpoints_without_speakers_export_none_never_a_guess(checkpoints, tmp_path):
    """A vocoder checkpoint from before speakers were recorded: the Stage II one's list alone
    would be a guess, so the manifest records none and Manifest.training_speakers is None."""
    vocoder = write_checkpoint(tmp_path / "vocoder.pt", "vocoder", seed=1, speakers=None)
    assert load_networks(checkpoints["stage2"], vocoder).speakers is None
    out = tmp_path / "model"
    export_model(checkpoints["stage2"], vocoder, out, block_frames=4)
    raw = load_manifest(out).raw
    assert "speakers" not in raw["training"] and raw["training"]["vocoder_run_id"] == "tiny-vocoder-1"
    assert load_manifest(out).training_speakers is None


@pytest.mark.parametrize("block", BLOCKS)
def test_graph_names_and_fixed_shapes_match_the_manifest(block, exported):
    model_dir, _ = exported(block)
    manifest = load_manifest(model_dir)
    model = onnx.load(str(model_dir / "step.onnx"))
    state = [t.name for t in manifest.state]
    assert [i.name for i in model.graph.input] == [*STEP_INPUTS, PROSODY_INPUT, *state]
    assert [o.name for o in model.graph.output] == [STEP_OUTPUT, FRAMES_OUTPUT, *(n + NEXT_SUFFIX for n in state)]
    assert len(set(state)) == len(state) and all(n.split("_")[0] in ("ec", "gen", "pm", "voc") for n in state)
    declared = {t.name: t.shape for t in (*manifest.step.inputs, *manifest.step.outputs)}
    assert declared["mel"] == (1, N_MELS, block) and declared["emotion"] == (1, 16)
    assert declared[PROSODY_INPUT] == (1, MOVE_SIZE)
    assert declared["pitch"] == (1, 4, block) and declared[FRAMES_OUTPUT] == (1, N_MELS + 2, block)
    assert declared["audio"] == (1, block * HOP)
    for t in manifest.state:
        assert declared[t.name] == declared[t.name + NEXT_SUFFIX] == t.shape
        assert all(isinstance(d, int) for d in t.shape) and t.shape[0] == 1


@pytest.mark.parametrize("block", [1, 4])
def test_vocoder_graph_declares_its_own_state(block, exported):
    """vocoder.onnx: (mel, pitch (1, 2, N), voc_* state) -> (audio, voc_*_next); its state is
    declared on the graph (GraphInfo.state), the step's stays in Manifest.state."""
    model_dir, _ = exported(block)
    info = load_manifest(model_dir).graphs["vocoder"]
    model = onnx.load(str(model_dir / info.file))
    state = [t.name for t in info.state]
    assert state and all(n.startswith("voc_") for n in state)
    assert [i.name for i in model.graph.input] == [*VOCODER_INPUTS, *state]
    assert [o.name for o in model.graph.output] == [STEP_OUTPUT, *(n + NEXT_SUFFIX for n in state)]
    declared = {t.name: t.shape for t in (*info.inputs, *info.outputs)}
    assert declared["mel"] == (1, N_MELS, block) and declared["pitch"] == (1, 2, block)
    assert declared["audio"] == (1, block * HOP)
    assert all(declared[t.name] == declared[t.name + NEXT_SUFFIX] == t.shape for t in info.state)


def test_graphs_pass_the_checker_and_hold_no_training_ops(exported):
    model_dir, _ = exported(2)
    for file in ("step.onnx", "emotion_encoder.onnx", "vocoder.onnx"):
        model = onnx.load(str(model_dir / file))
        onnx.checker.check_model(model, full_check=True)
        assert training_ops(model) == []
        assert not {n.op_type for n in model.graph.node} & {"Dropout", "BatchNormalization"}
    encoder = load_manifest(model_dir).graphs["emotion_encoder"]
    assert [t.shape for t in encoder.inputs] == [(1, N_MELS, "T"), (1, 2, "T"), (1, N_MELS + 1)]
    assert [t.shape for t in encoder.outputs] == [(1, 16), (1, 5), (1,), (1, "T")]


def test_training_ops_finds_dropout():
    node = onnx.helper.make_node("Dropout", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    assert training_ops(onnx.helper.make_model(graph)) == ["Dropout"]
