"""The content path's log-mel input with the speaker's neutral level and tilt (training.data.spectrum)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.anchor import active_mean
from training.data.spectrum import level_tilt, neutral_spectra, spectral_offset
from training.models.frames import spectral_basis

N_MELS, T = 80, 120


def _utterance(rng: np.random.Generator, level: float = 0.0, tilt: float = 0.0) -> np.ndarray:
    """(N_MELS, T) log-mel: a random spectral shape per frame, 20 silent frames at the end, and
    `level` + `tilt` u added to the speech frames (natural-log magnitude)."""
    mel = -2.0 - 3.0 * np.linspace(0, 1, N_MELS)[:, None] + 0.5 * rng.standard_normal((N_MELS, T))
    mel[:, 100:] = np.log(1e-5)
    mel[:, :100] += (spectral_basis(N_MELS).T @ np.array([level, tilt]))[:, None]
    return mel.astype(np.float32)


def test_an_emotional_level_and_tilt_are_moved_onto_the_speakers_neutral_spectrum():
    rng = np.random.default_rng(0)
    neutral = [_utterance(rng) for _ in range(6)]
    angry = _utterance(rng, level=0.8, tilt=1.5)  # +7 dB and 13 dB brighter across the bands
    spectra = neutral_spectra([*neutral, angry], ["0011"] * 7, [True] * 6 + [False])
    assert set(spectra) == {"0011"} and spectra["0011"].shape == (N_MELS,)
    offset = level_tilt(angry, spectra["0011"])
    assert offset.shape == (N_MELS, 1) and offset.dtype == np.float32
    want = spectral_basis(N_MELS).T @ np.array([0.8, 1.5])
    # the fit reads the emotion's level and tilt to within the sentence-to-sentence spread
    # of the random spectra (0.5 / sqrt(100 frames) per band)
    np.testing.assert_allclose(offset[:, 0], want, atol=0.05)
    moved = angry - offset
    np.testing.assert_allclose(active_mean(moved).mean(), spectra["0011"].mean(), atol=0.05)
    # only a level and a tilt move: the utterance's own frame-to-frame detail stays
    detail = moved - moved.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(detail, angry - angry.mean(axis=1, keepdims=True), atol=1e-5)


def test_the_active_mean_skips_pauses():
    mel = np.full((N_MELS, T), np.log(1e-5), np.float32)
    mel[:, 10:30] = -1.0
    np.testing.assert_allclose(active_mean(mel), -1.0)
    assert active_mean(mel[:, :0]) is None


@pytest.mark.parametrize("neutral", [None, "empty"])
def test_no_neutral_spectrum_or_no_frames_leaves_the_input_unchanged(neutral):
    rng = np.random.default_rng(1)
    mel = _utterance(rng, level=1.0)
    if neutral is None:
        got = level_tilt(mel, None)
    else:
        got = level_tilt(mel[:, :0], np.zeros(N_MELS))
    assert not got.any() and got.shape[1] == 1


def test_the_spectral_offset_keeps_the_whole_change_of_the_active_spectrum():
    rng = np.random.default_rng(3)
    mel, neutral = _utterance(rng, level=0.8), np.linspace(-3.0, -5.0, N_MELS)
    mel[10:20, :100] += 1.0  # a bump in the spectrum: not a level or a tilt, kept all the same
    offset = spectral_offset(mel, neutral)
    assert offset.dtype == np.float32 and offset.shape == (mel.shape[0],)
    np.testing.assert_allclose(offset, active_mean(mel) - neutral, atol=1e-5)
    assert offset[10:20].mean() - offset[30:40].mean() > 0.9
    assert not spectral_offset(mel, None).any() and not spectral_offset(mel[:, :0], neutral).any()


def test_a_speaker_without_neutral_utterances_has_no_neutral_spectrum():
    rng = np.random.default_rng(2)
    assert neutral_spectra([_utterance(rng)], ["0012"], [False]) == {}


def test_training_inputs_carry_the_neutral_level_and_the_targets_the_emotions(tiny_corpus):
    """In the espeak corpus Angry is louder than Neutral and Sad quieter (training/corpus/profiles.py):
    the corpus's mel_in moves each utterance's level onto its speaker's neutral one."""
    from engine.signal import EMOTIONS, SignalSpec
    from training.data.batches import MelCorpus

    corpus = MelCorpus(tiny_corpus, SignalSpec(), "train", limit=100)
    level = {k: [] for k in EMOTIONS}
    for i, label in enumerate(corpus.labels):
        assert np.array_equal(corpus.mel_in(i), corpus.mels[i] - corpus.offsets[i])
        level[EMOTIONS[label]].append(float(corpus.offsets[i].mean()) * 20 / np.log(10))  # dB
    assert abs(np.mean(level["Neutral"])) < 0.5
    assert np.mean(level["Angry"]) > 3.0 and np.mean(level["Sad"]) < -3.0
    # the emotion offsets carry the same move, and Angry's pitch level above Sad's
    moves = {k: np.mean([corpus.emotion_offsets[i].numpy() for i in np.flatnonzero(corpus.labels == j)], axis=0)
             for j, k in enumerate(EMOTIONS)}
    n = corpus.spec.n_mels
    assert moves["Angry"][:n].mean() * 20 / np.log(10) > 3.0 and moves["Sad"][:n].mean() * 20 / np.log(10) < -3.0
    assert moves["Angry"][n] > moves["Sad"][n] and abs(moves["Neutral"][n]) < 0.05
