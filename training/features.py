"""The training log-mel frontend in torch: differentiable, batched, same numbers as the engine's.

Per the signal contract (engine.signal): frame k covers samples [(k+1)*hop - win, (k+1)*hop)
with zeros before sample 0, periodic Hann window, zero-padded to n_fft, magnitude of the
one-sided FFT, Slaney mel filterbank, log(max(mel, log_floor)). engine.features computes
the same features block by block for streaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.signal import SignalSpec, analysis_window, mel_filterbank


class LogMel(nn.Module):
    """Causal log-mel spectrogram: audio (B, N) -> (B, n_mels, N // hop).

    Samples of a trailing partial hop end no frame and are ignored. The window and
    filterbank are non-persistent buffers: rebuilt from the spec, never read from a
    checkpoint. Computes in the module's dtype (float32 unless converted, e.g. .double()).
    """

    def __init__(self, spec: SignalSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("window", torch.from_numpy(analysis_window(spec)), persistent=False)
        self.register_buffer("filterbank", torch.from_numpy(mel_filterbank(spec)), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        """audio: (B, N) float -> (B, n_mels, N // hop) log-mel, differentiable w.r.t. audio."""
        B, N = audio.shape
        spec = self.spec
        T = spec.n_frames(N)
        if T == 0:
            return audio.new_zeros(B, spec.n_mels, 0)
        # win - hop zeros on the left: frame 0 then ends at sample hop, as the engine's first frame does
        padded = F.pad(audio[:, : T * spec.hop], (spec.context, 0))
        frames = padded.unfold(-1, spec.win, spec.hop) * self.window  # (B, T, win)
        mag = torch.fft.rfft(frames, n=spec.n_fft).abs()  # (B, T, n_freqs)
        mel = torch.matmul(self.filterbank, mag.transpose(1, 2))  # (B, n_mels, T)
        return mel.clamp_min(spec.log_floor).log()


def log_mel(audio: Tensor, spec: SignalSpec) -> Tensor:
    """Log-mel of (N,) -> (n_mels, N // hop) or (B, N) -> (B, n_mels, N // hop), in audio's dtype and device."""
    frontend = LogMel(spec).to(device=audio.device, dtype=audio.dtype)
    if audio.dim() == 1:
        return frontend(audio[None])[0]
    return frontend(audio)
