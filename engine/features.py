"""The engine's log-mel frontend: numba kernels over preallocated arrays, no torch.

The same features as training.features.LogMel, per the signal contract (engine.signal):
frame k covers samples [(k+1)*hop - win, (k+1)*hop), zeros before sample 0; each frame
is multiplied by the periodic Hann window, zero-padded on the right to n_fft, and
reduced to log(max(mel_filterbank @ |rfft|, log_floor)), natural log.

Streaming keeps the last `context = win - hop` samples as state::

    |---- state (context) ----|-- hop --|-- hop --| ... block (n * hop)
    |--------- frame 0 (win) ---------|
              |--------- frame 1 (win) ---------|

Kernels compute in float64 and write float32: a float32 FFT loses ~1e-7 of a frame's
peak energy, which is 1e-3 in log domain for bins near the floor; float64 costs nothing
measurable here and keeps the engine on the float64 reference.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from engine.signal import SignalSpec, analysis_window, mel_filterbank


@njit(cache=True)
def _fft_bitreversed(z, twiddles):
    """In-place radix-2 complex FFT of z (m,) complex128, z already in bit-reversed order.

    twiddles: (m // 2,) complex128, exp(-2 pi i k / m).
    """
    m = z.size
    size = 2
    while size <= m:
        half = size // 2
        step = m // size
        for start in range(0, m, size):
            for j in range(half):
                t = twiddles[j * step] * z[start + j + half]
                u = z[start + j]
                z[start + j] = u + t
                z[start + j + half] = u - t
        size *= 2


@njit(cache=True)
def rfft_into(x, rev, tw_half, tw_full, z, spectrum):
    """One-sided FFT of x (n,) float64 into spectrum (n // 2 + 1,) complex128, like np.fft.rfft.

    n = 2m, a power of two. The real signal is packed as one complex signal of m points,
    z[j] = x[2j] + i x[2j + 1] (half the work of a full complex FFT), then the spectra of
    the even and odd samples are split apart and recombined. z (m,) complex128 is scratch;
    rev, tw_half, tw_full come from fft_tables(n).
    """
    m = z.size
    for j in range(m):
        z[rev[j]] = complex(x[2 * j], x[2 * j + 1])
    _fft_bitreversed(z, tw_half)
    for k in range(m + 1):
        a = z[k] if k < m else z[0]
        b = np.conj(z[m - k] if k > 0 else z[0])
        even = 0.5 * (a + b)
        odd = -0.5j * (a - b)
        spectrum[k] = even + tw_full[k] * odd


@njit(cache=True)
def irfft_into(spectrum, rev, tw_half, tw_full, z, x):
    """Inverse of rfft_into: x (n,) float64 := np.fft.irfft(spectrum (n // 2 + 1,) complex128, n).

    rfft_into backwards: the spectra of the even and odd samples are split out of the
    one-sided spectrum, recombined into the m-point spectrum of z[j] = x[2j] + i x[2j + 1],
    and z is recovered by a forward FFT of the conjugate (ifft(Z) = conj(fft(conj(Z))) / m).
    """
    m = z.size
    for k in range(m):
        a = spectrum[k]
        b = np.conj(spectrum[m - k])
        even = 0.5 * (a + b)
        odd = 0.5 * np.conj(tw_full[k]) * (a - b)
        z[rev[k]] = np.conj(even + 1j * odd)
    _fft_bitreversed(z, tw_half)
    for j in range(m):
        x[2 * j] = z[j].real / m
        x[2 * j + 1] = -z[j].imag / m


@njit(cache=True)
def _load_frame(state, block, start, window, frame):
    """frame[:win] = window * (state ++ block)[start : start + win]; frame[win:] stays zero."""
    ctx = state.size
    win = window.size
    split = min(win, max(0, ctx - start))
    for j in range(split):
        frame[j] = state[start + j] * window[j]
    for j in range(split, win):
        frame[j] = block[start + j - ctx] * window[j]


@njit(cache=True)
def _log_mel_column(spectrum, fb, fb_lo, fb_hi, log_floor, mag, out, col):
    """out[:, col] = log(max(fb @ |spectrum|, log_floor)); only fb's non-zero span per mel is summed."""
    for f in range(spectrum.size):
        mag[f] = np.sqrt(spectrum[f].real ** 2 + spectrum[f].imag ** 2)
    for m in range(fb.shape[0]):
        acc = 0.0
        for f in range(fb_lo[m], fb_hi[m]):
            acc += fb[m, f] * mag[f]
        out[m, col] = np.log(max(acc, log_floor))


@njit(cache=True)
def shift_history(state, block):
    """state (context,) := the last `context` samples of state ++ block, in place."""
    ctx = state.size
    nb = block.size
    if nb >= ctx:
        for i in range(ctx):
            state[i] = block[nb - ctx + i]
        return
    for i in range(ctx - nb):  # forward copy: each source sample is read before it is overwritten
        state[i] = state[i + nb]
    for i in range(nb):
        state[ctx - nb + i] = block[i]


@njit(cache=True)
def log_mel_block(state, block, tables, work, out):
    """Log-mel of the n frames ending in block, then advance state.

    state: (context,) float32, the samples before block (updated in place).
    block: (n * hop,) float32. out: (n_mels, n) float32.
    tables: (window (win,) float64, fb (n_mels, n_freqs) float64, fb_lo, fb_hi (n_mels,)
    int64 non-zero span of each filter, log_floor float, *fft_tables(n_fft)), see _tables.
    work: (frame (n_fft,) float64 with zero tail, z (n_fft // 2,) complex128,
    spectrum (n_freqs,) complex128, mag (n_freqs,) float64), see _work.
    """
    window, fb, fb_lo, fb_hi, log_floor, rev, tw_half, tw_full = tables
    frame, z, spectrum, mag = work
    hop = window.size - state.size
    for k in range(out.shape[1]):
        _load_frame(state, block, k * hop, window, frame)
        rfft_into(frame, rev, tw_half, tw_full, z, spectrum)
        _log_mel_column(spectrum, fb, fb_lo, fb_hi, log_floor, mag, out, k)
    shift_history(state, block)


def fft_tables(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables of rfft_into for n_fft points, m = n_fft // 2.

    Returns rev (m,) int64 bit-reversal permutation, tw_half (m // 2,) complex128
    exp(-2 pi i k / m), tw_full (m + 1,) complex128 exp(-2 pi i k / n_fft).
    """
    if n_fft < 2 or n_fft & (n_fft - 1):
        raise ValueError(f"n_fft: the radix-2 FFT needs a power of two >= 2, got {n_fft}")
    m = n_fft // 2
    bits = m.bit_length() - 1
    rev = np.array([int(format(j, f"0{bits}b")[::-1], 2) if bits else 0 for j in range(m)], np.int64)
    tw_half = np.exp(-2j * np.pi * np.arange(m // 2) / m)
    tw_full = np.exp(-2j * np.pi * np.arange(m + 1) / n_fft)
    return rev, tw_half, tw_full


@functools.lru_cache(maxsize=8)
def _tables(spec: SignalSpec) -> tuple:
    """Read-only `tables` of log_mel_block for spec (see its docstring), computed once per spec."""
    fb = mel_filterbank(spec).astype(np.float64)
    nonzero = fb > 0
    fb_lo = np.where(nonzero.any(1), nonzero.argmax(1), 0).astype(np.int64)
    fb_hi = np.where(nonzero.any(1), spec.n_freqs - nonzero[:, ::-1].argmax(1), 0).astype(np.int64)
    window = analysis_window(spec).astype(np.float64)
    arrays = (window, fb, fb_lo, fb_hi, *fft_tables(spec.n_fft))
    for a in arrays:
        a.flags.writeable = False
    return (window, fb, fb_lo, fb_hi, float(spec.log_floor), *arrays[4:])


def _work(spec: SignalSpec) -> tuple[np.ndarray, ...]:
    """Scratch `work` arrays of log_mel_block: frame, z, spectrum, mag (see its docstring)."""
    return (
        np.zeros(spec.n_fft, np.float64),
        np.zeros(spec.n_fft // 2, np.complex128),
        np.zeros(spec.n_freqs, np.complex128),
        np.zeros(spec.n_freqs, np.float64),
    )


def log_mel_offline(audio: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """Log-mel of a whole utterance: audio (N,) -> (n_mels, N // hop) float32.

    audio is cast to float32 first, as the stream is. Samples of a trailing partial hop
    (the last N % hop) end no frame and are ignored. Allocates its output and scratch;
    the streaming path is StreamingLogMel.
    """
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio: expected (N,), got shape {audio.shape}")
    n = spec.n_frames(audio.size)
    out = np.empty((spec.n_mels, n), np.float32)
    if n:
        state = np.zeros(spec.context, np.float32)
        log_mel_block(state, audio[: n * spec.hop], _tables(spec), _work(spec), out)
    return out


class StreamingLogMel:
    """Log-mel frames of a stream, block by block, allocating nothing per block.

    Concatenated over a stream, the outputs of process() equal log_mel_offline of the
    whole stream. The kernels are compiled (or loaded from numba's cache) at construction,
    not in the first audio callback.
    """

    def __init__(self, spec: SignalSpec) -> None:
        self.spec = spec
        self._tables = _tables(spec)
        self._work = _work(spec)
        self._state = np.zeros(spec.context, np.float32)
        self._out = np.zeros((spec.n_mels, spec.block_frames), np.float32)
        self.process(np.zeros(spec.block_samples, np.float32))
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next block starts a stream preceded by zeros."""
        self._state.fill(0.0)

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Log-mel of the frames ending in block: block (n * hop,) float32, n >= 1 -> (n_mels, n) float32.

        Written into `out` ((n_mels, n) float32, C-contiguous) when given. Otherwise, for
        n == spec.block_frames, into an internal buffer that the next call overwrites; for
        other n, into a new array. Strict dtypes and layouts keep numba from compiling a
        new specialisation mid-stream.
        """
        n = self._frames_in(block)
        if out is None:
            out = self._out if n == self.spec.block_frames else np.empty((self.spec.n_mels, n), np.float32)
        elif out.dtype != np.float32 or out.shape != (self.spec.n_mels, n) or not out.flags.c_contiguous:
            raise ValueError(f"out: expected C-contiguous ({self.spec.n_mels}, {n}) float32")
        log_mel_block(self._state, block, self._tables, self._work, out)
        return out

    def _frames_in(self, block: np.ndarray) -> int:
        """n for a block of (n * hop,) float32 samples, n >= 1; raises on anything else."""
        if not isinstance(block, np.ndarray) or block.dtype != np.float32:
            raise TypeError("block: expected a float32 numpy array")
        hop = self.spec.hop
        if block.ndim != 1 or block.size == 0 or block.size % hop or not block.flags.c_contiguous:
            raise ValueError(f"block: expected contiguous (n * {hop},) samples with n >= 1, got {block.shape}")
        return block.size // hop
