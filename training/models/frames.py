"""What the networks see of a frame: the liftered log-mel and normalised pitch.

The log-mel of a voiced frame carries the pitch twice: as its harmonics (a ripple across
the low bands) and as the envelope. The pitch is explicit in this design (the engine's
tracker in, the generator's log-F0 out, the vocoder's excitation), so every network sees
the log-mel through a cepstral lifter that keeps its envelope and drops the harmonic
ripple: a DCT-II over the mel bands, the first ``LIFTER_KEEP`` coefficients kept, and
back. The lifter is a fixed projection (P @ P = P): the generator's output, liftered again
by the vocoder, does not change, and a changed pitch cannot contradict ripple in the mel.

``LIFTER_KEEP = 32`` keeps envelope detail down to a period of 5 mel bands (the quality
benchmark's MCD reads 24 mel-cepstra) and removes the ripple of every F0 up to about
350 Hz (bands are 67 Hz wide below 1 kHz, wider above).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

LIFTER_KEEP = 32
LF0_CENTRE, LF0_SCALE = math.log(150.0), 0.5
"""Log-F0 enters the networks as (lf0 - LF0_CENTRE) / LF0_SCALE: 150 Hz is 0, an octave is 1.39."""


def dct_matrix(n_mels: int, keep: int = LIFTER_KEEP) -> np.ndarray:
    """(keep, n_mels) float64: the first `keep` rows of the orthonormal DCT-II over the mel bands
    (row k of it times a log-mel frame is the frame's k-th cepstral coefficient)."""
    if not 1 <= keep <= n_mels:
        raise ValueError(f"keep must be in 1..{n_mels}, got {keep}")
    k, n = np.arange(keep)[:, None], np.arange(n_mels)[None, :]
    dct = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    dct[0] /= np.sqrt(2.0)
    return dct


def lifter_matrix(n_mels: int, keep: int = LIFTER_KEEP) -> np.ndarray:
    """(n_mels, n_mels) float32 projection: orthonormal DCT-II, keep the first `keep` coefficients, invert."""
    dct = dct_matrix(n_mels, keep)
    return (dct.T @ dct).astype(np.float32)


class MelLifter(nn.Module):
    """Liftered log-mel: ``(B, n_mels, T) -> (B, n_mels, T)``, per frame (causal, stateless)."""

    def __init__(self, n_mels: int = 80, keep: int = LIFTER_KEEP) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.from_numpy(lifter_matrix(n_mels, keep)), persistent=False)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(n_mels, keep).astype(np.float32)), persistent=False)

    def forward(self, mel: Tensor) -> Tensor:
        """mel: (B, n_mels, T) -> (B, n_mels, T)."""
        return torch.matmul(self.matrix, mel)

    def cepstra(self, mel: Tensor) -> Tensor:
        """mel: (B, n_mels, T) -> (B, keep, T) the cepstral coefficients the lifter keeps."""
        return torch.matmul(self.dct, mel)


def spectral_basis(n_mels: int) -> np.ndarray:
    """(2, n_mels) float32 rows [1, u]: a level and a tilt over the mel bands, u the band index
    centred and scaled to [-0.5, 0.5] (the mel scale is close to log-frequency above 1 kHz, so u
    is a slope in dB per octave up to a constant). An emotion's loudness and spectral tilt are
    one combination of the rows in the log-mel: the generator's explicit spectral path
    (training/models/generator.py) and the training inputs' neutral spectrum
    (training/data/spectrum.py) use the same rows."""
    u = np.arange(n_mels) / max(n_mels - 1, 1) - 0.5
    return np.stack([np.ones(n_mels), u]).astype(np.float32)


def normalised_lf0(lf0: Tensor) -> Tensor:
    """Natural-log F0 (any shape) -> the networks' scale (LF0_CENTRE at 0)."""
    return (lf0 - LF0_CENTRE) / LF0_SCALE


def with_pitch(mel: Tensor, pitch: Tensor) -> Tensor:
    """The frame input of Ee and the vocoder's filter net: liftered log-mel (B, n_mels, T) and
    pitch (B, 2, T) [natural-log F0, voicing] -> (B, n_mels + 2, T)."""
    return torch.cat([mel, normalised_lf0(pitch[:, :1]), pitch[:, 1:2]], dim=1)
