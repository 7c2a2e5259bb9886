"""The content path's log-mel input in training: the utterance's loudness and spectral tilt
moved to the speaker's neutral voice.

The corpus renders an emotion partly as a global gain and tilt (Angry +7 dB and brighter,
Sad -7 dB and darker: training/corpus/profiles.py); Angry and Happy differ in little else the
live model can change. A self-reconstruction from the utterance's own log-mel lets the
generator copy that level and tilt from its input and ignore the embedding, so at run time,
fed a neutral voice, it keeps the voice's neutral level (the model this replaces moved level
1-3 dB where the targets move 7). So, as the pitch input is mapped onto the speaker's neutral
register (training/data/pitch.py), the content encoder's input gets the speaker's neutral level
and tilt:

    mel_in = mel - (a + b u),  (a, b) = least squares of active_mean(mel) - neutral_mean on [1, u]

with [1, u] the rows of training.models.frames.spectral_basis, active_mean the mean log-mel of
the utterance's frames within engine.anchor.ACTIVE_NEPERS of its loudest, and neutral_mean the mean of that
over all the speaker's Neutral utterances of the split. Only level and tilt move: the
utterance's own spectral shape (its words) stays.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from engine.anchor import active_mean, neutral_spectrum
from training.models.frames import spectral_basis


def neutral_spectra(mels: list[np.ndarray], speakers: list[str], neutral: list[bool]) -> dict[str, np.ndarray]:
    """speaker -> (n_mels,) mean of active_mean over their Neutral utterances (engine.anchor.neutral_spectrum:
    the spectrum of the emotion encoder's anchor)."""
    pooled = defaultdict(list)
    for mel, s, is_neutral in zip(mels, speakers, neutral):
        if is_neutral:
            pooled[s].append(mel)
    spectra = {s: neutral_spectrum(v) for s, v in pooled.items()}
    return {s: v for s, v in spectra.items() if v is not None}


def spectral_offset(mel: np.ndarray, neutral: np.ndarray | None) -> np.ndarray:
    """(n_mels,) float32 active_mean of mel (n_mels, T) minus the speaker's neutral spectrum: the
    whole spectral change of the utterance's emotion (level_tilt keeps only its level and tilt);
    zeros when the speaker has none or the utterance is empty."""
    own = active_mean(mel)
    if neutral is None or own is None:
        return np.zeros(mel.shape[0], np.float32)
    return (own - neutral).astype(np.float32)


def level_tilt(mel: np.ndarray, neutral: np.ndarray | None) -> np.ndarray:
    """(n_mels, 1) float32 offset a + b u of mel (n_mels, T) from the speaker's neutral spectrum;
    zeros when the speaker has none or the utterance is empty."""
    own = active_mean(mel)
    if neutral is None or own is None:
        return np.zeros((mel.shape[0], 1), np.float32)
    basis = spectral_basis(mel.shape[0]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(basis.T, own - neutral, rcond=None)
    return (coef @ basis)[:, None].astype(np.float32)
