"""`evc bench quality` on a tiny fabricated corpus: evaluators, reference rows, seen/unseen speakers,
the strength sweep, cached rows, outputs. DNSMOS is stood in for by a cheap function of the audio
(tests/benchmarks/test_naturalness.py runs the real one)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import types

import numpy as np
import pytest

pytest.importorskip("pyworld")
pytest.importorskip("sklearn")

from benchmarks import naturalness, quality, quality_tables, systems  # noqa: E402
from benchmarks.cache import Cache  # noqa: E402
from benchmarks.scoring import SWEEP_STRENGTHS  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.errors import ModelError  # noqa: E402
from support.fabricated import write_corpus  # noqa: E402
from support.toy_engine import toy_config  # noqa: E402

pytestmark = pytest.mark.slow
PERFECT = "perfect (the target itself)"
TOY = "toy model"


class FakeDnsmos:
    name = "fake"

    def score(self, audio):
        level = float(np.clip(np.std(audio) * 10, 0, 1))
        return {"sig": 3.0 + level, "bak": 3.5, "ovrl": 2.5 + level, "p808": 3.2}


@pytest.fixture(scope="module", autouse=True)
def _stand_ins():
    """Cheap DNSMOS; copy synthesis that returns its input (its row then scores the target itself)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(naturalness, "Dnsmos", FakeDnsmos)
        mp.setitem(sys.modules, "engine.resynth", types.SimpleNamespace(copy_synthesis=lambda m, audio, pitch: audio))
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("fabricated") / "corpus")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One cache for the module: the evaluators are fitted once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def toy_cfg(tmp_path_factory):
    return toy_config(tmp_path_factory.mktemp("toy"))


def _systems(toy_cfg) -> dict:
    return {systems.ORACLE: systems.CORPUS_ONLY[systems.ORACLE],
            systems.COPY_SYNTHESIS: systems.CopySynthesis(toy_cfg.model_dir), **systems.BASELINES,
            PERFECT: lambda source, reference, target, neutral: target, TOY: systems.EngineSystem(toy_cfg)}


def _run(corpus, cache_dir, toy_cfg, **options):
    lines = []
    opts = quality.Options(**{"limit": 1, "jobs": 1, "keep": 2, "mos_limit": 1, "sweep": 1, "trained": ("0011",),
                              "cache": Cache(cache_dir), **options})
    report, kept = quality.run(corpus, _systems(toy_cfg), opts, echo=lines.append)
    return report, kept, lines


@pytest.fixture(scope="module")
def scored(corpus, cache_dir, toy_cfg):
    """References, baselines, a perfect stand-in and the toy model on 8 trials; 0011 'seen'."""
    return _run(corpus, cache_dir, toy_cfg)


def test_evaluators_own_accuracy_and_strength_rmse_are_said_first(scored):
    report, _, lines = scored
    ev = report["evaluators"]
    assert lines[0].startswith("evaluator check on natural test utterances (20): emotion accuracy")
    assert ev["emotion_accuracy"] >= quality_tables.MIN_EVALUATOR_ACCURACY
    assert lines[1].startswith("strength evaluators' RMSE") and "supervised" in lines[1] and "ranker" in lines[1]
    assert set(ev["strength_sup_rmse_by_emotion"]) == {"Angry", "Happy", "Sad", "Surprise", "all"}
    assert ev["strength_sup_rmse_by_emotion"]["all"] < 0.08
    assert 0 <= ev["strength_rank_rmse_by_emotion"]["all"] < 0.35
    assert not any("NOT MEANINGFUL" in line or "STRENGTH COLUMNS" in line for line in lines)


