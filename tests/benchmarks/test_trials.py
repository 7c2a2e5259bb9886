"""Trials of the quality benchmark, and seen/unseen speakers read from a model's manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.trials import (
    SEEN,
    UNKNOWN,
    UNSEEN,
    first_per_speaker,
    make_trials,
    speaker_group,
    training_speakers,
)
from support.fabricated import write_corpus
from support.toy_model import write_toy_model
from training.data.esd import scan


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("fabricated") / "corpus")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from engine.signal import SignalSpec

    return write_toy_model(tmp_path_factory.mktemp("toy") / "toy", SignalSpec())


def _with_speakers(toy, tmp_path, speakers):
    model = tmp_path / "model"
    shutil.copytree(toy, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["training"] = {**manifest.get("training", {}), "speakers": speakers}
    (model / "manifest.json").write_text(json.dumps(manifest))
    return model


def test_trials_pair_a_neutral_source_with_another_sentence_its_target_and_a_neutral_origin(corpus):
    trials = make_trials(scan(corpus), "test")
    assert len(trials) == 2 * 2 * 4  # speakers x test sentences x target emotions
    for t in trials:
        assert t.source.emotion == "Neutral" and t.target.emotion == t.reference.emotion == t.emotion
        assert t.source.speaker == t.reference.speaker == t.target.speaker == t.neutral.speaker
        assert t.target.position == t.source.position != t.reference.position
        assert t.neutral.emotion == "Neutral" and t.neutral.position == t.reference.position
        assert t.source.split == t.target.split == t.reference.split == "test"
    assert len(make_trials(scan(corpus), "test", limit=1)) == 2 * 4


def test_first_per_speaker_takes_whole_sentences(corpus):
    trials = make_trials(scan(corpus), "test")
    chosen = [trials[i] for i in first_per_speaker(trials, 1)]
    assert len(chosen) == 2 * 4
    assert len({(t.source.speaker, t.source.position) for t in chosen}) == 2
    assert first_per_speaker(trials, 0) == [] and len(first_per_speaker(trials, 9)) == len(trials)


def test_seen_and_unseen_follow_the_manifest(toy, tmp_path):
    model = _with_speakers(toy, tmp_path, ["0011", "13"])
    trained = training_speakers(model)
    assert trained == ("0011", "0013")
    assert [speaker_group(s, trained) for s in ("0011", "0012", "0013")] == [SEEN, UNSEEN, SEEN]


@pytest.mark.parametrize("speakers", [None, [], "0011"])
def test_a_model_without_a_speaker_list_is_unknown_never_guessed(toy, tmp_path, speakers):
    model = toy if speakers is None else _with_speakers(toy, tmp_path, speakers)
    assert training_speakers(model) is None and training_speakers(None) is None
    assert speaker_group("0011", training_speakers(model)) == UNKNOWN


def test_voice_families_come_from_the_metadata_and_are_empty_without_it(tmp_path):
    from benchmarks.trials import voice_families

    assert voice_families(tmp_path) == {}
    (tmp_path / "metadata.csv").write_text("utt_id,speaker,voice\n0011_000001,0011,en-us+m3\n"
                                           "0023_000001,0023,festival:czech_dita\n")
    assert voice_families(tmp_path) == {"0011": "espeak", "0023": "festival"}
