"""Optional int8/fp16 step graphs: recorded with speed-up and error; fp32 stays the default."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

import export.variants
from engine.cli import main
from engine.manifest import PROSODY_INPUT, STEP_INPUTS, load_manifest, sha256_file
from export.verify import cpu_session


@pytest.fixture(scope="module")
def with_variants(checkpoints, tmp_path_factory):
    """`evc export ... --variants int8,fp16` at block 2: (model_dir, manifest raw, stdout)."""
    out = tmp_path_factory.mktemp("variants") / "model"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", "--stage2", str(checkpoints["stage2"]), "--vocoder", str(checkpoints["vocoder"]),
                     "--out", str(out), "--variants", "int8,fp16"])
    assert code == 0
    return out, load_manifest(out).raw, stdout.getvalue()


def test_int8_is_recorded_with_speedup_and_error(with_variants):
    model_dir, raw, printed = with_variants
    v = raw["variants"]["int8"]
    assert v["file"] == "step.int8.onnx" and sha256_file(model_dir / v["file"]) == v["sha256"]
    assert v["speedup"] > 0 and v["timed_blocks"] == 300
    # The error is the generator's frames' (peak ~4.6 here), not the audio's, whose pulses any
    # log-F0 change shifts. Quantisation changes the numbers, but boundedly: measured 0.055.
    assert 0.0 < v["max_abs_err"] < 0.25 and math.isfinite(v["max_abs_err"])
    assert ("note" in v) == (v["median_block_ms"] >= v["fp32_median_block_ms"])
    assert "variant int8: speedup x" in printed
    assert raw["graphs"]["step"]["file"] == "step.onnx"


def test_fp16_is_recorded_when_a_converter_is_installed(with_variants):
    model_dir, raw, printed = with_variants
    if export.variants.available("fp16"):
        assert raw["variants_skipped"] == [export.variants.available("fp16")] and "fp16 skipped" in printed
        return
    v = raw["variants"]["fp16"]
    assert sha256_file(model_dir / v["file"]) == v["sha256"] and 0.0 < v["max_abs_err"] < 0.1  # measured 0.015


def test_variant_graphs_keep_float32_io_and_the_state_contract(with_variants):
    model_dir, raw, _ = with_variants
    for v in raw["variants"].values():
        session = cpu_session(model_dir / v["file"])
        inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
        assert list(inputs) == [*STEP_INPUTS, PROSODY_INPUT, *(s["name"] for s in raw["state"])]
        assert all(t == "tensor(float)" for t, _ in inputs.values())
        feeds = {n: np.zeros(shape, np.float32) for n, (_, shape) in inputs.items()}
        feeds["pitch"][:] = np.array([1.0, np.log(150.0), np.log(150.0), 0.1], np.float32)[None, :, None]
        audio, frames, *_ = session.run(None, feeds)
        assert audio.shape == (1, 320) and audio.dtype == np.float32
        assert frames.shape == (1, 82, 2) and np.isfinite(audio).all()


def test_fp16_is_skipped_with_a_message_without_a_converter(with_variants, monkeypatch, tmp_path):
    model_dir, raw, _ = with_variants
    monkeypatch.setattr(export.variants, "_fp16_converter", lambda: None)
    step = tmp_path / "step.onnx"
    step.write_bytes((model_dir / "step.onnx").read_bytes())
    frames = {"mel": np.zeros((1, 80, 4), np.float32), "pitch": np.zeros((1, 4, 4), np.float32)}
    entries, skipped = export.variants.build_variants(["fp16"], step, {}, frames,
                                                      {"emotion": np.zeros((1, 16), np.float32)}, 2)
    assert entries == {} and len(skipped) == 1 and skipped[0].startswith("fp16 skipped:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.onnx"]
