"""The cepstral lifter every network reads the log-mel through (training/models/frames.py):
a fixed projection that keeps the spectral envelope and drops the harmonic ripple."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.models.frames import LIFTER_KEEP, MelLifter, lifter_matrix, normalised_lf0, with_pitch

N_MELS = 80
BANDS = np.arange(N_MELS)
# A smooth log-mel envelope (natural log): two formant bumps on a falling tilt.
ENVELOPE = -4 + 3 * np.exp(-((BANDS - 12) / 6) ** 2) + 2 * np.exp(-((BANDS - 35) / 8) ** 2) - 0.05 * BANDS


def test_lifter_is_a_symmetric_projection_of_rank_keep():
    """P @ P = P: liftering liftered frames (the generator's output, read again by the vocoder)
    changes nothing; symmetric (orthogonal projection) and of rank LIFTER_KEEP."""
    p = lifter_matrix(N_MELS).astype(np.float64)
    assert p.shape == (N_MELS, N_MELS)
    assert np.abs(p @ p - p).max() < 1e-6
    assert np.abs(p - p.T).max() < 1e-7
    assert np.trace(p) == pytest.approx(LIFTER_KEEP, abs=1e-4)
    assert np.linalg.matrix_rank(p, tol=1e-4) == LIFTER_KEEP


def test_the_lifters_cepstra_are_what_it_keeps():
    """cepstra(mel) are the kept DCT coefficients: orthonormal rows, and back through them is the lifter."""
    lifter = MelLifter(N_MELS)
    mel = torch.randn(2, N_MELS, 7)
    ceps = lifter.cepstra(mel)
    assert ceps.shape == (2, LIFTER_KEEP, 7)
    torch.testing.assert_close(lifter.dct @ lifter.dct.T, torch.eye(LIFTER_KEEP), atol=1e-5, rtol=0)
    torch.testing.assert_close(lifter.dct.T @ ceps, lifter(mel), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lifter.cepstra(lifter(mel)), ceps, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("keep", [0, N_MELS + 1])
def test_lifter_rejects_keep_out_of_range(keep: int):
    with pytest.raises(ValueError, match="keep"):
        lifter_matrix(N_MELS, keep)


@pytest.mark.parametrize("period", [2.2, 3.0, 4.0])
def test_lifter_removes_harmonic_ripple_and_keeps_the_envelope(period: float):
    """Harmonics F0 apart ripple the low mel bands (67 Hz wide below 1 kHz) with a period of
    F0 / 67 bands: 2.2-4 bands is F0 150-270 Hz. A ripple of 0.8 (7 dB) on bands 2-42
    comes out below 0.02 everywhere (measured 0.008-0.009) while the envelope alone moves by
    less than 0.01: the generator and Ee see the envelope, and pitch only through its own rows."""
    taper = np.where((BANDS >= 2) & (BANDS <= 42), np.sin(np.pi * (BANDS - 2) / 40) ** 2, 0.0)
    ripple = 0.8 * np.cos(2 * np.pi * BANDS / period) * taper
    lifter = MelLifter(N_MELS)
    frames = torch.tensor(np.stack([ENVELOPE, ENVELOPE + ripple], axis=1), dtype=torch.float32)[None]  # (1, 80, 2)
    with torch.no_grad():
        env_out, rippled_out = lifter(frames)[0].T.double().numpy()
    assert np.abs(env_out - ENVELOPE).max() < 0.01
    assert np.abs(rippled_out - ENVELOPE).max() < 0.02


def test_lifter_acts_on_each_frame_alone():
    torch.manual_seed(0)
    mel = torch.randn(2, N_MELS, 7)
    lifter = MelLifter(N_MELS)
    with torch.no_grad():
        whole = lifter(mel)
        one = lifter(mel[:, :, 3:4])
    assert (whole[:, :, 3:4] - one).abs().max() < 1e-6


def test_with_pitch_appends_normalised_log_f0_and_voicing():
    """150 Hz is 0 on the networks' scale and an octave is ln 2 / 0.5 = 1.386."""
    mel = torch.zeros(1, N_MELS, 3)
    pitch = torch.tensor([[[np.log(150.0), np.log(300.0), np.log(75.0)], [1.0, 0.5, 0.0]]], dtype=torch.float32)
    out = with_pitch(mel, pitch)
    assert out.shape == (1, N_MELS + 2, 3)
    assert torch.allclose(out[0, N_MELS], torch.tensor([0.0, 1.3863, -1.3863]), atol=1e-4)
    assert torch.equal(out[0, N_MELS + 1], pitch[0, 1])
    assert torch.allclose(normalised_lf0(pitch[:, :1]), out[:, N_MELS:N_MELS + 1])