def test_rows_are_split_by_the_model_speakers(scored):
    results = scored[0]["results"]
    assert set(results) == {systems.ORACLE, systems.COPY_SYNTHESIS, *systems.BASELINES, PERFECT, TOY}
    for by_group in results.values():
        assert set(by_group) == {"seen", "unseen", "all"}
        assert by_group["seen"]["all"]["n"] == by_group["unseen"]["all"]["n"] == 4
        assert by_group["all"]["all"]["n"] == 8
    rows = scored[0]["rows"]
    assert {r["speakers"] for r in rows if r["speaker"] == "0011"} == {"seen"}
    assert {r["speakers"] for r in rows if r["speaker"] == "0012"} == {"unseen"}


def test_a_perfect_conversion_scores_zero_distance_full_accuracy_and_the_targets_strength(scored):
    perfect = scored[0]["results"][PERFECT]["all"]["all"]
    assert perfect["mcd_db"] == 0.0 and perfect["f0_rmse_cents"] == 0.0 and perfect["emotion_accuracy"] == 1.0
    copy = scored[0]["results"][systems.COPY_SYNTHESIS]["all"]["all"]  # the stand-in returns the target
    assert copy["mcd_db"] == 0.0 and copy["emotion_accuracy"] == 1.0
    # The perfect stand-in is scored as a conversion (against the reference's strength, another
    # draw); copy synthesis as a reference row, against the target's own: the evaluator's error.
    assert copy["strength_rmse_sup"] < 0.08 < perfect["strength_rmse_sup"]
    rows = [r for r in scored[0]["rows"] if r["system"] == systems.COPY_SYNTHESIS]
    assert {r["strength_of"] for r in rows} == {"target"}


def test_the_oracle_is_a_floor_close_to_the_target(scored):
    results = scored[0]["results"]
    oracle, zero = results[systems.ORACLE]["all"]["all"], results["zero effort"]["all"]["all"]
    assert 0.0 < oracle["mcd_db"] < zero["mcd_db"]
    assert oracle["emotion_accuracy"] >= 0.75 and oracle["f0_rmse_cents"] < zero["f0_rmse_cents"]
    assert oracle["strength_rmse_sup"] < 0.15


def test_numbers_are_in_range_for_every_system(scored):
    for by_group in scored[0]["results"].values():
        for by_emotion in by_group.values():
            assert sum(by_emotion[e]["n"] for e in quality_tables.TARGET_EMOTIONS) == by_emotion["all"]["n"]
            for s in by_emotion.values():
                assert s["mcd_db"] >= 0 and 0 <= s["emotion_accuracy"] <= 1
                assert 0 <= s["strength_rmse_sup"] <= 1 and 0 <= s["strength_rmse_rank"] <= 1
                assert -1 - 1e-6 <= s["speaker_cos"] <= 1 + 1e-6
                assert s["mos_n"] == s["n"] and 1.0 <= s["ovrl"] <= 5.0
    zero = scored[0]["results"]["zero effort"]["all"]["all"]
    assert zero["speaker_cos"] == pytest.approx(1.0, abs=1e-5) and zero["mcd_db"] > 1.0


def test_the_dsp_baseline_moves_prosody_and_strength_towards_the_reference(scored):
    results = scored[0]["results"]
    dsp, zero = results["DSP prosody transplant"]["all"]["all"], results["zero effort"]["all"]["all"]
    assert dsp["f0_rmse_cents"] < zero["f0_rmse_cents"]
    assert dsp["emotion_accuracy"] > zero["emotion_accuracy"]
    assert dsp["strength_rmse_sup"] < zero["strength_rmse_sup"]


def test_the_sweep_reads_the_model_at_every_setting(scored):
    report = scored[0]
    sweep_rows = report["sweep_rows"]
    assert {r["system"] for r in sweep_rows} == {TOY}
    assert len(sweep_rows) == 8 * len(SWEEP_STRENGTHS) and report["coverage"]["sweep_trials"] == 8
    s = report["sweep"][TOY]["all"]["all"]
    assert s["n"] == 8 and s["reader"] == "strength_sup"
    assert list(s["mean_reading"]) == [str(v) for v in SWEEP_STRENGTHS]
    assert all(0.0 <= v <= 1.0 for v in s["mean_reading"].values())
    assert np.isnan(s["spearman"]) or -1.0 <= s["spearman"] <= 1.0


