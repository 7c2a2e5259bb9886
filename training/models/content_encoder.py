"""Content encoder Ec: causal liftered log-mel -> low-dimensional content features.

The content is what the generator keeps from the source (words, timing, voice); the
emotion comes from the reference. The input is liftered (training/models/frames.py), so
the pitch harmonics never reach the content; a narrow bottleneck (``out_dim``) leaves
little room for emotion, and the trainer's adversarial emotion classifier removes the rest.
"""

from __future__ import annotations

from torch import Tensor

from training.models.causal_stack import CausalStack
from training.models.frames import MelLifter
from training.models.streaming import State, StreamingModule


class ContentEncoder(StreamingModule):
    """Causal log-mel -> content: ``(B, n_mels, T) -> (B, out_dim, T)`` (lifter, then a CausalStack).

    State: the stack's.
    """

    def __init__(self, n_mels: int = 80, channels: int = 128, out_dim: int = 32, n_layers: int = 6,
                 kernel_size: int = 5, dilation_cycle: int = 4) -> None:
        super().__init__()
        self.lifter = MelLifter(n_mels)
        self.stack = CausalStack(n_mels, channels, out_dim, n_layers, kernel_size, dilation_cycle)
        self.out_dim = out_dim

    def forward(self, mel: Tensor) -> Tensor:
        """mel: (B, n_mels, T) log-mel -> content (B, out_dim, T)."""
        return self.stack(self.lifter(mel))

    def step(self, mel: Tensor, state: State) -> tuple[Tensor, State]:
        """mel: (B, n_mels, t) -> content (B, out_dim, t), new state."""
        return self.stack.step(self.lifter(mel), state)
