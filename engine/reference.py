"""A reference utterance analysed once for everything registration reads of it.

The emotion encoder, the speaker's neutral anchor (engine.anchor) and the measured prosody
(engine.prosody) all read the same offline log-mel and pitch rows of a reference; analysing it
once keeps them reading the very same frames (and registration three times cheaper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.features import log_mel_offline
from engine.pitch import reference_pitch
from engine.signal import SignalSpec


@dataclass(frozen=True)
class Reference:
    """mel: (n_mels, T) float32 natural-log mel; pitch: (2, T) float32 rows held natural-log F0 and
    voicing (engine.pitch.reference_pitch); T = N // hop for audio (N,)."""

    mel: np.ndarray
    pitch: np.ndarray

    @property
    def voiced(self) -> np.ndarray:
        """(T,) bool: the frames the tracker calls voiced."""
        return self.pitch[1] > 0.5


def analyse_reference(audio: np.ndarray, spec: SignalSpec) -> Reference:
    """The offline analysis of a whole reference utterance audio (N,) at spec's rate."""
    return Reference(log_mel_offline(audio, spec), reference_pitch(audio, spec))