def test_the_model_reads_the_reference_from_the_trials_neutral_voice(toy_cfg):
    """The toy encoder subtracts (anchor - centre)[:8] from its embedding, and its step graph adds the
    embedding's sum to every sample: the trial's neutral utterance, as the anchor, moves every output
    sample by minus the sum of its voice's first 8 offsets from the centre (without it, by nothing)."""
    from support.audio import speech_like

    model = systems.EngineSystem(toy_cfg)
    source, reference = speech_like(1.0, seed=1), speech_like(1.0, seed=2)
    _, encoder = model.load()
    neutral = speech_like(1.0, seed=3)
    voice = encoder.voice(encoder.analyse(neutral))
    plain, anchored = model(source, reference, None), model(source, reference, None, neutral)
    np.testing.assert_allclose(anchored - plain, -(voice - encoder.manifest.anchor_centre)[:8].sum(), atol=1e-3)
    assert abs(float(np.mean(anchored - plain))) > 1.0


def test_sweep_summary_finds_a_monotonic_knob_and_a_flat_one():
    def rows(reading):
        return [{"trial": t, "setting": s, "strength_sup": reading(s, t), "strength_rank": np.nan}
                for t in range(3) for s in SWEEP_STRENGTHS]

    rising = quality_tables.sweep_summary(rows(lambda s, t: 0.8 * s + 0.05 * t))
    assert rising["spearman_per_trial_mean"] == pytest.approx(1.0)
    assert rising["spearman"] > 0.9 and rising["mean_reading"]["0.5"] == pytest.approx(0.45)
    flat = quality_tables.sweep_summary(rows(lambda s, t: 0.3))
    assert np.isnan(flat["spearman"]) and flat["mean_reading"]["1.0"] == pytest.approx(0.3)
    assert flat["spearman_per_trial_mean"] == 0.0  # a knob that changes nothing heard
    falling = quality_tables.sweep_summary(rows(lambda s, t: 1 - s))
    assert falling["spearman"] == pytest.approx(-1.0) and falling["spearman_per_trial_mean"] == pytest.approx(-1.0)


def test_speaker_groups_split_by_voice_family_when_the_corpus_has_several():
    def row(speakers, family, emotion="Angry"):
        return {"system": "m", "speakers": speakers, "family": family, "emotion": emotion, "mcd_db": 1.0}

    rows = [row("seen", "espeak"), row("seen", "festival"), row("seen", "festival", "Sad"),
            row("unseen", "festival")]
    by_group = quality_tables._nested(rows, len)["m"]
    assert list(by_group) == ["seen", "seen espeak", "seen festival", "unseen", "unseen festival", "all"]
    assert {g: v["all"] for g, v in by_group.items()} == {"seen": 3, "seen espeak": 1, "seen festival": 2,
                                                          "unseen": 1, "unseen festival": 1, "all": 4}
    one_family = [{**r, "family": "espeak"} for r in rows]
    assert list(quality_tables._nested(one_family, len)["m"]) == ["seen", "unseen", "all"]


def test_a_rerun_takes_the_corpus_only_rows_from_the_cache(corpus, cache_dir, toy_cfg, scored):
    again, _, _ = _run(corpus, cache_dir, toy_cfg)
    corpus_only = len(systems.CORPUS_ONLY)
    assert again["coverage"]["rows_from_cache"] == (8 - 2) * corpus_only  # the 2 kept trials are rerun
    for name in systems.CORPUS_ONLY:
        first, second = scored[0]["results"][name]["all"]["all"], again["results"][name]["all"]["all"]
        assert second["mcd_db"] == pytest.approx(first["mcd_db"]) and second["ovrl"] == pytest.approx(first["ovrl"])


