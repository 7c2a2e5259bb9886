"""`evc bench latency` on the toy model (every block size) and on a tiny exported model."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmarks import latency
from engine.cli import main
from engine.signal import SignalSpec
from support.toy_model import write_toy_model


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    """Toy model directories exported for 1- and 2-frame blocks."""
    root = tmp_path_factory.mktemp("toys")
    return {b: write_toy_model(root / f"b{b}", SignalSpec(block_frames=b)) for b in (1, 2)}


def _check_setting(s: dict, n: int) -> None:
    c = s["compute"]
    assert c["blocks"] == n and 0 <= c["deadline_misses"] <= n
    assert 0 < c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"] <= c["max_ms"]
    assert c["rtf"] == pytest.approx(c["mean_ms"] / s["block_ms"]) and c["rtf"] > 0
    assert s["block_ms"] == 10.0 * s["block_frames"]
    assert s["algorithmic_latency_ms"] >= s["block_ms"]
    shares = s["stages"]
    assert shares["frontend"]["p50_ms"] > 0 and shares["step"]["p50_ms"] > 0 and shares["rest"]["p50_ms"] >= 0
    for k in ("frontend", "step"):
        assert 0 < shares[k]["p50_ms"] <= shares[k]["p99_ms"] and shares[k]["mean_ms"] > 0
    total = sum(shares[k]["share"] for k in ("frontend", "step", "rest"))
    assert total == pytest.approx(1.0) or (shares["rest"]["p50_ms"] == 0 and total > 1.0)


def test_every_setting_of_the_toy_model(toys):
    report, raw = latency.run(list(toys.values()), threads=[1, 2], blocks=[1, 2, 4], provider="cpu", n=2000,
                              warmup=50)
    got = [(s["block_frames"], s["threads"]) for s in report["settings"]]
    assert got == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert len(report["skipped"]) == 1 and "block_frames=4" in report["skipped"][0]
    assert "--block-frames 4" in report["skipped"][0]
    for i, s in enumerate(report["settings"]):
        _check_setting(s, 2000)
        assert raw[i].shape == (2000,) and s["device"] == "cpu"
    assert report["machine"]["cpu"] and report["machine"]["logical_cpus"] >= 1


def test_cli_writes_json_png_and_a_table(toys, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "latency", "--model", str(toys[2]), "--threads", "1", "--n", "300", "--warmup", "20",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "--n 300 < 2000" in printed and "machine: " in printed and "p99" in printed
    report = json.loads((out / "latency.json").read_text())
    assert [s["block_frames"] for s in report["settings"]] == [2]
    _check_setting(report["settings"][0], 300)
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_model_it_asks_for_one(tmp_path, capsys):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"dir": str(tmp_path / "none")}}))
    assert main(["--config", str(cfg), "bench", "latency", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err


def test_only_unserved_block_sizes_is_an_error(toys, tmp_path, capsys):
    assert main(["bench", "latency", "--model", str(toys[1]), "--blocks", "4", "--out", str(tmp_path)]) == 1
    assert "nothing to measure" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_exported_model(tmp_path):
    """A real exported step graph (tiny random-weight checkpoints): same invariants, and the step
    graph, not the frontend, dominates the block."""
    pytest.importorskip("torch")
    from export.model_dir import export_model
    from support.tiny_checkpoints import write_checkpoint

    stage2 = write_checkpoint(tmp_path / "stage2.pt", "stage2", seed=0)
    vocoder = write_checkpoint(tmp_path / "vocoder.pt", "vocoder", seed=1)
    model = tmp_path / "tiny"
    export_model(stage2, vocoder, model, block_frames=2)
    report, _ = latency.run([model], threads=[1], blocks=None, provider="cpu", n=2000, warmup=100)
    (s,) = report["settings"]
    _check_setting(s, 2000)
    assert s["stages"]["step"]["mean_ms"] > s["stages"]["frontend"]["mean_ms"]
