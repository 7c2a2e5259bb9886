"""The synthetic corpus: ESD's layout and ids, parallel sentences, determinism, speakers, emotion profiles."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys

import librosa
import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from engine.cli import main
from engine.errors import EVCError
from engine.signal import EMOTIONS
from support.corpus import SENTENCES
from support.corpus import SPEAKERS as N_SPEAKERS
from training.corpus import espeak
from training.corpus.espeak import Espeak, EspeakBinary
from training.corpus.profiles import CORPUS_SPEAKERS, PROFILES, SPEAKERS, render, ssml
from training.corpus.sentences import sentences
from training.corpus.synth import _prepare_out, synthesize_corpus
from training.data.esd import scan, split_of


def _rows(root) -> list[dict]:
    with open(root / "metadata.csv") as f:
        return list(csv.DictReader(f))


def test_split_of_is_esd_at_350_positions():
    splits = [split_of(p, 350) for p in range(1, 351)]
    assert splits == ["evaluation"] * 20 + ["test"] * 30 + ["train"] * 300


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
    recipe = json.loads((tiny_corpus / "corpus.json").read_text())
    assert (recipe["speakers"], recipe["sentences"], recipe["emotions"]) == (N_SPEAKERS, SENTENCES, list(EMOTIONS))


def test_same_position_is_the_same_sentence(tiny_corpus):
    texts: dict[int, set[str]] = {}
    for row in _rows(tiny_corpus):
        texts.setdefault(int(row["position"]), set()).add(row["text"])
    assert len(texts) == SENTENCES and all(len(t) == 1 for t in texts.values())
    assert len({next(iter(t)) for t in texts.values()}) == SENTENCES


def test_metadata_has_ground_truth_strength_and_parameters(tiny_corpus):
    rows = _rows(tiny_corpus)
    neutral = [r for r in rows if r["emotion"] == "Neutral"]
    emotional = [float(r["strength"]) for r in rows if r["emotion"] != "Neutral"]
    assert {float(r["strength"]) for r in neutral} == {0.0}
    assert {r["pitch_pct"] for r in neutral} == {"0"} and {float(r["tilt"]) for r in neutral} == {0.0}
    assert 0.3 <= min(emotional) and max(emotional) <= 1.0 and np.std(emotional) > 0.1
    for r in rows:  # the recorded offsets are the profile's, scaled by the recorded strength
        profile, s = PROFILES[r["emotion"]], float(r["strength"])
        assert int(r["rate_pct"]) == round(profile.rate * s)
        assert float(r["gain_db"]) == pytest.approx(profile.gain_db * s, abs=1e-3)


def test_corpus_is_deterministic_whatever_the_jobs(tmp_path):
    """Same seed: identical bytes with 1 or 3 processes (a breathy variant included); another seed differs."""
    a = synthesize_corpus(tmp_path / "a", 2, 3, seed=7, jobs=1, progress=False)
    b = synthesize_corpus(tmp_path / "b", 2, 3, seed=7, jobs=3, progress=False)
    c = synthesize_corpus(tmp_path / "c", 2, 3, seed=8, jobs=3, progress=False)
    wavs = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert len(wavs) == 2 * 5 * 3 and wavs == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    assert all((a / w).read_bytes() == (b / w).read_bytes() for w in wavs)
    assert (a / "metadata.csv").read_text() == (b / "metadata.csv").read_text()
    assert (a / "metadata.csv").read_text() != (c / "metadata.csv").read_text()
    assert (a / wavs[0]).read_bytes() != (c / wavs[0]).read_bytes()


def test_sentences_are_distinct_and_reproducible():
    assert sentences(300, 1) == sentences(300, 1)
    assert len(set(sentences(300, 1))) == 300
    assert sentences(5, 1) != sentences(5, 2)
    assert sentences(300, 1)[:20] == sentences(20, 1)


@pytest.fixture(scope="module")
def engine():
    return Espeak()


def test_an_utterance_does_not_depend_on_what_was_spoken_before(engine):
    text = ssml("The quiet river carried the letter.", PROFILES["Happy"], 0.6)
    first = engine.synth(text, "en-us+f3", 48)
    engine.synth(ssml("Hello there.", PROFILES["Sad"], 1.0), "en+m1", 40)
    assert engine.synth(text, "en-us+f3", 48).tobytes() == first.tobytes()
    assert first.dtype == np.int16 and engine.rate == 22050 and 1.0 < len(first) / engine.rate < 4.0


def _neutral(engine, speaker, text: str) -> np.ndarray:
    profile = PROFILES["Neutral"]
    return render(engine.synth(ssml(text, profile, 0.0), speaker.voice, speaker.pitch), engine.rate,
                  speaker, profile, 0.0)


def _mfcc_stats(audio: np.ndarray) -> np.ndarray:
    """(40,) per-coefficient mean and std of 20 MFCCs: a crude speaker embedding."""
    mfcc = librosa.feature.mfcc(y=audio, sr=16000, n_mfcc=20)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])


def test_ten_speakers_are_told_apart_by_their_voices(engine):
    """Leave-one-sentence-out nearest-centroid speaker identification on MFCC statistics: all right."""
    texts = sentences(4, 11)
    feats = np.array([[_mfcc_stats(_neutral(engine, s, t)) for t in texts] for s in SPEAKERS[:10]])
    feats = (feats - feats.mean(axis=(0, 1))) / feats.std(axis=(0, 1))  # (speaker, sentence, 40)
    for held_out in range(len(texts)):
        centroids = np.delete(feats, held_out, axis=1).mean(axis=1)
        dist = np.linalg.norm(feats[:, held_out, None, :] - centroids[None], axis=-1)
        assert (dist.argmin(axis=1) == np.arange(10)).all(), (held_out, dist.argmin(axis=1))


_BELOW_1K = butter(4, 1000, fs=16000, output="sos")


def _measure(audio: np.ndarray) -> np.ndarray:
    """[median F0 Hz, F0 range in semitones, RMS dB, spectral centroid Hz, minus duration s].

    F0 is tracked below 1 kHz: pyin marks fewer frames voiced when the highs are boosted,
    which would read a bright tilt as a narrower pitch range. The range is the 10-90th
    percentile span, which the odd octave error does not move (a standard deviation would).
    """
    f0, voiced, _ = librosa.pyin(sosfiltfilt(_BELOW_1K, audio), fmin=60, fmax=600, sr=16000, frame_length=1024)
    semitones = 12 * np.log2(f0[voiced & np.isfinite(f0)])
    return np.array([np.median(2 ** (semitones / 12)), np.subtract(*np.percentile(semitones, [90, 10])),
                     20 * np.log10(np.sqrt(np.mean(audio ** 2))),
                     librosa.feature.spectral_centroid(y=audio, sr=16000).mean(), -len(audio) / 16000])


@pytest.mark.parametrize("emotion", ["Angry", "Happy", "Sad", "Surprise"])
def test_prosody_and_spectrum_move_with_strength(engine, emotion):
    """Measured F0 level and range, energy, brightness and speed, averaged over three sentences,
    move from strength 0.2 to 1.0 in the profile's direction."""
    speaker, profile = SPEAKERS[0], PROFILES[emotion]
    low, high = (np.mean([_measure(render(engine.synth(ssml(text, profile, s), speaker.voice, speaker.pitch),
                                          engine.rate, speaker, profile, s)) for text in sentences(3, 3)], axis=0)
                 for s in (0.2, 1.0))
    offsets = (profile.pitch, profile.range, profile.gain_db, profile.tilt, profile.rate)
    for measured_low, measured_high, offset in zip(low, high, offsets):
        assert np.sign(measured_high - measured_low) == np.sign(offset), (emotion, low, high)


