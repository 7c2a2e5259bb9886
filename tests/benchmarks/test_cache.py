"""The benchmark cache: keys from files, atomic entries, damaged entries recomputed with a notice,
and the evaluators fitted once per train split."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("sklearn")

from benchmarks import fitting  # noqa: E402
from benchmarks.cache import Cache, default_dir, digest, files_key  # noqa: E402
from support.fabricated import write_corpus  # noqa: E402
from training.data.esd import scan, strengths  # noqa: E402


def test_default_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "evc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_dir() == default_dir().home() / ".cache" / "evc"


def test_a_value_is_made_once_then_read_back(tmp_path):
    cache, calls = Cache(tmp_path), []
    make = lambda: calls.append(1) or {"x": np.arange(3)}  # noqa: E731
    first, hit1 = cache.get("thing", "k1", make)
    second, hit2 = cache.get("thing", "k1", make)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(second["x"], first["x"])
    assert cache.get("thing", "k2", make)[1] is False and len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing-k1.pkl", "thing-k2.pkl"]


@pytest.mark.parametrize("damage", [b"", b"not a pickle at all", b"\x80\x05garbage"])
def test_an_unreadable_entry_is_recomputed_with_a_one_line_notice(tmp_path, damage):
    notes = []
    cache = Cache(tmp_path, echo=notes.append)
    cache.store("thing", "k", 41)
    (tmp_path / "thing-k.pkl").write_bytes(damage)
    assert cache.get("thing", "k", lambda: 42) == (42, False)
    assert len(notes) == 1 and "\n" not in notes[0] and "unreadable" in notes[0]
    assert cache.get("thing", "k", lambda: 43) == (42, True)  # the recomputed entry replaced it


def test_an_entry_stored_under_another_key_is_not_trusted(tmp_path):
    notes = []
    cache = Cache(tmp_path, echo=notes.append)
    cache.store("thing", "a", 1)
    os.replace(tmp_path / "thing-a.pkl", tmp_path / "thing-b.pkl")
    assert cache.get("thing", "b", lambda: 2) == (2, False) and len(notes) == 1


def test_no_cache_reads_and_writes_nothing(tmp_path):
    cache = Cache(None)
    assert cache.get("thing", "k", lambda: 5) == (5, False)
    assert cache.get("thing", "k", lambda: 6) == (6, False)
    assert cache.path("thing", "k") is None


def test_files_key_changes_with_a_file_and_not_with_the_root(tmp_path):
    a, b = tmp_path / "one" / "x.wav", tmp_path / "two" / "x.wav"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"12345")
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    assert files_key([a], a.parent) == files_key([b], b.parent) == [("x.wav", 5, 1_000_000_000)]
    before = digest(files_key([a], a.parent))
    a.write_bytes(b"123456")
    assert digest(files_key([a], a.parent)) != before


def _cheap_features(paths, jobs):
    """Stand-in statistics (file size, the first samples) so that the test times the cache, not features."""
    import soundfile as sf

    return np.stack([np.concatenate([[os.path.getsize(p)], sf.read(p, frames=8)[0]]) for p in paths])


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", sentences=6)


def test_evaluators_hit_on_the_second_run_and_miss_after_a_train_file_changes(corpus, tmp_path, monkeypatch):
    extracted = []
    monkeypatch.setattr(fitting, "features_of", lambda p, j: extracted.append(len(p)) or _cheap_features(p, j))
    cache, utts, gt = Cache(tmp_path / "cache"), scan(corpus), strengths(corpus)
    _, key1, source1 = fitting.corpus_evaluators(corpus, utts, gt, 1, cache)
    _, key2, source2 = fitting.corpus_evaluators(corpus, utts, gt, 1, cache)
    n_train = sum(u.split == "train" for u in utts)
    assert extracted == [n_train] and key1 == key2
    assert source1.startswith(f"fitted on {n_train} natural train utterances, cached in") and source2.startswith(
        "loaded from")
    train_file = next(u.path for u in utts if u.split == "train")
    train_file.write_bytes(train_file.read_bytes()[:-2])
    _, key3, source3 = fitting.corpus_evaluators(corpus, utts, gt, 1, cache)
    assert key3 != key1 and source3.startswith("fitted") and extracted == [n_train, n_train]


def test_changing_a_test_file_or_labels_elsewhere_keeps_or_drops_the_fit(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(fitting, "features_of", _cheap_features)
    cache, utts, gt = Cache(tmp_path / "cache"), scan(corpus), strengths(corpus)
    key = fitting.corpus_evaluators(corpus, utts, gt, 1, cache)[1]
    test_file = next(u.path for u in utts if u.split == "test")
    test_file.write_bytes(test_file.read_bytes()[:-2])
    assert fitting.corpus_evaluators(corpus, utts, gt, 1, cache)[1] == key  # not a train file
    meta = corpus / "metadata.csv"
    meta.write_text(meta.read_text().replace("0.", "0.0", 1))
    assert fitting.corpus_evaluators(corpus, utts, strengths(corpus), 1, cache)[1] != key  # labels changed


def test_a_corrupt_evaluator_entry_is_refitted_with_a_notice(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(fitting, "features_of", _cheap_features)
    notes = []
    cache, utts, gt = Cache(tmp_path / "cache", echo=notes.append), scan(corpus), strengths(corpus)
    key = fitting.corpus_evaluators(corpus, utts, gt, 1, cache)[1]
    cache.path("evaluators", key).write_bytes(b"\x00" * 10)
    evals, _, source = fitting.corpus_evaluators(corpus, utts, gt, 1, cache)
    assert source.startswith("fitted") and len(notes) == 1 and "unreadable" in notes[0]
    assert set(evals.ranker.models) == {"Angry", "Happy", "Sad", "Surprise"}
