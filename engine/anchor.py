"""A speaker's neutral voice as the origin the emotion encoder reads a reference from.

An emotion is a move from the speaker's own neutral voice: louder, brighter, higher. Read from
one utterance alone, a loud bright voice is Angry or merely a loud bright speaker; the model's
encoder, reading references so, called 36 of 102 seen speakers' Angry test utterances Happy
(README), and an RBF SVM on the benchmark's utterance statistics, cross-validated by speaker,
reaches 0.80 read alone and 0.94 read from each speaker's Neutral mean. So the encoder is
given an anchor, the speaker's neutral voice::

    anchor = [mean over neutral utterances of active_mean(log-mel) (n_mels),
              mean voiced natural-log F0 (1)]

and reads the reference moved by (anchor - centre), centre the mean anchor of the training
speakers (training.models.emotion_encoder): the reference as the average training voice would
say it. Without a neutral utterance the anchor is the centre, and the reference is read as it is.
"""

from __future__ import annotations

import numpy as np

ACTIVE_NEPERS = 3.45
"""30 dB (in natural-log magnitude) below the loudest frame: speech, not pauses."""


def frame_levels(mel: np.ndarray) -> np.ndarray:
    """(T,) each frame's level: the log of its summed mel magnitudes, mel (n_mels, T) natural-log."""
    return np.log(np.exp(mel).sum(axis=0))


def active_mean(mel: np.ndarray) -> np.ndarray | None:
    """(n_mels,) mean log-mel of the active frames of mel (n_mels, T); None for an empty utterance."""
    if mel.shape[1] == 0:
        return None
    level = frame_levels(mel)
    return mel[:, level >= level.max() - ACTIVE_NEPERS].mean(axis=1)


def neutral_spectrum(mels: list[np.ndarray]) -> np.ndarray | None:
    """(n_mels,) mean over utterances of the active_mean of their log-mels (n_mels, T); None without
    an active frame."""
    spectra = [m for m in (active_mean(np.asarray(x)) for x in mels) if m is not None]
    return np.mean(spectra, axis=0) if spectra else None


def neutral_anchor(mels: list[np.ndarray], pitches: list[np.ndarray]) -> np.ndarray | None:
    """(n_mels + 1,) float32 anchor of neutral utterances: log-mels (n_mels, T) and the encoder's
    pitch rows (2, T) (held natural-log F0, voicing); None without an active frame or a voiced one."""
    spectrum = neutral_spectrum(mels)
    voiced = np.concatenate([np.asarray(p)[0][np.asarray(p)[1] > 0.5] for p in pitches] or [np.zeros(0)])
    if spectrum is None or voiced.size == 0:
        return None
    return np.concatenate([spectrum, [voiced.mean()]]).astype(np.float32)
