"""The synthetic corpus: ESD's layout and ids, parallel sentences, determinism, emotion profiles."""

from __future__ import annotations

import csv
import re

import librosa
import numpy as np
import pytest

from engine.cli import main
from engine.signal import EMOTIONS
from support.corpus import SENTENCES
from support.corpus import SPEAKERS as N_SPEAKERS
from training.corpus.espeak import Espeak
from training.corpus.profiles import PROFILES, SPEAKERS, render, ssml
from training.corpus.sentences import sentences
from training.corpus.synth import synthesize_corpus
from training.data.esd import scan, split_of


def _rows(root) -> list[dict]:
    with open(root / "metadata.csv") as f:
        return list(csv.DictReader(f))


def test_layout_and_ids_are_esd(tiny_corpus):
    wavs = sorted(tiny_corpus.rglob("*.wav"))
    assert len(wavs) == N_SPEAKERS * len(EMOTIONS) * SENTENCES
    for wav in wavs:
        speaker, emotion, split, name = wav.relative_to(tiny_corpus).parts
        m = re.fullmatch(r"(\d{4})_(\d{6})\.wav", name)
        assert m and m.group(1) == speaker and emotion in EMOTIONS
        uid = int(m.group(2))
        assert (uid - 1) // SENTENCES == EMOTIONS.index(emotion)
        assert split == split_of((uid - 1) % SENTENCES + 1, SENTENCES)
    assert sorted({w.parts[-4] for w in wavs}) == [f"{11 + i:04d}" for i in range(N_SPEAKERS)]
    utts = scan(tiny_corpus)
    assert {u.split for u in utts} == {"train", "evaluation", "test"}
    assert all(librosa.get_samplerate(str(w)) == 16000 for w in wavs[:5])


def test_same_position_is_the_same_sentence(tiny_corpus):
    texts: dict[int, set[str]] = {}
    for row in _rows(tiny_corpus):
        texts.setdefault(int(row["position"]), set()).add(row["text"])
    assert len(texts) == SENTENCES and all(len(t) == 1 for t in texts.values())
    assert len({next(iter(t)) for t in texts.values()}) == SENTENCES


def test_metadata_has_ground_truth_strength(tiny_corpus):
    rows = _rows(tiny_corpus)
    neutral = [float(r["strength"]) for r in rows if r["emotion"] == "Neutral"]
    emotional = [float(r["strength"]) for r in rows if r["emotion"] != "Neutral"]
    assert set(neutral) == {0.0}
    assert 0.3 <= min(emotional) and max(emotional) <= 1.0 and np.std(emotional) > 0.1


def test_deterministic_for_a_seed(tmp_path, tiny_corpus):
    a = synthesize_corpus(tmp_path / "a", 1, 4, seed=7, jobs=1, progress=False)
    b = synthesize_corpus(tmp_path / "b", 1, 4, seed=8, jobs=2, progress=False)
    name = "0011/Angry/evaluation/0011_000005.wav"
    same = (tiny_corpus / "0011/Angry").rglob("0011_000021.wav")  # position 1 at M=20
    assert (a / name).exists() and next(same).exists()
    again = synthesize_corpus(tmp_path / "c", 1, 4, seed=7, jobs=2, progress=False)
    assert (a / name).read_bytes() == (again / name).read_bytes()
    assert (a / "metadata.csv").read_text() == (again / "metadata.csv").read_text()
    assert (a / "metadata.csv").read_text() != (b / "metadata.csv").read_text()


def test_sentences_are_distinct_and_reproducible():
    assert sentences(300, 1) == sentences(300, 1)
    assert len(set(sentences(300, 1))) == 300
    assert sentences(5, 1) != sentences(5, 2)


def _measure(audio: np.ndarray) -> np.ndarray:
    """[median F0 in Hz, F0 range as the std of F0 in semitones, RMS in dB] over voiced frames."""
    f0, voiced, _ = librosa.pyin(audio, fmin=60, fmax=600, sr=16000, frame_length=1024)
    semitones = 12 * np.log2(f0[voiced & np.isfinite(f0)])
    return np.array([np.median(2 ** (semitones / 12)), np.std(semitones),
                     20 * np.log10(np.sqrt(np.mean(audio ** 2)))])


@pytest.fixture(scope="module")
def engine():
    return Espeak()


@pytest.mark.parametrize("emotion", ["Angry", "Happy", "Sad", "Surprise"])
def test_pitch_range_and_energy_move_with_strength(engine, emotion):
    """Measured F0 level, F0 range and energy, averaged over three sentences, move from strength
    0.2 to 1.0 in the profile's direction."""
    speaker, profile = SPEAKERS[0], PROFILES[emotion]
    low, high = (np.mean([_measure(render(engine.synth(ssml(text, profile, s), speaker.voice, speaker.pitch),
                                          engine.rate, speaker, profile, s)) for text in sentences(3, 3)], axis=0)
                 for s in (0.2, 1.0))
    for measured_low, measured_high, offset in zip(low, high, (profile.pitch, profile.range, profile.gain_db)):
        assert np.sign(measured_high - measured_low) == np.sign(offset), (emotion, low, high)


def test_non_empty_output_dir_is_refused(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code = main(["corpus", "synth", str(tmp_path / "x"), "--speakers", "1", "--sentences", "3"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "not empty" in err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
