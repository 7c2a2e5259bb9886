"""The engine's numba log-mel frontend against a float64 numpy reference; runs without torch."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from numba import njit

from engine.features import StreamingLogMel, fft_tables, irfft_into, log_mel_block, log_mel_offline, rfft_into
from engine.signal import SignalSpec, analysis_window, mel_filterbank


def reference_log_mel(audio: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """The signal contract written out in float64: audio (N,) -> (n_mels, N // hop) float64."""
    n = spec.n_frames(audio.size)
    padded = np.concatenate([np.zeros(spec.context), audio[: n * spec.hop].astype(np.float64)])
    starts = np.arange(n) * spec.hop
    frames = padded[starts[:, None] + np.arange(spec.win)] * analysis_window(spec).astype(np.float64)
    mag = np.abs(np.fft.rfft(frames, n=spec.n_fft, axis=-1))
    mel = mel_filterbank(spec).astype(np.float64) @ mag.T
    return np.log(np.maximum(mel, spec.log_floor))


def silent_frames(audio: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(N // hop,) bool: frames whose whole window (zero padding included) is exactly zero."""
    n = spec.n_frames(audio.size)
    padded = np.concatenate([np.zeros(spec.context), audio[: n * spec.hop]])
    return np.array([not padded[k * spec.hop : k * spec.hop + spec.win].any() for k in range(n)])


def stream(frontend: StreamingLogMel, audio: np.ndarray, block_frames: int) -> np.ndarray:
    """Concatenated process() outputs over whole blocks of audio: (n_mels, T) float32."""
    size = block_frames * frontend.spec.hop
    blocks = audio[: audio.size // size * size].reshape(-1, size)
    return np.concatenate([frontend.process(b).copy() for b in blocks], axis=1)


@pytest.fixture
def noisy(speech: np.ndarray) -> np.ndarray:
    """Speech plus noise: loud from sample 0 on (frame 0 is mostly zero padding), never silent."""
    rng = np.random.default_rng(1)
    return (speech + 0.05 * rng.standard_normal(speech.size)).astype(np.float32)


@pytest.mark.parametrize("n_fft", [2, 8, 64, 1024, 4096])
def test_rfft_matches_numpy(n_fft: int) -> None:
    x = np.random.default_rng(n_fft).standard_normal(n_fft)
    rev, tw_half, tw_full = fft_tables(n_fft)
    spectrum = np.empty(n_fft // 2 + 1, np.complex128)
    rfft_into(x, rev, tw_half, tw_full, np.empty(n_fft // 2, np.complex128), spectrum)
    expected = np.fft.rfft(x)
    assert np.abs(spectrum - expected).max() <= 1e-12 * np.abs(expected).max()


@pytest.mark.parametrize("n_fft", [2, 8, 64, 1024, 4096])
def test_irfft_matches_numpy_and_inverts_rfft(n_fft: int) -> None:
    """Any one-sided spectrum whose DC and Nyquist bins are real (the spectra of real signals;
    numpy drops their imaginary parts) comes back as numpy's irfft; rfft then irfft is x."""
    rng = np.random.default_rng(n_fft)
    rev, tw_half, tw_full = fft_tables(n_fft)
    z, x = np.empty(n_fft // 2, np.complex128), np.empty(n_fft)
    spectrum = rng.standard_normal(n_fft // 2 + 1) + 1j * rng.standard_normal(n_fft // 2 + 1)
    spectrum[0], spectrum[-1] = spectrum[0].real, spectrum[-1].real
    irfft_into(spectrum, rev, tw_half, tw_full, z, x)
    expected = np.fft.irfft(spectrum, n_fft)
    assert np.abs(x - expected).max() <= 1e-12 * np.abs(expected).max()
    signal = rng.standard_normal(n_fft)
    irfft_into(np.fft.rfft(signal), rev, tw_half, tw_full, z, x)
    assert np.abs(x - signal).max() <= 1e-12 * np.abs(signal).max()


@pytest.mark.parametrize("n_fft", [0, 1, 6, 1000])
def test_fft_tables_reject_non_powers_of_two(n_fft: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        fft_tables(n_fft)


def test_offline_matches_float64_reference(spec: SignalSpec, speech: np.ndarray) -> None:
    got = log_mel_offline(speech, spec)
    assert got.shape == (spec.n_mels, speech.size // spec.hop) and got.dtype == np.float32
    # float32 rounding of values up to |log(1e-5)| = 11.5 is ~5e-7
    assert np.abs(got - reference_log_mel(speech, spec)).max() < 2e-6


def test_offline_ignores_trailing_partial_hop(spec: SignalSpec, speech: np.ndarray) -> None:
    n = 10 * spec.hop
    assert np.array_equal(log_mel_offline(speech[: n + 77], spec), log_mel_offline(speech[:n], spec))
    assert log_mel_offline(speech[: spec.hop - 1], spec).shape == (spec.n_mels, 0)


def test_future_samples_do_not_change_past_frames(spec: SignalSpec, speech: np.ndarray) -> None:
    edited = speech.copy()
    edited[20 * spec.hop :] = 0.5
    before, after = log_mel_offline(speech, spec), log_mel_offline(edited, spec)
    assert np.array_equal(before[:, :20], after[:, :20])
    assert np.abs(before[:, 20] - after[:, 20]).max() > 1.0


@pytest.mark.parametrize("signal", ["speech", "noisy"])
@pytest.mark.parametrize("block_frames", [1, 2, 3, 8])
def test_streaming_matches_offline_and_reference(
    spec: SignalSpec, block_frames: int, signal: str, request: pytest.FixtureRequest
) -> None:
    audio = request.getfixturevalue(signal)
    got = stream(StreamingLogMel(spec), audio, block_frames)
    t = got.shape[1]
    assert t == audio.size // (block_frames * spec.hop) * block_frames
    assert np.abs(got - log_mel_offline(audio, spec)[:, :t]).max() < 1e-6
    assert np.abs(got - reference_log_mel(audio, spec)[:, :t]).max() < 2e-6
    silent = silent_frames(audio, spec)[:t]
    assert np.abs(got[:, silent] - np.log(spec.log_floor)).max(initial=0.0) < 1e-6
    if signal == "speech":
        assert silent[:10].all() and silent.sum() > 10, "the fixture should start with 0.1 s of silence"


def test_reset_makes_a_second_pass_identical(spec: SignalSpec, noisy: np.ndarray) -> None:
    frontend = StreamingLogMel(spec)
    first = stream(frontend, noisy, 2)
    carried = stream(frontend, noisy, 2)
    assert not np.array_equal(first[:, :3], carried[:, :3]), "the state should carry over without reset"
    frontend.reset()
    assert np.array_equal(stream(frontend, noisy, 2), first)


def test_process_reuses_its_buffers(spec: SignalSpec, speech: np.ndarray) -> None:
    frontend = StreamingLogMel(spec)
    block = speech[: spec.block_samples]
    assert frontend.process(block) is frontend.process(block)
    out = np.empty((spec.n_mels, 3), np.float32)
    assert frontend.process(speech[: 3 * spec.hop], out=out) is out


def test_process_rejects_bad_blocks(spec: SignalSpec) -> None:
    frontend = StreamingLogMel(spec)
    with pytest.raises(TypeError):
        frontend.process(np.zeros(spec.hop, np.float64))
    for bad in (np.zeros(spec.hop + 1, np.float32), np.zeros(0, np.float32), np.zeros((2, spec.hop), np.float32)):
        with pytest.raises(ValueError):
            frontend.process(bad)
    with pytest.raises(ValueError):
        frontend.process(np.zeros(spec.hop, np.float32), out=np.empty((spec.n_mels, 2), np.float32))


def test_process_allocates_no_python_memory(spec: SignalSpec, speech: np.ndarray) -> None:
    frontend = StreamingLogMel(spec)
    blocks = list(speech.reshape(-1, spec.block_samples)) * 2
    out3 = np.empty((spec.n_mels, 3), np.float32)
    block3 = speech[: 3 * spec.hop]
    frontend.process(block3, out=out3)
    results = [None] * len(blocks)  # holding every result makes a fresh array per call show as growth
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, block in enumerate(blocks):
            results[i] = frontend.process(block)
            frontend.process(block3, out=out3)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1024, f"{grown} bytes still allocated after {2 * len(blocks)} process() calls"
    assert all(r is results[0] for r in results)


@njit
def _repeat(reps, state, block, tables, work, out):
    for _ in range(reps):
        log_mel_block(state, block, tables, work, out)


def test_kernel_allocates_no_nrt_memory(spec: SignalSpec, speech: np.ndarray) -> None:
    """Arrays allocated in nopython mode bypass tracemalloc; numba's NRT counts them.

    Unboxing each array argument at a Python -> numba call counts as one NRT allocation,
    so the kernel is driven from a numba loop: its count must not depend on reps.
    """
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    from numba.core.runtime import rtsys

    if not hasattr(nrt, "memsys_enable_stats"):
        pytest.skip("this numba has no NRT allocation statistics")
    frontend = StreamingLogMel(spec)
    args = (frontend._state, speech[: spec.block_samples], frontend._tables, frontend._work, frontend._out)
    was_enabled = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    try:
        _repeat(1, *args)
        counts = []
        for reps in (1, 200):
            start = rtsys.get_allocation_stats()
            _repeat(reps, *args)
            end = rtsys.get_allocation_stats()
            counts.append(end.alloc - start.alloc)
            assert end.alloc - start.alloc == end.free - start.free, "NRT memory leaked"
        start = rtsys.get_allocation_stats()
        for _ in range(50):
            frontend.process(args[1])
        end = rtsys.get_allocation_stats()
    finally:
        if not was_enabled:
            nrt.memsys_disable_stats()
    assert counts[0] == counts[1], f"NRT allocations per call grow with calls: {counts}"
    assert end.alloc - start.alloc == end.free - start.free, "process() leaked NRT memory"


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys; from engine.features import StreamingLogMel; from engine.signal import SignalSpec; "
        "StreamingLogMel(SignalSpec()); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
