"""One model directory, several block sizes: `evc export --block-frames 2,1` and the engine's choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.models import model_config
from engine.cli import main
from engine.config import EngineConfig, RuntimeConfig
from engine.errors import ModelError
from engine.manifest import load_manifest
from engine.pipeline import StreamingConverter
from export.model_dir import export_model
from export.verify import SPECTRAL_TOLERANCE_DB, log_spectral_distance_db
from support.audio import speech_like


@pytest.fixture(scope="module")
def two_blocks(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("model_b21") / "model"
    manifest = export_model(checkpoints["stage2"], checkpoints["vocoder"], out, block_frames=(2, 1))
    return out, manifest


def test_each_extra_block_size_gets_a_verified_graph_in_the_manifest(two_blocks):
    out, written = two_blocks
    graph = written["graphs"]["step@1"]
    assert graph["file"] == "step_b1.onnx" and graph["block_frames"] == 1
    assert [t["shape"] for t in graph["inputs"][:2]] == [[1, 80, 1], [1, 4, 1]]
    assert max(written["parity"]["step@1"]["frames"]["onnx_vs_torch_stream"].values()) < 1e-4
    manifest = load_manifest(out)  # hashes of every graph, the extra one included, verify
    assert manifest.block_sizes == (2, 1)
    assert json.loads((out / "manifest.json").read_text())["signal"]["block_frames"] == 2


def test_for_block_swaps_the_step_graph_and_the_latency(two_blocks):
    manifest = load_manifest(two_blocks[0])
    one = manifest.for_block(1)
    assert one.step.file == "step_b1.onnx" and one.spec.block_frames == 1
    assert one.algorithmic_latency_ms == pytest.approx(manifest.algorithmic_latency_ms - 10.0)
    assert manifest.for_block(2) is manifest
    with pytest.raises(ModelError, match=r"signal.block_frames = 3 .* block_frames 2, 1 only"):
        manifest.for_block(3)


def _convert(model_dir, block: int, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(audio (N,), generator frames (n_mels + 2, N / hop)) of the engine converting `audio`."""
    cfg = model_config(EngineConfig(runtime=RuntimeConfig(providers=("cpu",))), model_dir, block_frames=block)
    conv = StreamingConverter(cfg, quiet=True)
    conv.set_embedding(np.linspace(-1, 1, conv.manifest.embedding_dim).astype(np.float32))
    n, out, frames = conv.block_samples, [], []
    for i in range(0, audio.size - n + 1, n):
        out.append(conv.process(audio[i:i + n]).copy())
        frames.append(conv.runner.outputs["frames"][0].copy())
    return np.concatenate(out), np.concatenate(frames, axis=1)


def test_the_engine_converts_alike_at_both_block_sizes(two_blocks):
    """Same weights, same causal stream: 10 ms blocks give the 20 ms blocks' frames, and audio that
    sounds the same (sample by sample it drifts: the excitation's phase integrates F0, see export.verify)."""
    audio = speech_like(2.0, seed=4)[: 16000 * 2 // 320 * 320]
    (a, fa), (b, fb) = _convert(two_blocks[0], 1, audio), _convert(two_blocks[0], 2, audio)
    assert a.shape == b.shape and np.abs(a).max() > 1e-3
    np.testing.assert_allclose(fa, fb, atol=1e-4)
    assert log_spectral_distance_db(a, b) < SPECTRAL_TOLERANCE_DB


def test_a_block_size_the_model_lacks_is_one_line(two_blocks, tmp_path, capsys):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"signal:\n  block_frames: 4\nmodel:\n  dir: {two_blocks[0]}\n")
    wav = tmp_path / "in.wav"
    import soundfile as sf

    sf.write(wav, speech_like(1.0, seed=1), 16000)
    assert main(["--config", str(cfg), "convert", str(wav), "--emotion", "x", "-o", str(tmp_path / "o.wav")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "block_frames = 4" in err[0] and "2, 1 only" in err[0]


@pytest.mark.parametrize("text", ["0", "2,x", ""])
def test_the_block_list_option_rejects_nonsense(text, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--stage2", "a", "--vocoder", "b", "--out", "c", "--block-frames", text])
    assert e.value.code == 2
    assert "--block-frames" in capsys.readouterr().err
