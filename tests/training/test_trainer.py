"""The two-stage trainer and the vocoder trainer learn, resume exactly and scale out.

Trained on the tiny synthetic corpus (fixture `tiny_corpus`) with the tiny config.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ConfigError, ModelError
from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_checkpoint, load_weights
from training.config import config_from_dict, load_train_config
from training.data.batches import VALIDATION, MelCorpus, draw_batch
from training.loop import STAGE_NETWORKS, train
from training.metrics import conversion_accuracy, emotion_accuracy, strength_order
from training.stages import Stage2, VocoderGenerator

pytestmark = pytest.mark.slow


def _losses(run: Path, tag: str) -> list[float]:
    with open(run / "scalars.csv") as f:
        return [float(v) for _, t, v in csv.reader(f) if t == f"train/{tag}"]


def _models(ckpt_path, stage) -> dict:
    ckpt = load_checkpoint(ckpt_path, stage)
    cfg = ckpt["config"]
    models = build_models(cfg["models"], SignalSpec(), STAGE_NETWORKS[stage])
    load_weights(models, ckpt)
    return {n: m.eval() for n, m in models.items()}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two busy cores: OpenMP threads spinning against other processes slow training ~40x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cfg():
    return load_train_config("tiny")


@pytest.fixture(scope="module")
def runs(tiny_corpus, cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    s1 = train("stage1", cfg, tiny_corpus, root / "s1", progress=False)
    s2 = train("stage2", cfg, tiny_corpus, root / "s2", init=s1["checkpoint"], progress=False)
    return root, s1, s2


@pytest.fixture(scope="module")
def held_out(tiny_corpus):
    """The test split: 2 sentences × 5 emotions × 4 speakers never seen in training."""
    return MelCorpus(tiny_corpus, SignalSpec(), "test")


def test_stage1_loss_falls(runs):
    totals = _losses(runs[0] / "s1", "total_main")
    assert len(totals) >= 30
    assert np.mean(totals[-5:]) < 0.7 * np.mean(totals[:5]), totals


def test_stage1_recognition_beats_chance_on_held_out(runs, held_out):
    models = _models(runs[1]["checkpoint"], "stage1")
    acc = emotion_accuracy(models, held_out)
    order = strength_order(models, held_out)
    # 40 utterances: 13 or more correct has probability < 0.05 under chance (0.2).
    assert acc >= 13 / 40, f"emotion accuracy {acc:.2f} (chance 0.2)"
    assert order > 0.6, f"Rs ranks emotional above neutral in {order:.2f} of pairs"


@torch.no_grad()
def _conversion_losses(models, batch) -> float:
    """Stage II's weighted consistency losses (content, category, strength) on one batch."""
    weights = load_train_config("tiny").stages["stage2"].weights
    losses = Stage2(models)(batch)
    return sum(weights[k] * float(losses[k]) for k in ("cc", "ecc", "esc"))


def test_stage2_converts_toward_the_reference_emotion(runs, held_out, tiny_corpus):
    stage1, stage2 = _models(runs[1]["checkpoint"], "stage1"), _models(runs[2]["checkpoint"], "stage2")
    before, after = conversion_accuracy(stage1, held_out), conversion_accuracy(stage2, held_out)
    assert after > before, f"Rc on converted speech: {before:.2f} before Stage II, {after:.2f} after"
    seen = draw_batch(MelCorpus(tiny_corpus, SignalSpec(), "train"), 20, 96, seed=1, step=0, stream=VALIDATION)
    fit_before, fit_after = _conversion_losses(stage1, seen), _conversion_losses(stage2, seen)
    assert fit_after < 0.8 * fit_before, f"consistency losses on training data {fit_before:.3f} -> {fit_after:.3f}"
    unseen = draw_batch(held_out, 20, 96, seed=1, step=0, stream=VALIDATION)
    assert _conversion_losses(stage2, unseen) < _conversion_losses(stage1, unseen)


def test_stage2_requires_a_stage1_checkpoint(tiny_corpus, cfg, runs, tmp_path):
    with pytest.raises(ModelError, match="expected stage1"):
        train("stage2", cfg, tiny_corpus, tmp_path / "x", init=runs[2]["checkpoint"], progress=False)


