"""The signal contract shared by training, export and the engine.

One frozen dataclass, derived with exact arithmetic: a value that does not divide
evenly is a configuration error, never a silently rounded number.

Causal framing (no frame looks into the future)::

    samples  ...|--- win - hop (state) ---|-- hop --|
    frame k covers [(k+1)*hop - win, (k+1)*hop)
    frame 0 sees win - hop zeros on the left
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def exact_div(a: int, b: int, what: str) -> int:
    """a / b as an int; raises ValueError naming `what` when b does not divide a."""
    if b <= 0 or a % b:
        raise ValueError(f"{what}: {a} is not a positive multiple of {b}")
    return a // b


@dataclass(frozen=True)
class SignalSpec:
    """Sample rate, log-mel analysis and streaming block of every model and the engine."""

    sample_rate: int = 16000
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    hop: int = 160
    win: int = 640
    n_fft: int = 1024
    log_floor: float = 1e-5
    block_frames: int = 2
    lookahead_frames: int = 0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "hop", "win", "n_fft", "block_frames"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.lookahead_frames < 0:
            raise ValueError(f"lookahead_frames: must be >= 0, got {self.lookahead_frames}")
        exact_div(self.win, self.hop, "win")
        if self.n_fft < self.win:
            raise ValueError(f"n_fft: must be >= win ({self.win}), got {self.n_fft}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(f"f_max: need 0 <= f_min < f_max <= {self.sample_rate / 2}")

    @property
    def n_freqs(self) -> int:
        """Bins of a one-sided spectrum of n_fft points."""
        return self.n_fft // 2 + 1

    @property
    def context(self) -> int:
        """Past samples a frame needs beyond its own hop: the frontend's state length."""
        return self.win - self.hop

    @property
    def block_samples(self) -> int:
        return self.block_frames * self.hop

    @property
    def frame_rate(self) -> int:
        return exact_div(self.sample_rate, self.hop, "sample_rate / hop")

    @property
    def block_ms(self) -> float:
        return 1000.0 * self.block_samples / self.sample_rate

    @property
    def algorithmic_latency_ms(self) -> float:
        """Block plus lookahead; a vocoder overlap, if any, is added by the manifest."""
        return 1000.0 * (self.block_frames + self.lookahead_frames) * self.hop / self.sample_rate

    def n_frames(self, n_samples: int) -> int:
        """Complete causal frames in n_samples: frame k ends at sample (k+1)*hop."""
        return n_samples // self.hop

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> SignalSpec:
        return SignalSpec(**{**self.to_dict(), **changes})


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    lin = f / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(spec: SignalSpec) -> np.ndarray:
    """Slaney-normalised triangular mel filters, (n_mels, n_freqs) float32.

    The one filterbank both log-mel implementations (torch and numba) use.
    """
    freqs = np.linspace(0.0, spec.sample_rate / 2, spec.n_freqs)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(spec.f_min), _hz_to_mel(spec.f_max), spec.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def analysis_window(spec: SignalSpec) -> np.ndarray:
    """Periodic Hann window of `win` samples, (win,) float32."""
    n = np.arange(spec.win)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / spec.win)).astype(np.float32)


EMOTIONS: tuple[str, ...] = ("Neutral", "Angry", "Happy", "Sad", "Surprise")
"""ESD's emotion folders, in ESD's id-block order; index = class label."""
