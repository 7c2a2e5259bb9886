"""Causal source-filter vocoder: (log-mel, log-F0, voicing) -> waveform, ``hop`` samples per frame.

DDSP family (DDSP-SVC's combtooth subtractive synthesiser, SawSing, the neural homomorphic
vocoder). Per frame k, a small causal conv net reads the liftered log-mel and the pitch and
predicts two minimum-phase filters as real cepstra, one for a harmonic and one for a noise
excitation of hop k; each filtered hop is overlap-added::

    lf0, voicing ──► combtooth (phase carried) ─► DFT ─┐
                     noise (table, position carried) ─► DFT ─┤  × H_harm, × H_noise ─► IDFT ─► overlap-add ─► audio
    log-mel, pitch ─► lifter ─► CausalStack ─► cepstra ──► minimum-phase H_harm, H_noise   (tail carried)

Excitation. Per-sample F0 ramps linearly from frame k-1's value to frame k's across hop k
(no lookahead); the phase is its running sum, carried across blocks modulo 1. The combtooth
``sqrt(T0) * sinc(SR * phase / f0)``, phase taken in [-0.5, 0.5) cycles from the nearest
pulse, puts one band-limited pulse per period, scaled to unit
power like the unit-variance noise, so a filter's magnitude is the amplitude of the
spectral envelope it shapes, as in WORLD's synthesis (periodic part sqrt(sp (1 - ap^2)),
aperiodic part sqrt(sp) ap). Voicing ramps the harmonic excitation on and off the same way.

Filters. A causal cepstrum c_0..c_{K-1} gives the minimum-phase filter
``H(w) = exp(c_0 + 2 sum_q c_q exp(-i w q))``: its log-magnitude and phase are two fixed
matrix products, no FFT and no lifter needed, and it is stable by construction. The
log-magnitude is soft-capped (``cap - softplus(cap - x)``, linear below the cap, no floor)
so that an untrained net cannot blow up the output and silence can close completely.

Every transform is a fixed real matrix product (DFT of the hop, inverse DFT of the frame),
so the exported graph holds only MatMul, Conv and elementwise ops. Noise comes from a fixed
table indexed by a carried position, so the graph draws no random numbers and streaming
equals offline exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.signal import SignalSpec
from training.models.causal_stack import CausalStack
from training.models.frames import MelLifter, with_pitch
from training.models.streaming import State, StreamingModule, split_state

NOISE_TABLE = 1 << 16
"""Samples of fixed Gaussian noise (4 s at 16 kHz) cycled by the noise excitation."""
F0_RANGE = (40.0, 1000.0)
"""Hz the excitation is clamped to: a wild prediction cannot produce a zero or huge period."""


def _dft_matrices(n_fft: int, hop: int, order: int) -> dict[str, Tensor]:
    """Fixed real matrices of the synthesiser, float32.

    dft (hop, 2F): [cos | -sin] of a hop's samples (zero-padded to n_fft) at F = n_fft // 2 + 1 bins;
    idft_re, idft_im (F, n_fft): real inverse DFT of a one-sided spectrum; ceps_cos, ceps_sin (order, F):
    the causal-cepstrum weights (1, 2, 2, ...) times cos and sin of w q.
    """
    bins = n_fft // 2 + 1
    w = 2 * math.pi * torch.arange(bins, dtype=torch.float64) / n_fft
    n = torch.arange(n_fft, dtype=torch.float64)
    hop_angle = torch.outer(n[:hop], w)
    dft = torch.cat([torch.cos(hop_angle), -torch.sin(hop_angle)], dim=1)
    scale = torch.full((bins, 1), 2.0 / n_fft, dtype=torch.float64)
    scale[0], scale[-1] = 1.0 / n_fft, 1.0 / n_fft
    angle = torch.outer(w, n)
    q = torch.arange(order, dtype=torch.float64)
    weight = torch.where(q == 0, 1.0, 2.0)[:, None]
    mats = {"dft": dft, "idft_re": scale * torch.cos(angle), "idft_im": -scale * torch.sin(angle),
            "ceps_cos": weight * torch.cos(torch.outer(q, w)), "ceps_sin": weight * torch.sin(torch.outer(q, w))}
    return {k: v.float() for k, v in mats.items()}


class SourceFilter(StreamingModule):
    """The DSP half: cepstra and pitch -> audio, no parameters.

    ``forward(cepstra (B, 2 * order, T), lf0 (B, 1, T), voicing (B, 1, T)) -> audio (B, T * hop)``;
    cepstra hold the harmonic filter's ``order`` coefficients, then the noise filter's.
    State: phase (B, 1) in cycles, previous log-F0 (B, 1) (0 at the start: use the first
    frame's), previous voicing (B, 1), noise position (B, 1), overlap-add tail (B, n_fft - hop).
    """

    def __init__(self, order: int = 128, n_fft: int = 512, hop: int = SignalSpec.hop,
                 sample_rate: int = SignalSpec.sample_rate, log_amp_cap: float = 2.0) -> None:
        super().__init__()
        if not hop <= n_fft or order > n_fft // 2:
            raise ValueError(f"need hop <= n_fft and order <= n_fft // 2, got hop {hop}, n_fft {n_fft}, order {order}")
        self.order, self.n_fft, self.hop, self.sample_rate, self.cap = order, n_fft, hop, sample_rate, log_amp_cap
        for name, mat in _dft_matrices(n_fft, hop, order).items():
            self.register_buffer(name, mat, persistent=False)
        gen = torch.Generator().manual_seed(20261203)
        self.register_buffer("noise", torch.randn(NOISE_TABLE, generator=gen), persistent=False)
        self.register_buffer("ramp", (torch.arange(1, hop + 1) / hop).float(), persistent=False)

    def state_shapes(self, batch_size: int = 1) -> list[tuple[int, ...]]:
        return [(batch_size, 1)] * 4 + [(batch_size, self.n_fft - self.hop)]

    def state_names(self, prefix: str = "") -> list[str]:
        return [f"{prefix}{n}" for n in ("phase", "lf0", "voicing", "noise_pos", "tail")]

    def forward(self, cepstra: Tensor, lf0: Tensor, voicing: Tensor, noise_start: Tensor | None = None) -> Tensor:
        """cepstra (B, 2*order, T), lf0 and voicing (B, 1, T) -> audio (B, T * hop), from a zero state.

        noise_start: (B, 1) table positions (training draws them at random); zeros by default.
        """
        state = self.init_state(cepstra.shape[0], cepstra.device, cepstra.dtype)
        if noise_start is not None:
            state[3] = noise_start.to(cepstra.dtype)
        return self.step(cepstra, lf0, voicing, state)[0]

    def step(self, cepstra: Tensor, lf0: Tensor, voicing: Tensor, state: State) -> tuple[Tensor, State]:
        """One block of t frames: (B, 2*order, t), (B, 1, t), (B, 1, t) -> audio (B, t * hop), new state."""
        phase, lf0_prev, v_prev, pos, tail = state
        harm, phase, lf0_last, v_last = self._harmonic(lf0[:, 0], voicing[:, 0], phase, lf0_prev, v_prev)
        noise, pos = self._noise(pos, lf0.shape[-1])
        h_harm, h_noise = self._filters(cepstra)
        harm_spec, noise_spec = _cmul(self._dft(harm), h_harm), _cmul(self._dft(noise), h_noise)
        spec = harm_spec[0] + noise_spec[0], harm_spec[1] + noise_spec[1]  # (real, imag): tuples, not tensors
        frames = torch.matmul(spec[0], self.idft_re) + torch.matmul(spec[1], self.idft_im)  # (B, t, n_fft)
        audio, tail = self._overlap_add(frames, tail)
        return audio, [phase, lf0_last, v_last, pos, tail]

    def _harmonic(self, lf0: Tensor, voicing: Tensor, phase: Tensor, lf0_prev: Tensor, v_prev: Tensor):
        """Combtooth hops (B, t, hop) and the new phase, last log-F0 and last voicing, each (B, 1).

        The phase path runs in float64 and the carried phase is rounded to float32 at every hop,
        offline and stepwise alike: a pulse train integrates its phase, so float32 rounding
        that differs between two implementations (torch and ONNX Runtime order sums
        differently) would shift later pulses and the audio with them.
        """
        f64 = torch.float64
        lf0_prev = torch.where(lf0_prev > 0, lf0_prev, lf0[:, :1])  # a zero state: no previous frame
        lf0_from = torch.cat([lf0_prev, lf0[:, :-1]], dim=1)
        v_from = torch.cat([v_prev, voicing[:, :-1]], dim=1)
        f0, f0_from = (torch.exp(x.to(f64)).clamp(*F0_RANGE) for x in (lf0, lf0_from))
        ramp = self.ramp.to(f64)
        f = f0_from[..., None] + (f0 - f0_from)[..., None] * ramp  # (B, t, hop) Hz per sample
        gate = v_from[..., None] + (voicing - v_from)[..., None] * self.ramp
        rise = torch.cumsum(f / self.sample_rate, dim=-1)  # cycles since the hop's start
        starts = []
        for k in range(f.shape[1]):
            starts.append(phase.to(f64))
            phase = _frac(phase.to(f64) + rise[:, k, -1:]).to(lf0.dtype)
        # Cycles from the nearest pulse, in [-0.5, 0.5): both lobes of each pulse's sinc are
        # kept, so a pulse between two samples is interpolated, not lost (as with frac alone).
        cycles = _frac(torch.stack(starts, dim=1) + rise + 0.5) - 0.5
        period = self.sample_rate / f
        comb = (_sinc(cycles * period) * torch.sqrt(period)).to(lf0.dtype)
        return gate * comb, phase, lf0[:, -1:], voicing[:, -1:]

    def _noise(self, pos: Tensor, frames: int) -> tuple[Tensor, Tensor]:
        """Noise hops (B, t, hop) read from the table at pos, and the new position (B, 1)."""
        n = frames * self.hop
        index = _wrap(pos + torch.arange(n, device=pos.device, dtype=pos.dtype), NOISE_TABLE)
        noise = self.noise[index.long()].reshape(pos.shape[0], frames, self.hop)
        return noise, _wrap(pos + n, NOISE_TABLE)

    def _dft(self, hops: Tensor) -> tuple[Tensor, Tensor]:
        """hops (B, t, hop) zero-padded to n_fft -> (real, imag) spectra, each (B, t, F)."""
        spec = torch.matmul(hops, self.dft)
        bins = self.n_fft // 2 + 1
        return spec[..., :bins], spec[..., bins:]

    def _filters(self, cepstra: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """cepstra (B, 2*order, t) -> harmonic and noise filters, each (real, imag) (B, t, F)."""
        c = cepstra.transpose(1, 2)  # (B, t, 2*order)
        out = []
        for part in (c[..., : self.order], c[..., self.order:]):
            log_amp = torch.matmul(part, self.ceps_cos)
            log_amp = self.cap - F.softplus(self.cap - log_amp)
            angle = -torch.matmul(part, self.ceps_sin)
            amp = torch.exp(log_amp)
            out.append((amp * torch.cos(angle), amp * torch.sin(angle)))
        return out[0], out[1]

    def _overlap_add(self, frames: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """frames (B, t, n_fft) starting hop apart, plus the carried tail -> audio (B, t*hop), new tail.

        Each frame is cut into hop-long pieces; piece j of frame k lands on hop k + j. Shifted
        adds rather than F.fold, whose ONNX form (Col2Im) needs opset 18.
        """
        B, T, _ = frames.shape
        # From the module's ints, not the traced shape: the exporter turns shape arithmetic into
        # tensor ops, and a negative floor division there truncates.
        N, hop = self.n_fft, self.hop
        pieces = math.ceil(N / hop)
        summed = 0
        for j in range(pieces):
            piece = _zero_padded(frames[..., j * hop:(j + 1) * hop], 2, 0, hop - min(hop, N - j * hop))
            summed = summed + _zero_padded(piece, 1, j, pieces - 1 - j)  # (B, T + pieces - 1, hop)
        summed = summed.reshape(B, -1)[:, : (T - 1) * hop + N]
        summed = summed + _zero_padded(tail, 1, 0, summed.shape[1] - tail.shape[1])
        return summed[:, : T * hop], summed[:, T * hop:]


def _zero_padded(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """x with zeros concatenated before and after along dim. Not F.pad: its export at opset 17
    padded the wrong axis here; and no empty block, which the tracer cannot size."""
    def zeros(n: int) -> list[Tensor]:
        shape = list(x.shape)
        shape[dim] = n
        return [x.new_zeros(shape)] if n > 0 else []
    return torch.cat([*zeros(before), x, *zeros(after)], dim=dim)


def _cmul(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


# The three below are spelled out in floor, sin and where because the ONNX exporter has no
# form of torch.frac, torch.sinc or a float torch.remainder at opset 17.
def _frac(x: Tensor) -> Tensor:
    return x - torch.floor(x)


def _wrap(x: Tensor, period: int) -> Tensor:
    """x modulo period, for x >= 0."""
    return x - torch.floor(x / period) * period


def _sinc(x: Tensor) -> Tensor:
    """sin(pi x) / (pi x), 1 at 0."""
    tiny = torch.full_like(x, 1e-9)
    safe = torch.where(x.abs() < 1e-9, tiny, x) * math.pi
    return torch.sin(safe) / safe


class SourceFilterVocoder(StreamingModule):
    """(log-mel, pitch) -> audio: ``(B, n_mels, T), (B, 2, T) -> (B, 1, T * hop)``.

    pitch rows: natural-log F0 in Hz (held through unvoiced frames), voicing in [0, 1].
    The filter net (lifter -> CausalStack) predicts both filters' cepstra from the liftered
    log-mel, the normalised log-F0 and the voicing; SourceFilter renders them.
    State: the filter net's, then the synthesiser's.
    """

    def __init__(self, n_mels: int = 80, channels: int = 128, n_layers: int = 5, kernel_size: int = 3,
                 order: int = 128, n_fft: int = 512, hop: int = SignalSpec.hop,
                 sample_rate: int = SignalSpec.sample_rate) -> None:
        super().__init__()
        self.lifter = MelLifter(n_mels)
        self.net = CausalStack(n_mels + 2, channels, 2 * order, n_layers, kernel_size)
        self.synth = SourceFilter(order, n_fft, hop, sample_rate)
        self.hop = hop

    def cepstra(self, mel: Tensor, pitch: Tensor) -> Tensor:
        """mel (B, n_mels, T), pitch (B, 2, T) -> the filters' cepstra (B, 2 * order, T), offline."""
        return self.net(self._inputs(mel, pitch))

    def _inputs(self, mel: Tensor, pitch: Tensor) -> Tensor:
        return with_pitch(self.lifter(mel), pitch)

    def forward(self, mel: Tensor, pitch: Tensor, noise_start: Tensor | None = None) -> Tensor:
        """mel (B, n_mels, T), pitch (B, 2, T) -> audio (B, 1, T * hop)."""
        audio = self.synth(self.cepstra(mel, pitch), pitch[:, :1], pitch[:, 1:2], noise_start)
        return audio[:, None]

    def step(self, mel: Tensor, pitch: Tensor, state: State) -> tuple[Tensor, State]:
        """mel (B, n_mels, t), pitch (B, 2, t) -> audio (B, 1, t * hop), new state."""
        s_net, s_synth = split_state(state, [self.net, self.synth])
        cepstra, s_net = self.net.step(self._inputs(mel, pitch), s_net)
        audio, s_synth = self.synth.step(cepstra, pitch[:, :1], pitch[:, 1:2], s_synth)
        return audio[:, None], [*s_net, *s_synth]