def _short(cfg, stage, steps, every):
    stages = {**cfg.stages, stage: dataclasses.replace(cfg.stages[stage], steps=steps)}
    return dataclasses.replace(cfg, stages=stages, ckpt_every=every, log_every=1)


def test_resume_is_exact(tiny_corpus, cfg, tmp_path):
    straight = train("stage1", _short(cfg, "stage1", 6, 100), tiny_corpus, tmp_path / "a", progress=False)
    train("stage1", _short(cfg, "stage1", 3, 3), tiny_corpus, tmp_path / "b", progress=False)
    resumed = train("stage1", _short(cfg, "stage1", 6, 3), tiny_corpus, tmp_path / "b", progress=False)
    a = load_checkpoint(straight["checkpoint"])["models"]
    b = load_checkpoint(resumed["checkpoint"])["models"]
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    assert _losses(tmp_path / "a", "total_main") == _losses(tmp_path / "b", "total_main")


@torch.no_grad()
def _vocoder_mel_loss(models, batch) -> float:
    return float(VocoderGenerator(models, SignalSpec())(batch)["mel"])


def test_vocoder_stage_learns(tiny_corpus, held_out, cfg, tmp_path):
    """Mel L1 of the vocoder's audio on a fixed held-out batch, at initialisation and after training."""
    batch = draw_batch(held_out, 8, 24, seed=1, step=0, stream=VALIDATION)
    torch.manual_seed(cfg.seed)  # the trainer's initial weights: same seed, same construction order
    initial = build_models(cfg.models, SignalSpec(), STAGE_NETWORKS["vocoder"])
    result = train("vocoder", cfg, tiny_corpus, tmp_path, progress=False)
    trained = _models(result["checkpoint"], "vocoder")
    before, after = _vocoder_mel_loss(initial, batch), _vocoder_mel_loss(trained, batch)
    assert after < 0.8 * before, f"held-out mel L1 {before:.2f} -> {after:.2f}"
    assert set(load_checkpoint(result["checkpoint"], "vocoder")["models"]) == {"vocoder", "mpd", "msd"}


def test_truncated_checkpoint_is_one_line_error(runs, tmp_path):
    data = Path(runs[1]["checkpoint"]).read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable checkpoint") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)


def test_data_parallel_on_two_gloo_processes(tiny_corpus, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "engine.cli", "train", "stage1", "--config", "tiny", "--data", str(tiny_corpus),
           "--out", str(tmp_path), "--steps", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2
    assert result["max_rank_weight_diff"] == 0.0
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["last.pt", "stage1.pt"]


def test_vocoder_warm_up_trains_the_generator_alone_until_adv_start(tiny_corpus, cfg, tmp_path):
    """Before adv_start the discriminators neither train nor cost anything; after it they join."""
    def run(steps: int) -> dict:
        stage = dataclasses.replace(cfg.stages["vocoder"], steps=steps, adv_start=6)
        short = dataclasses.replace(cfg, stages={"vocoder": stage}, log_every=1, val_every=100)
        return load_checkpoint(train("vocoder", short, tiny_corpus, tmp_path, progress=False)["checkpoint"])

    torch.manual_seed(cfg.seed)  # the trainer's initial weights: same seed, same construction order
    initial = {n: m.state_dict() for n, m in build_models(cfg.models, SignalSpec(), ("vocoder", "mpd", "msd")).items()}
    at5, at10 = run(5)["models"], run(10)["models"]  # the second run resumes the first
    adv = _losses(tmp_path, "adv")
    assert adv[:6] == [0.0] * 6 and all(a > 0 for a in adv[6:]), adv
    assert len(_losses(tmp_path, "d_mpd")) == 4
    assert not all(torch.equal(v, initial["vocoder"][k]) for k, v in at5["vocoder"].items())
    for disc in ("mpd", "msd"):
        assert all(torch.equal(v, initial[disc][k]) for k, v in at5[disc].items()), f"{disc} trained in the warm-up"
        assert not all(torch.equal(v, initial[disc][k]) for k, v in at10[disc].items()), f"{disc} never trained"


def test_negative_adv_start_is_a_config_error(cfg):
    data = cfg.to_dict()
    data["stages"]["vocoder"]["adv_start"] = -1
    with pytest.raises(ConfigError, match=r"stages\.vocoder\.adv_start"):
        config_from_dict(data)
