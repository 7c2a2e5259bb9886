"""Streaming protocol: causal modules that run offline (`forward`) and stepwise (`step`).

Protocol
--------
Every ``StreamingModule`` ``m`` offers, from the same weights:

- ``m.forward(x)``: offline, on a whole sequence ``x: (B, C, T)``; the past before
  frame 0 is zeros.
- ``m.init_state(batch_size=1, device=None, dtype=None) -> list[Tensor]``: the state at
  the start of a stream, all zeros, which is exactly the offline zero left-padding.
- ``m.step(x, state) -> (y, new_state)``: one block ``x: (B, C, t)``, any ``t >= 1``.
  A pure function: it never mutates module attributes or the tensors in ``state``, and
  returns a new list of the same length and shapes. Concatenating the outputs of
  successive steps over time equals ``m.forward`` on the concatenated inputs.
- ``m.state_shapes(batch_size=1) -> list[tuple[int, ...]]``: fixed for a batch size,
  never dependent on the block length, so an exported step graph can make every state
  tensor a named input/output of fixed shape.
- ``m.state_names(prefix="") -> list[str]``: one stable, unique, ONNX-safe name
  (``[A-Za-z0-9_]``) per state tensor, in state order.

State order. The state list is flat. A leaf (``CausalConv1d``, ``CausalUpsample``) holds
its own tensors. A composite's state is the concatenation of its streaming descendants'
states in *registration order*: the order of assignment in ``__init__``, searched
depth-first through plain containers such as ``nn.ModuleList``, stopping at the first
``StreamingModule`` on each path. Names are prefixed by the attribute path
(``stages.0.upsample`` -> ``stages_0_upsample_ctx``). A composite's ``step`` slices the
flat list with ``split_state(state, [children in that same order])``.

Stateless members of a composite (``nn.Conv1d`` with kernel 1, ``FrameLayerNorm``,
activations) act on each frame independently, so they run the same offline and stepwise.

Conditioned modules take their condition as an extra argument before the state, e.g.
``Generator.step(content, emotion, state)``: the engine may change the emotion
between blocks, so it is an input, not state.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = list[Tensor]


class StreamingModule(nn.Module):
    """Base of every causal module; see the module docstring for the protocol.

    Leaves override ``state_shapes``, ``state_names`` and ``step``; composites inherit
    ``state_shapes``/``state_names`` (their descendants', in registration order) and
    override ``step``.
    """

    def streaming_children(self) -> list[tuple[str, StreamingModule]]:
        """Nearest streaming descendants as (ONNX-safe path, module), in state order."""
        return list(_streaming_descendants(self, ""))

    def state_shapes(self, batch_size: int = 1) -> list[tuple[int, ...]]:
        return [s for _, child in self.streaming_children() for s in child.state_shapes(batch_size)]

    def state_names(self, prefix: str = "") -> list[str]:
        return [n for path, child in self.streaming_children() for n in child.state_names(f"{prefix}{path}_")]

    @property
    def n_states(self) -> int:
        return len(self.state_shapes(1))

    def init_state(self, batch_size: int = 1, device=None, dtype=None) -> State:
        """Zeros of ``state_shapes(batch_size)``; device and dtype default to the parameters'."""
        ref = next(self.parameters(), None)
        device = device if device is not None else (ref.device if ref is not None else None)
        dtype = dtype if dtype is not None else (ref.dtype if ref is not None else torch.float32)
        return [torch.zeros(s, device=device, dtype=dtype) for s in self.state_shapes(batch_size)]

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError(f"{type(self).__name__} does not implement step")


def _streaming_descendants(module: nn.Module, path: str) -> Iterator[tuple[str, StreamingModule]]:
    for name, child in module.named_children():
        if isinstance(child, StreamingModule):
            yield f"{path}{name}", child
        else:
            yield from _streaming_descendants(child, f"{path}{name}_")


def split_state(state: Sequence[Tensor], modules: Sequence[StreamingModule]) -> list[State]:
    """Slice a flat state list into one list per module, by each module's ``n_states``.

    ``modules`` must be in the owner's registration order; raises ValueError when the
    total count differs from ``len(state)``.
    """
    counts = [m.n_states for m in modules]
    if sum(counts) != len(state):
        raise ValueError(f"state has {len(state)} tensors, the modules take {sum(counts)} ({counts})")
    bounds = list(itertools.accumulate(counts, initial=0))
    return [list(state[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


class CausalConv1d(StreamingModule):
    """Conv1d that sees only the present and the past: ``(B, C_in, T) -> (B, C_out, T)``.

    Causal padding, kernel k, dilation d, context ``ctx = (k - 1) * d``::

        offline   |0 0 .. 0|x0 x1 x2 x3 x4 ...   left-pad ctx zeros, nothing on the right
                   \\_ctx__/
        output             y0 y1 y2 y3 y4 ...   y_t reads x_{t-ctx} .. x_t, never x_{t+1}

        stepwise  |state = last ctx inputs|x_block|  -> conv -> y_block  (block length t)
                  new state = last ctx columns of [state | x_block]

    State: ``[(B, C_in, ctx)]``, or ``[]`` when ``ctx == 0`` (kernel 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups,
                              bias=bias)
        self.context = (kernel_size - 1) * dilation

    def state_shapes(self, batch_size: int = 1) -> list[tuple[int, ...]]:
        return [(batch_size, self.conv.in_channels, self.context)] if self.context else []

    def state_names(self, prefix: str = "") -> list[str]:
        return [f"{prefix}ctx"] if self.context else []

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, T) -> (B, C_out, T)."""
        return self.conv(F.pad(x, (self.context, 0)))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C_in, t), state: [(B, C_in, ctx)] -> (B, C_out, t), new state."""
        if not self.context:
            return self.conv(x), []
        (past,) = state
        full = torch.cat([past, x], dim=-1)
        return self.conv(full), [full[..., -self.context:]]


class CausalUpsample(StreamingModule):
    """Upsample by an integer ``rate`` r, causally: ``(B, C_in, T) -> (B, C_out, T * r)``.

    A ConvTranspose1d(kernel 2r, stride r) spreads input frame t over output samples
    ``[t*r, t*r + 2r)``. Output block t (samples ``[t*r, (t+1)*r)``) therefore gets
    ``w[:r]`` from x_t and ``w[r:]`` from x_{t-1}; the tail that would need x_{t+1} is cut::

        x_{t-1}  |== w[:r] ==|== w[r:] ==|
        x_t                  |== w[:r] ==|== w[r:] ==|      <- cut: belongs to block t+1
        output   | block t-1 |  block t  |

    State: ``[(B, C_in, 1)]``, the previous input frame.
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, 2 * rate, stride=rate)

    def state_shapes(self, batch_size: int = 1) -> list[tuple[int, ...]]:
        return [(batch_size, self.conv.in_channels, 1)]

    def state_names(self, prefix: str = "") -> list[str]:
        return [f"{prefix}ctx"]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, T) -> (B, C_out, T * rate); the frame before x_0 is zero."""
        B, C, T = x.shape
        return self.conv(x)[..., : T * self.rate]

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C_in, t), state: [(B, C_in, 1)] -> (B, C_out, t * rate), new state."""
        B, C, T = x.shape
        (past,) = state
        full = torch.cat([past, x], dim=-1)
        # Output block 0 of `full` belongs to `past`, already emitted by the previous step.
        return self.conv(full)[..., self.rate: (T + 1) * self.rate], [full[..., -1:]]


class StreamingSequential(StreamingModule):
    """Modules applied in order, offline and stepwise.

    Members that are not ``StreamingModule`` must act on each frame independently
    (activations, 1x1 convs, ``FrameLayerNorm``). State: the members' states in order.
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def streaming_children(self) -> list[tuple[str, StreamingModule]]:
        # Skip the "layers_" level so names read stages_0_..., not stages_layers_0_...
        return [(path.removeprefix("layers_"), m) for path, m in super().streaming_children()]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C', T') as the members make it."""
        for layer in self.layers:
            x = layer(x)
        return x

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        streaming = [m for m in self.layers if isinstance(m, StreamingModule)]
        states = iter(split_state(state, streaming))
        new_state: State = []
        for layer in self.layers:
            if isinstance(layer, StreamingModule):
                x, s = layer.step(x, next(states))
                new_state += s
            else:
                x = layer(x)
        return x, new_state


class FrameLayerNorm(nn.Module):
    """LayerNorm over channels, per frame: ``(B, C, T) -> (B, C, T)``.

    Each frame is normalised on its own, so it is causal (unlike instance norm over time).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)
