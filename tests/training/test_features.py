"""The torch log-mel frontend: shapes, gradients, and parity with the engine's numba frontend."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from engine.features import StreamingLogMel, log_mel_offline
from engine.signal import SignalSpec, mel_filterbank
from training.features import LogMel, log_mel


def stream(spec: SignalSpec, audio: np.ndarray, block_frames: int) -> np.ndarray:
    """The engine's features over whole blocks of audio: (n_mels, T) float32."""
    frontend = StreamingLogMel(spec)
    size = block_frames * spec.hop
    blocks = audio[: audio.size // size * size].reshape(-1, size)
    return np.concatenate([frontend.process(b).copy() for b in blocks], axis=1)


def silent_frames(audio: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(N // hop,) bool: frames whose whole window (zero padding included) is exactly zero."""
    n = spec.n_frames(audio.size)
    padded = np.concatenate([np.zeros(spec.context), audio[: n * spec.hop]])
    return np.array([not padded[k * spec.hop : k * spec.hop + spec.win].any() for k in range(n)])


@pytest.fixture
def noisy(speech: np.ndarray) -> np.ndarray:
    """Speech plus noise: loud from sample 0 on (frame 0 is mostly zero padding), never silent."""
    rng = np.random.default_rng(1)
    return (speech + 0.05 * rng.standard_normal(speech.size)).astype(np.float32)


def test_shapes_and_no_persistent_buffers(spec: SignalSpec) -> None:
    frontend = LogMel(spec)
    assert frontend(torch.zeros(3, 10 * spec.hop + 37)).shape == (3, spec.n_mels, 10)
    assert frontend(torch.zeros(2, spec.hop - 1)).shape == (2, spec.n_mels, 0)
    assert log_mel(torch.zeros(5 * spec.hop), spec).shape == (spec.n_mels, 5)
    assert frontend.state_dict() == {}


def test_filterbank_matches_librosa(spec: SignalSpec) -> None:
    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")
    got = mel_filterbank(spec)
    assert got.shape == expected.shape == (80, 513)
    assert np.abs(got - expected).max() < 1e-6


@pytest.mark.parametrize("signal", ["speech", "noisy"])
@pytest.mark.parametrize("block_frames", [1, 2, 3, 8])
def test_torch_matches_streaming_engine(
    spec: SignalSpec, block_frames: int, signal: str, request: pytest.FixtureRequest
) -> None:
    """float32 torch vs the engine's float64-internal kernels, block by block.

    A float32 FFT rounds to ~1e-7 of a frame's peak (mel peaks ~3 here: ~1e-6 absolute),
    which is ~1e-3 in log domain for a bin near the 1e-5 floor: the 1e-4 log-domain bound
    holds on bins above 100x the floor, and a linear-domain bound on all of them.
    """
    audio = request.getfixturevalue(signal)
    engine = stream(spec, audio, block_frames)
    T = engine.shape[1]
    torch32 = LogMel(spec)(torch.from_numpy(audio)[None])[0, :, :T].numpy()
    above_floor = engine > np.log(100 * spec.log_floor)
    assert above_floor.mean() > 0.4
    assert np.abs(torch32 - engine)[above_floor].max() < 1e-4
    assert np.abs(np.exp(torch32) - np.exp(engine)).max() < 3e-6
    silent = silent_frames(audio, spec)[:T]
    assert np.abs(torch32[:, silent] - np.log(spec.log_floor)).max(initial=0.0) < 1e-6
    if signal == "speech":
        assert silent[:10].all(), "the fixture starts with 0.1 s of silence"


def test_float64_torch_matches_engine_everywhere(spec: SignalSpec, noisy: np.ndarray) -> None:
    """In float64 the two implementations agree to float32 output rounding, near the floor too."""
    torch64 = LogMel(spec).double()(torch.from_numpy(noisy).double()[None])[0].numpy()
    assert np.abs(torch64 - log_mel_offline(noisy, spec)).max() < 2e-6


def test_future_samples_do_not_change_past_frames(spec: SignalSpec, speech: np.ndarray) -> None:
    audio = torch.from_numpy(speech)
    edited = audio.clone()
    edited[20 * spec.hop :] = 0.5
    before, after = log_mel(audio, spec), log_mel(edited, spec)
    assert torch.equal(before[:, :20], after[:, :20])
    assert (before[:, 20] - after[:, 20]).abs().max() > 1.0


def test_gradient_is_finite_through_silence(spec: SignalSpec, speech: np.ndarray) -> None:
    """Silent frames have an all-zero spectrum, where |z| has no derivative: it must not give NaN."""
    audio = torch.from_numpy(speech).requires_grad_(True)
    log_mel(audio, spec).mean().backward()
    assert torch.isfinite(audio.grad).all()
    # samples seen only by the silent frames 0..9 (0.1 s of zeros): the floor's clamp stops the gradient
    assert audio.grad[: int(0.1 * spec.sample_rate) - spec.context].abs().max() == 0
    assert audio.grad.abs().max() > 0
