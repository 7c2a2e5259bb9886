"""The ESD index on fabricated ESD-style trees (tiny wavs, with and without split folders)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.errors import EVCError
from engine.signal import EMOTIONS
from training.data.esd import SPLITS, block_size, parallel, scan, split_of, split_sizes, strengths

# A subset of ESD's 350 positions, covering every split and both split boundaries.
POSITIONS = (1, 20, 21, 50, 51, 350)
SPEAKERS = ("0011", "0012")
TINY = np.zeros(16, dtype=np.float32)


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, TINY, 16000)


def _fabricate(root: Path, positions=POSITIONS, m: int = 350, split_folders: bool = True,
               speakers=SPEAKERS) -> Path:
    """ESD-style tree: every speaker x emotion x position, ids in blocks of m."""
    for speaker in speakers:
        for label, emotion in enumerate(EMOTIONS):
            for p in positions:
                name = f"{speaker}_{label * m + p:06d}.wav"
                folder = root / speaker / emotion
                _wav(folder / split_of(p, m) / name if split_folders else folder / name)
        # ESD's transcripts are latin-1/utf-16/utf-8 mixes: the index must never read them.
        (root / speaker / f"{speaker}.txt").write_bytes(b"0011_000001\tCaf\xe9 \xff\xfe na\xefve\tNeutral\n")
    return root


@pytest.fixture(params=[True, False], ids=["split-folders", "flat"])
def esd(request, tmp_path) -> Path:
    return _fabricate(tmp_path / "ESD", split_folders=request.param)


def test_split_of_reproduces_esd_over_all_350_positions():
    splits = [split_of(p, 350) for p in range(1, 351)]
    assert splits == ["evaluation"] * 20 + ["test"] * 30 + ["train"] * 300
    assert split_of(20) == "evaluation" and split_of(21) == "test" and split_of(51) == "train"


@pytest.mark.parametrize("m", [3, 4, 5, 10, 17, 35, 70, 100, 349, 700])
def test_split_of_scales_to_smaller_blocks(m):
    counts = Counter(split_of(p, m) for p in range(1, m + 1))
    assert sum(counts.values()) == m
    assert counts["evaluation"] == max(1, round(20 * m / 350))
    assert counts["test"] == max(1, round(30 * m / 350))
    assert counts["train"] >= 1
    # Contiguous: evaluation first, then test, then train, as in ESD.
    order = [split_of(p, m) for p in range(1, m + 1)]
    assert order == sorted(order, key=["evaluation", "test", "train"].index)


def test_split_sizes_tiny_and_invalid():
    assert split_sizes(350) == (20, 30)
    assert split_sizes(2) == (0, 0) and split_of(2, 2) == "train"
    with pytest.raises(ValueError, match="position"):
        split_of(0, 10)
    with pytest.raises(ValueError, match="position"):
        split_of(11, 10)


def test_scan_counts_fields_and_order(esd):
    utts = scan(esd)
    assert len(utts) == len(SPEAKERS) * len(EMOTIONS) * len(POSITIONS)
    per_split = Counter((u.split, u.position) for u in utts)
    assert {p for (s, p) in per_split if s == "evaluation"} == {1, 20}
    assert {p for (s, p) in per_split if s == "test"} == {21, 50}
    assert {p for (s, p) in per_split if s == "train"} == {51, 350}
    angry = next(u for u in utts if u.speaker == "0012" and u.emotion == "Angry" and u.position == 21)
    assert (angry.label, angry.utt_id, angry.split) == (1, "0012_000371", "test")
    assert angry.path.is_file() and angry.path.stem == angry.utt_id
    assert utts == sorted(utts, key=lambda u: (u.speaker, u.utt_id))
    assert [u.label for u in utts] == [EMOTIONS.index(u.emotion) for u in utts]
    assert block_size(esd) == 350


def test_split_counts_at_full_esd_size(tmp_path):
    root = _fabricate(tmp_path / "ESD", positions=range(1, 351), speakers=("0011",), split_folders=False)
    counts = Counter(u.split for u in scan(root, emotions=["Neutral"]))
    assert counts == {"evaluation": 20, "test": 30, "train": 300}
    assert len(scan(root)) == 5 * 350 and block_size(root) == 350


def test_filters(esd):
    assert {u.speaker for u in scan(esd, speakers=["0012"])} == {"0012"}
    assert len(scan(esd, speakers=[11])) == len(EMOTIONS) * len(POSITIONS)
    sad = scan(esd, emotions=["sad", "Happy"])
    assert {u.emotion for u in sad} == {"Sad", "Happy"}
    test = scan(esd, splits=["test"], speakers=["0011"], emotions=["Neutral"])
    assert [u.position for u in test] == [21, 50]
    assert scan(esd, speakers=["0099"]) == []


def test_filter_errors(esd):
    with pytest.raises(EVCError, match="unknown emotion 'Bored'"):
        scan(esd, emotions=["Bored"])
    with pytest.raises(EVCError, match="unknown split 'dev'"):
        scan(esd, splits=["dev"])


def test_parallel_pairs_same_speaker_and_sentence(esd):
    utts = scan(esd)
    pairs = parallel(utts, "Neutral", "Angry")
    assert len(pairs) == len(SPEAKERS) * len(POSITIONS)
    for src, tgt in pairs:
        assert (src.emotion, tgt.emotion) == ("Neutral", "Angry")
        assert src.speaker == tgt.speaker and src.position == tgt.position
        assert int(tgt.utt_id[5:]) - int(src.utt_id[5:]) == 350
    # A source without its target is left out.
    test_only = [u for u in utts if not (u.emotion == "Sad" and u.position == 50)]
    assert len(parallel(test_only, "neutral", "sad")) == len(SPEAKERS) * (len(POSITIONS) - 1)
    with pytest.raises(EVCError, match="two different emotions"):
        parallel(utts, "Happy", "happy")


def test_stray_files_are_ignored(esd):
    n = len(scan(esd))
    (esd / "README.md").write_text("ESD")
    (esd / "0011" / "Angry" / "notes.txt").write_text("x")
    (esd / "0011" / "Angry" / "train").mkdir(exist_ok=True)
    (esd / "0011" / "Angry" / "train" / "0011_000400.flac").write_bytes(b"x")
    _wav(esd / "0011" / "Bored" / "0011_000400.wav")        # not an ESD emotion
    _wav(esd / "0011" / "Angry" / "0012_000400.wav")        # speaker prefix disagrees
    _wav(esd / "0011" / "Angry" / "dev" / "0011_000400.wav")  # not an ESD split
    _wav(esd / "0011" / "Angry" / "0011_400.wav")           # not a 6-digit id
    assert len(scan(esd)) == n


def test_transcripts_are_never_opened(esd, monkeypatch):
    opened = []
    real_open = Path.open

    def spy(self, *args, **kwargs):
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: opened.append(self) or "")
    monkeypatch.setattr(Path, "read_bytes", lambda self, *a, **k: opened.append(self) or b"")
    assert len(scan(esd)) > 0
    assert not [p for p in opened if p.suffix == ".txt"]


def test_block_size_inferred_from_a_complete_small_corpus(tmp_path):
    root = _fabricate(tmp_path / "synth", positions=range(1, 11), m=10, split_folders=False)
    assert block_size(root) == 10
    counts = Counter(u.split for u in scan(root, speakers=["0011"], emotions=["Surprise"]))
    assert counts == {"evaluation": 1, "test": 1, "train": 8}
    assert [u.position for u in scan(root, speakers=["0011"], emotions=["Surprise"])] == list(range(1, 11))


def test_block_size_from_corpus_json(tmp_path):
    # Partial corpus: M cannot be inferred from the ids, so corpus.json must say it.
    root = _fabricate(tmp_path / "synth", positions=(1, 2, 5), m=12, split_folders=False)
    with pytest.raises(EVCError, match="corpus.json"):
        scan(root)
    (root / "corpus.json").write_text(json.dumps({"sentences": 12}))
    utts = scan(root)
    assert block_size(root) == 12
    assert {u.position for u in utts} == {1, 2, 5}
    assert {(u.position, u.split) for u in utts} == {(1, "evaluation"), (2, "test"), (5, "train")}


def test_bad_corpus_json(tmp_path):
    root = _fabricate(tmp_path / "synth", positions=(1,), m=12)
    (root / "corpus.json").write_text(json.dumps({"sentences": "twelve"}))
    with pytest.raises(EVCError, match="positive integer"):
        scan(root)


def test_root_errors(tmp_path):
    with pytest.raises(EVCError, match="not found") as missing:
        scan(tmp_path / "nowhere")
    (tmp_path / "empty" / "0011" / "Angry").mkdir(parents=True)
    (tmp_path / "empty" / "0011" / "0011.txt").write_text("text")
    with pytest.raises(EVCError, match="no ESD-style wav") as empty:
        scan(tmp_path / "empty")
    assert str(missing.value) != str(empty.value)
    assert "\n" not in str(empty.value)


def test_strengths(esd):
    assert strengths(esd) == {}
    (esd / "metadata.csv").write_text("utt_id,speaker,emotion,strength\n0011_000351,0011,Angry,0.75\n"
                                      "0011_000001,0011,Neutral,0\n")
    assert strengths(esd) == {"0011_000351": 0.75, "0011_000001": 0.0}
    ids = {u.utt_id for u in scan(esd)}
    assert set(strengths(esd)) <= ids


@pytest.mark.parametrize("text, message", [
    ("utt_id,emotion\n0011_000351,Angry\n", "missing column"),
    ("utt_id,strength\n0011_000351,strong\n", "must be a number"),
    ("utt_id,strength\n0011_000351,1.5\n", r"in \[0, 1\]"),
])
def test_strengths_errors(tmp_path, text, message):
    (tmp_path / "metadata.csv").write_text(text)
    with pytest.raises(EVCError, match=message):
        strengths(tmp_path)


def test_module_does_not_import_torch():
    import subprocess

    code = "import sys, training.data.esd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_splits_constant():
    assert set(SPLITS) == {"train", "evaluation", "test"}
