"""Bad input gives one line and no output; an existing model directory survives every failure."""

from __future__ import annotations

from pathlib import Path

import pytest

import export.verify
from engine.cli import main
from engine.errors import ModelError
from engine.manifest import load_manifest
from engine.signal import SignalSpec
from export.model_dir import export_model
from support.tiny_checkpoints import write_checkpoint


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _siblings(out: Path) -> list[str]:
    """Everything beside out apart from out itself and the checkpoints: leftovers of an export."""
    return sorted(p.name for p in out.parent.iterdir() if p != out and p.suffix != ".pt")


@pytest.fixture
def truncated(checkpoints, tmp_path) -> Path:
    data = checkpoints["stage2"].read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def other_contract(tmp_path) -> Path:
    signal = SignalSpec(f_max=7600.0).to_dict()
    return write_checkpoint(tmp_path / "vocoder_7600.pt", "vocoder", seed=1, signal=signal)


CASES = {
    "missing": (lambda c, t, o: (c["stage2"].with_name("nope.pt"), c["vocoder"]), "checkpoint not found"),
    "truncated": (lambda c, t, o: (t, c["vocoder"]), "not a readable checkpoint"),
    "stage1_as_stage2": (lambda c, t, o: (c["stage1"], c["vocoder"]), "a 'stage1' checkpoint, expected stage2"),
    "swapped": (lambda c, t, o: (c["vocoder"], c["stage2"]), "a 'vocoder' checkpoint, expected stage2"),
    "signal_mismatch": (lambda c, t, o: (c["stage2"], o), "different signal contracts (f_max 8000.0 vs 7600.0)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_model_error_and_leaves_nothing(case, checkpoints, truncated, other_contract,
                                                              tmp_path):
    pick, message = CASES[case]
    stage2, vocoder = pick(checkpoints, truncated, other_contract)
    out = tmp_path / "model"
    with pytest.raises(ModelError) as info:
        export_model(stage2, vocoder, out)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() and _siblings(out) == []


def test_cli_reports_bad_input_on_one_line(checkpoints, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["export", "--stage2", str(checkpoints["vocoder"]), "--vocoder", str(checkpoints["stage2"]),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("evc: error: ") and "expected stage2" in err
    assert not out.exists()


def test_cli_exports_and_prints_max_errors(checkpoints, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["export", "--stage2", str(checkpoints["stage2"]), "--vocoder", str(checkpoints["vocoder"]),
                 "--out", str(out), "--block-frames", "2", "--opset", "17"])
    printed = capsys.readouterr().out
    assert code == 0 and "max abs error, step frames: onnx vs torch stream" in printed
    assert "log-spectral distance to the offline render" in printed
    assert "max abs error, vocoder audio: onnx vs torch stream" in printed
    assert "max abs error, emotion encoder: embedding" in printed and f"wrote {out}" in printed
    assert load_manifest(out).spec.block_frames == 2 and _siblings(out) == []


@pytest.fixture
def existing(exported, tmp_path) -> Path:
    """A copy of a successful export (block 4) at tmp_path/model."""
    src, _ = exported(4)
    out = tmp_path / "model"
    out.mkdir()
    for name, data in _snapshot(src).items():
        (out / name).write_bytes(data)
    return out


def test_failed_verification_keeps_the_existing_directory(existing, checkpoints, monkeypatch, capsys):
    before = _snapshot(existing)
    monkeypatch.setattr(export.verify, "TOLERANCE", 0.0)
    code = main(["export", "--stage2", str(checkpoints["stage2"]), "--vocoder", str(checkpoints["vocoder"]),
                 "--out", str(existing), "--block-frames", "1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines[-1].startswith("evc: error: export failed verification:")
    assert "exceeds 0" in lines[-1]
    assert _snapshot(existing) == before and _siblings(existing) == []


def test_bad_checkpoint_keeps_the_existing_directory(existing, checkpoints):
    before = _snapshot(existing)
    with pytest.raises(ModelError):
        export_model(checkpoints["stage1"], checkpoints["vocoder"], existing)
    assert _snapshot(existing) == before and _siblings(existing) == []


def test_success_replaces_the_existing_directory(existing, checkpoints):
    export_model(checkpoints["stage2"], checkpoints["vocoder"], existing, block_frames=1)
    assert load_manifest(existing).spec.block_frames == 1 and _siblings(existing) == []


def test_refuses_to_replace_a_directory_that_is_not_a_model(checkpoints, tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="without manifest.json"):
        export_model(checkpoints["stage2"], checkpoints["vocoder"], out)
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("opset", [9, 99])
def test_unsupported_opset_is_refused_before_any_work(opset, checkpoints, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(ModelError, match=f"opset {opset}: these graphs export at opsets 12 to"):
        export_model(checkpoints["stage2"], checkpoints["vocoder"], out, opset=opset)
    assert not out.exists() and _siblings(out) == []


@pytest.mark.parametrize("argv", [["--block-frames", "0"], ["--variants", "int4"], ["--opset", "x"]])
def test_cli_rejects_bad_options(argv, checkpoints, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["export", "--stage2", str(checkpoints["stage2"]), "--vocoder", str(checkpoints["vocoder"]),
              "--out", str(tmp_path / "m"), *argv])
    assert info.value.code == 2 and not (tmp_path / "m").exists()