def test_non_empty_output_dir_is_refused(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code = main(["corpus", "synth", str(tmp_path / "x"), "--speakers", "1", "--sentences", "3"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "not empty" in err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--speakers", str(len(CORPUS_SPEAKERS) + 1)],
                                  ["--sentences", "0"]])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args):
    code = main(["corpus", "synth", str(tmp_path / "new"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("evc: error: --")
    assert not (tmp_path / "new").exists()


def test_overwrite_removes_the_previous_corpus_only(tmp_path):
    stale = tmp_path / "0011" / "Angry" / "train" / "0011_000999.wav"
    stale.parent.mkdir(parents=True)
    for path in (stale, tmp_path / "metadata.csv", tmp_path / "corpus.json", tmp_path / "notes.txt"):
        path.write_text("x")
    _prepare_out(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt"]


def test_missing_espeak_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(espeak, "_LIBRARY", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now raises ImportError
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    with pytest.raises(EVCError, match="pip install espeakng-loader") as e:
        Espeak()
    assert "\n" not in str(e.value)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng program")
def test_the_espeak_program_is_a_fallback_with_the_same_interface():
    binary = EspeakBinary(shutil.which("espeak-ng"))
    samples = binary.synth(ssml("The quiet river carried the letter.", PROFILES["Sad"], 1.0), "en-us+m3", 45)
    assert samples.dtype == np.int16 and binary.rate == 22050 and 1.0 < len(samples) / binary.rate < 5.0