def test_markdown_tables_have_a_row_per_group_emotion_and_system(scored):
    results = scored[0]["results"]
    table = quality_tables.quality_table(results, (quality_tables.ALL,))
    assert table.count("\n") == 1 + 3 * 6
    assert "| unseen | all | toy model | 4 |" in table
    per_emotion = quality_tables.quality_table(results, quality_tables.TARGET_EMOTIONS)
    assert per_emotion.count("\n") == 1 + 3 * 4 * 6
    sweep = quality_tables.sweep_table(scored[0]["sweep"])
    assert "reading @ 0.25" in sweep and sweep.count("\n") == 1 + 3 * 5


def test_a_corpus_without_metadata_gets_the_label_free_reader_with_a_notice(corpus, cache_dir, toy_cfg, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(corpus, bare)
    (bare / "metadata.csv").unlink()
    report, _, lines = _run(bare, cache_dir, toy_cfg, keep=0, mos_limit=0, sweep=0)
    notices = [line for line in lines if "metadata.csv" in line]
    assert len(notices) == 1 and notices[0].startswith("note:") and "label-free" in notices[0]
    assert "strength_sup_rmse_by_emotion" not in report["evaluators"]
    zero = report["results"]["zero effort"]["unseen"]["all"]
    assert np.isnan(zero["strength_rmse_sup"]) and 0 <= zero["strength_rmse_rank"] <= 1
    assert zero["mos_n"] == 0 and np.isnan(zero["ovrl"])


def test_copy_synthesis_is_skipped_with_a_note_for_a_model_without_a_vocoder(monkeypatch, toy_cfg):
    def refuse(model, audio, pitch):
        raise ModelError(f"{model} has no vocoder graph")

    monkeypatch.setitem(sys.modules, "engine.resynth", types.SimpleNamespace(copy_synthesis=refuse))
    built, notes = systems.build(toy_cfg, toy_cfg.model_dir)
    assert list(built) == [systems.ORACLE, *systems.BASELINES, f"model ({toy_cfg.model_dir.name})"]
    assert len(notes) == 1 and notes[0].startswith("no copy-synthesis row") and "no vocoder graph" in notes[0]
    monkeypatch.setitem(sys.modules, "engine.resynth", types.SimpleNamespace(copy_synthesis=lambda m, a, p: a))
    built, notes = systems.build(toy_cfg, toy_cfg.model_dir)
    assert systems.COPY_SYNTHESIS in built and notes == []


def test_a_model_imposing_the_prosody_move_is_noted_with_its_weights(tmp_path, monkeypatch):
    """The table says how much of each reference's measured move the model imposed (engine.yaml bank)."""
    monkeypatch.setitem(sys.modules, "engine.resynth", types.SimpleNamespace(copy_synthesis=lambda m, a, p: a))
    cfg = toy_config(tmp_path, prosody=True)
    cfg = dataclasses.replace(cfg, bank=dataclasses.replace(cfg.bank, pitch_move=0.5, level_move=1.0))
    _, notes = systems.build(cfg, cfg.model_dir)
    assert notes == ["the model imposes each reference's measured prosody move: bank.pitch_move 0.5, "
                     "bank.level_move 1 (engine.yaml)"]


def test_scoring_in_processes_equals_scoring_in_one(corpus, cache_dir):
    """Spawned workers (the real DNSMOS is built there, unused with mos_limit 0) give the same rows.
    The baselines under other names: rows of corpus-only systems would come from the cache."""
    renamed = {f"{name} (renamed)": system for name, system in systems.BASELINES.items()}
    opts = dict(limit=1, mos_limit=0, sweep=0, cache=Cache(cache_dir))
    one, _ = quality.run(corpus, renamed, quality.Options(jobs=1, **opts), echo=lambda _: None)
    two, _ = quality.run(corpus, renamed, quality.Options(jobs=2, **opts), echo=lambda _: None)
    assert two["coverage"]["rows_from_cache"] == 0 and len(two["rows"]) == 2 * 8
    for a, b in zip(one["rows"], two["rows"]):
        assert a["system"] == b["system"] and a["source"] == b["source"]
        # Workers run BLAS with other thread counts: sums differ in the last bits, far below the
        # readings' resolution (strength lives in [0, 1]).
        assert a["mcd_db"] == pytest.approx(b["mcd_db"], abs=1e-6)
        assert a["strength_sup"] == pytest.approx(b["strength_sup"], abs=1e-6)


def test_cli_on_the_toy_model_writes_markdown_json_and_plots(corpus, cache_dir, tmp_path, capsys):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("runtime: {providers: [cpu]}\n")
    model = toy_config(tmp_path).model_dir
    out = tmp_path / "out"
    assert main(["--config", str(cfg), "bench", "quality", "--data", str(corpus), "--model", str(model),
                 "--limit", "1", "--jobs", "1", "--examples", "2", "--mos-limit", "0", "--sweep", "1",
                 "--cache", str(cache_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("evaluator check")
    report = json.loads((out / "quality.json").read_text())
    model_row = f"model ({model.name})"
    assert set(report["results"]) == {systems.ORACLE, systems.COPY_SYNTHESIS, *systems.BASELINES, model_row}
    assert set(report["results"][model_row]) == {"unknown"}  # the toy manifest lists no training speakers
    assert len(report["rows"]) == 5 * 8 and report["machine"]["cpu"]
    md = (out / "quality.md").read_text()
    assert md.startswith("evaluator check") and f"| unknown | all | {model_row} | 8 |" in md
    assert "Strength sweep" in md
    for png in ("quality.png", "quality_bars.png", "strength_sweep.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_a_model_scores_references_and_baselines_and_says_so(corpus, cache_dir, tmp_path, capsys):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"model: {{dir: {tmp_path / 'none'}}}\n")
    assert main(["--config", str(cfg), "bench", "quality", "--data", str(corpus), "--limit", "1", "--jobs", "1",
                 "--examples", "0", "--mos-limit", "0", "--cache", str(cache_dir), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "scoring the references and baselines only" in out.splitlines()[0]
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert set(report["results"]) == set(systems.CORPUS_ONLY) and report["sweep"] == {}
    assert not (tmp_path / "out" / "quality.png").exists()


def test_degraded_sources_reach_the_systems_and_the_clean_source_stays_the_yardstick(corpus, cache_dir, toy_cfg):
    clean = {r["source"]: r for r in _run(corpus, cache_dir, toy_cfg, keep=0, sweep=0, mos_limit=0)[0]["rows"]
             if r["system"] == "zero effort"}
    report, _, _ = _run(corpus, cache_dir, toy_cfg, keep=0, sweep=0, mos_limit=0, degrade=True)
    assert "snr_db=(20.0, 20.0)" in report["degraded_sources"]
    noisy = [r for r in report["rows"] if r["system"] == "zero effort"]
    assert noisy and all(r["speaker_cos"] < 0.999 for r in noisy)  # the degraded source against the clean one
    assert all(clean[r["source"]]["speaker_cos"] > 0.999 for r in noisy)
    # per sentence a lucky capsule EQ can bring one closer: noise and rooms cost on average
    assert np.mean([r["mcd_db"] for r in noisy]) > np.mean([clean[r["source"]]["mcd_db"] for r in noisy]) + 0.5
    perfect = [r for r in report["rows"] if r["system"] == PERFECT]
    assert all(r["mcd_db"] == 0.0 for r in perfect)  # targets stay clean


def test_a_degraded_sentence_is_the_same_in_every_run():
    from benchmarks.scoring import degraded

    x = np.sin(2 * np.pi * 150 * np.arange(16000) / 16000).astype(np.float32) * 0.3
    assert degraded(x, "0011_000351").tobytes() == degraded(x, "0011_000351").tobytes()
    assert not np.array_equal(degraded(x, "0011_000351"), degraded(x, "0011_000352"))
