"""`evc bench quality` on a tiny fabricated corpus: trials, evaluators, metrics, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pyworld")
pytest.importorskip("sklearn")

from benchmarks import quality  # noqa: E402
from engine.cli import main  # noqa: E402
from support.fabricated import write_corpus  # noqa: E402
from support.toy_engine import toy_config  # noqa: E402
from training.data.esd import scan  # noqa: E402

pytestmark = pytest.mark.slow
PERFECT = "perfect (the target itself)"


@pytest.fixture(scope="module", autouse=True)
def _features_once():
    """Each file's statistics computed once per module (single-process calls only, so that the
    pool test still runs the pool): three evaluator trainings, one extraction."""
    original, cache = quality.features_of, {}

    def memo(paths, jobs):
        if jobs and jobs > 1:
            return original(paths, jobs)
        missing = [p for p in paths if p not in cache]
        if missing:
            cache.update(zip(missing, original(missing, 1)))
        return np.stack([cache[p] for p in paths])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quality, "features_of", memo)
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("fabricated") / "corpus")


@pytest.fixture(scope="module")
def scored(corpus, tmp_path_factory):
    """Baselines, a perfect stand-in converter and the toy model through the engine, on 8 trials."""
    systems = {**quality.BASELINES, PERFECT: lambda source, reference, target: target,
               "toy model": quality.engine_system(toy_config(tmp_path_factory.mktemp("toy")))}
    lines = []
    report, kept = quality.run(corpus, "test", systems, limit=1, jobs=1, keep=2, echo=lines.append)
    return report, kept, lines


def test_trials_pair_a_neutral_source_with_another_sentence_and_its_parallel_target(corpus):
    trials = quality.make_trials(scan(corpus), "test")
    assert len(trials) == 2 * 2 * 4  # speakers x test sentences x target emotions
    for t in trials:
        assert t.source.emotion == "Neutral" and t.target.emotion == t.reference.emotion == t.emotion
        assert t.source.speaker == t.reference.speaker == t.target.speaker
        assert t.target.position == t.source.position != t.reference.position
        assert t.source.split == t.target.split == t.reference.split == "test"
    assert len(quality.make_trials(scan(corpus), "test", limit=1)) == 2 * 4


def test_features_in_processes_equal_features_in_one(corpus):
    paths = [u.path for u in scan(corpus, speakers=["0011"], emotions=["Sad"])][:8]
    np.testing.assert_array_equal(quality.features_of(paths, 2), np.stack([quality.features_of([p], 1)[0]
                                                                            for p in paths]))


def test_evaluators_are_accurate_on_the_fabricated_corpus_and_said_first(scored):
    report, _, lines = scored
    ev = report["evaluators"]
    assert ev["emotion_accuracy"] >= quality.MIN_EVALUATOR_ACCURACY
    assert lines[0].startswith("evaluator check on natural test utterances (20)")
    assert set(ev["strength_rmse_by_emotion"]) == {"Angry", "Happy", "Sad", "Surprise"}
    assert all(0 <= v < 0.35 for v in ev["strength_rmse_by_emotion"].values())
    assert not any("NOT MEANINGFUL" in line for line in lines)


def test_a_perfect_conversion_scores_zero_distance_and_full_accuracy(scored):
    perfect = scored[0]["results"][PERFECT]["all"]
    assert perfect["n"] == 8 and perfect["mcd_db"] == 0.0 and perfect["f0_rmse_cents"] == 0.0
    assert perfect["emotion_accuracy"] == 1.0


def test_numbers_are_in_range_for_every_system(scored):
    results = scored[0]["results"]
    assert set(results) == {"zero effort", "DSP prosody transplant", PERFECT, "toy model"}
    for by_group in results.values():
        assert sum(by_group[e]["n"] for e in quality.TARGET_EMOTIONS) == by_group["all"]["n"] == 8
        for s in by_group.values():
            assert s["mcd_db"] >= 0 and 0 <= s["emotion_accuracy"] <= 1 and 0 <= s["strength_rmse"] <= 1
            assert -1 - 1e-6 <= s["speaker_cos"] <= 1 + 1e-6
            assert np.isnan(s["f0_rmse_cents"]) or s["f0_rmse_cents"] >= 0
    zero = results["zero effort"]["all"]
    assert zero["speaker_cos"] == pytest.approx(1.0, abs=1e-5) and zero["mcd_db"] > 1.0


def test_the_dsp_baseline_moves_prosody_towards_the_target(scored):
    results = scored[0]["results"]
    dsp, zero = results["DSP prosody transplant"]["all"], results["zero effort"]["all"]
    assert dsp["f0_rmse_cents"] < zero["f0_rmse_cents"]
    assert dsp["emotion_accuracy"] > zero["emotion_accuracy"]
    assert dsp["strength_rmse"] < zero["strength_rmse"]


def test_markdown_has_a_row_per_system_and_emotion(scored):
    table = quality.markdown(scored[0]["results"])
    assert table.count("\n") == 1 + 5 * 4
    assert "| all | toy model | 8 |" in table


def test_cli_on_the_toy_model_writes_markdown_json_png(corpus, tmp_path, capsys):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("runtime: {providers: [cpu]}\n")
    model = toy_config(tmp_path).model_dir
    out = tmp_path / "out"
    assert main(["--config", str(cfg), "bench", "quality", "--data", str(corpus), "--model", str(model),
                 "--limit", "1", "--jobs", "1", "--examples", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("evaluator check")
    report = json.loads((out / "quality.json").read_text())
    assert set(report["results"]) == {"zero effort", "DSP prosody transplant", "model (toy)"}
    assert len(report["rows"]) == 3 * 8 and report["machine"]["cpu"]
    md = (out / "quality.md").read_text()
    assert md.startswith("evaluator check") and "| all | model (toy) | 8 |" in md
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_a_model_scores_the_baselines_and_says_so(corpus, tmp_path, capsys):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"model: {{dir: {tmp_path / 'none'}}}\n")
    assert main(["--config", str(cfg), "bench", "quality", "--data", str(corpus), "--limit", "1", "--jobs", "1",
                 "--examples", "0", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "scoring the baselines only" in out.splitlines()[0]
    assert set(json.loads((tmp_path / "out" / "quality.json").read_text())["results"]) == {
        "zero effort", "DSP prosody transplant"}
    assert not (tmp_path / "out" / "quality.png").exists()
