"""Generator G: causal content + source pitch + emotion embedding -> liftered log-mel, log-F0, voicing.

Every residual block is FiLM-conditioned on the emotion embedding (a per-channel scale
and shift from a linear map of the embedding), so the emotion acts on every layer while
the content path stays causal. The embedding is an input of ``step``, never state: the
engine may switch or crossfade it between blocks.

Pitch. The generator reads the engine tracker's features (engine/pitch.py) as the
contour's shape and the speaker's register: z = (lf0 - reg_mean) / reg_std, voicing, and
the register itself. Its log-F0 is the source's contour moved by the emotion, plus a
residual from the network::

    lf0 = reg_mean + shift(e) + exp(log_scale(e)) * reg_std * z + residual

shift and log_scale are a linear map of the embedding (zero at initialisation: the source's
pitch passes through), so an emotion's pitch level and range are one direct step from the
embedding, and linear in the strength knob (engine.pipeline: e_neutral + s (e_ref -
e_neutral)). The register (the speaker's identity) comes from the source. At step 1200 of
Stage I without this path, conversions to Surprise raised the pitch by 15 cents where the
targets are 490 cents higher.

Loudness and tilt. In the same way, the log-mel gets a level and a tilt that are a linear
map of the embedding (zero at initialisation)::

    mel = lifter(out + level(e) + tilt(e) u)

with [1, u] the rows of frames.spectral_basis, as the training inputs have the speaker's
neutral level and tilt (training/data/spectrum.py).

Source skip (``source_skip``). The log-mel can instead be the source's own (the content
encoder's input) plus the network's change, with a per-frame gate q that pulls the source toward
the log floor, so noise alone can come out silent whatever its level::

    mel = lifter(source - sigmoid(q) (source - log_floor) + out + level(e) + tilt(e) u)

The change's rows and the spectral map start at zero and the gate closed (``restart_mel_head``), so
an untrained skip passes the liftered source. The speaker's timbre and the words' spectral detail
then bypass the content bottleneck and the network learns what the emotion changes: without the
skip, the model shipped at commit 47f6fed converted 6.85 dB MCD from its targets (the unconverted
source: 3.61) and held-out voices kept a Resemblyzer similarity of 0.73 to their source; with it
4.89 dB and 0.83 (`evc bench quality`, README). Without the gate, the skip's Stage II ended 0.51
nepers of liftered L1 from silence on noise alone, with it 0.14. Not in the bundled recipe: through
noise and a room (`--degrade`) that model's emotion accuracy fell to 0.23 from 0.53 clean.

Source view (``source_input``). The network reads the content, from which the content encoder has
learnt to strip noise and room: with the skip alone it cannot see what the skip lets through. With
``source_input`` a causal conv of the liftered source log-mel is added to ``conv_pre``'s output, so
the change and the gate can undo the microphone's noise and room. Its weights start at zero, so a
Stage II that adds it starts from Stage I's generator.

Levelled source (``level_ref``). The skip would carry the microphone's level to the output, where
the emotion's loudness is a cue: training.models.level moves the source to ``level_ref`` (a
causal peak follower of the voiced frames, its state explicit) before the skip and the view read it.
With the view and a follower of every frame, from Stage II on, the bundled recipe's conversions came
5.36 dB MCD from their targets and held-out voices kept a similarity of 0.79, but DNSMOS OVRL fell to
2.00 and voicing agreement to 0.74, and through noise and a room accuracy still fell by 0.12 (0.49
to 0.37; without the follower 0.21; README): not in the recipe either.

Output rows (``Generator.forward``)::

    [0, n_mels)   liftered log-mel (training/models/frames.py)
    n_mels        natural-log F0 in Hz
    n_mels + 1    voicing logit
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.signal import SignalSpec
from training.models.frames import LF0_SCALE, MelLifter, normalised_lf0, spectral_basis
from training.models.level import LevelTracker
from training.models.streaming import CausalConv1d, FrameLayerNorm, State, StreamingModule, split_state

PITCH_IN = 4
"""Rows of the tracker's features (engine.pitch.FEATURES): voiced, lf0, reg_mean, reg_std."""
Z_LIMIT = 5.0
"""|z| is clipped: the register's spread is tiny for the first voiced frames of a stream."""

LRELU_SLOPE = 0.1
LOG_FLOOR = math.log(SignalSpec.log_floor)
QUIET_BIAS = -8.0
"""The source skip's quieting gate starts closed (sigmoid(-8) = 3e-4 of the way to the floor)."""


_NO_STATE = StreamingModule()
"""Stands in for an absent streaming member: no state."""


def film_params(film: nn.Linear, emotion: Tensor) -> tuple[Tensor, Tensor]:
    """Scale and shift ``(B, C, 1)`` from ``emotion: (B, D)``, or ``(B, C, T)`` from ``(B, D, T)``."""
    if emotion.dim() == 2:
        emotion = emotion.unsqueeze(-1)
    params = film(emotion.transpose(1, 2)).transpose(1, 2)
    # Slices, not chunk: chunk exports as Split, whose attributes differ between opsets.
    channels = film.out_features // 2
    return params[:, :channels], params[:, channels:]


class FiLMBlock(StreamingModule):
    """``x + W2 lrelu(conv_d(lrelu(FiLM(norm(x), e))))``, ``(B, C, T) -> (B, C, T)``.

    ``FiLM(h, e) = h * (1 + gamma(e)) + beta(e)``: the ``1 +`` makes a zero embedding map
    the identity. State: ``conv``'s.
    """

    def __init__(self, channels: int, emotion_dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = FrameLayerNorm(channels)
        self.film = nn.Linear(emotion_dim, 2 * channels)
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def _modulated(self, x: Tensor, emotion: Tensor) -> Tensor:
        gamma, beta = film_params(self.film, emotion)
        return F.leaky_relu(self.norm(x) * (1 + gamma) + beta, LRELU_SLOPE)

    def forward(self, x: Tensor, emotion: Tensor) -> Tensor:
        """x: (B, C, T), emotion: (B, D) or (B, D, T) -> (B, C, T)."""
        h = self.conv(self._modulated(x, emotion))
        return x + self.proj(F.leaky_relu(h, LRELU_SLOPE))

    def step(self, x: Tensor, emotion: Tensor, state: State) -> tuple[Tensor, State]:
        """x: (B, C, t), emotion: (B, D) -> (B, C, t), new state."""
        h, state = self.conv.step(self._modulated(x, emotion), state)
        return x + self.proj(F.leaky_relu(h, LRELU_SLOPE)), state


class Generator(StreamingModule):
    """Causal (content, pitch, emotion) -> frames: ``(B, content_dim, T), (B, 4, T), (B, D) -> (B, n_mels + 2, T)``.

    conv_pre (causal) over content and the pitch condition -> ``n_layers`` FiLM residual
    blocks with dilations 1, 2, 4, ... restarting every ``dilation_cycle`` layers -> per-frame
    norm -> linear 1x1 output (rows: see the module docstring). Offline, the emotion may
    also be given per frame, ``(B, emotion_dim, T)``: stepwise with a different embedding per
    block equals offline with those embeddings per frame.

    State order: ``conv_pre``, ``level`` (with ``level_ref``), ``source_pre`` (with ``source_input``),
    then ``blocks.0`` ... ``blocks.{n_layers-1}``.
    """

    def __init__(self, content_dim: int, emotion_dim: int, n_mels: int = 80, channels: int = 128,
                 n_layers: int = 6, kernel_size: int = 5, dilation_cycle: int = 4, source_skip: bool = False,
                 source_input: bool = False, level_ref: float | None = None) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.source_skip, self.source_input = source_skip, source_input
        self.conv_pre = CausalConv1d(content_dim + PITCH_IN, channels, kernel_size)
        self.level = LevelTracker(level_ref, LOG_FLOOR) if level_ref is not None else None
        if source_input:
            self.source_pre = CausalConv1d(n_mels, channels, kernel_size)
            nn.init.zeros_(self.source_pre.conv.weight)
            nn.init.zeros_(self.source_pre.conv.bias)
        self.blocks = nn.ModuleList(
            FiLMBlock(channels, emotion_dim, kernel_size, 2 ** (i % dilation_cycle)) for i in range(n_layers))
        self.norm = FrameLayerNorm(channels)
        self.proj = nn.Conv1d(channels, n_mels + 2, 1)
        self.lifter = MelLifter(n_mels)
        self.pitch_film = nn.Linear(emotion_dim, 2)  # (log_scale, shift) of the contour, see the module docstring
        self.spectral_film = nn.Linear(emotion_dim, 2)  # (level, tilt) of the log-mel, see the module docstring
        for film in (self.pitch_film, self.spectral_film):
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        self.register_buffer("basis", torch.from_numpy(spectral_basis(n_mels))[:, :, None], persistent=False)
        if source_skip:
            self.quiet = nn.Conv1d(channels, 1, 1)
            self.restart_mel_head()

    def restart_mel_head(self) -> None:
        """Zero the output rows of the log-mel and the spectral map (level, tilt) and close the quieting
        gate: with the source skip they are the change from the source, which starts at none (also for
        a Stage II starting from a Stage I without the skip, whose spectral map was learnt beside rows
        predicting the whole log-mel: kept, it put the first conversions 2.5 nepers from their targets)."""
        with torch.no_grad():
            self.proj.weight[: self.n_mels].zero_()
            self.proj.bias[: self.n_mels].zero_()
            self.spectral_film.weight.zero_()
            self.spectral_film.bias.zero_()
            self.quiet.weight.zero_()
            self.quiet.bias.fill_(QUIET_BIAS)

    @staticmethod
    def _needed(source: Tensor | None) -> Tensor:
        if source is None:
            raise ValueError("a generator with the source skip or the source view needs the source log-mel")
        return source

    @staticmethod
    def _z(pitch: Tensor) -> Tensor:
        return ((pitch[:, 1:2] - pitch[:, 2:3]) / pitch[:, 3:4]).clamp(-Z_LIMIT, Z_LIMIT)

    def _inputs(self, content: Tensor, pitch: Tensor) -> Tensor:
        """content (B, C, T) and the pitch condition: z, voicing, normalised register mean, log spread."""
        voiced, mean, std = pitch[:, 0:1], pitch[:, 2:3], pitch[:, 3:4]
        return torch.cat([content, self._z(pitch), voiced, normalised_lf0(mean), torch.log(std / LF0_SCALE)], dim=1)

    def _head(self, x: Tensor, pitch: Tensor, emotion: Tensor, source: Tensor | None) -> Tensor:
        h = F.leaky_relu(self.norm(x), LRELU_SLOPE)
        out = self.proj(h)
        n = self.n_mels
        log_scale, shift = film_params(self.pitch_film, emotion)
        contour = torch.exp(log_scale) * pitch[:, 3:4] * self._z(pitch)
        lf0 = pitch[:, 2:3] + LF0_SCALE * shift + contour + LF0_SCALE * out[:, n:n + 1]
        level, tilt = film_params(self.spectral_film, emotion)
        mel = out[:, :n] + level * self.basis[0] + tilt * self.basis[1]
        if self.source_skip:
            source = self._needed(source)
            mel = mel + source - torch.sigmoid(self.quiet(h)) * (source - LOG_FLOOR)
        return torch.cat([self.lifter(mel), lf0, out[:, n + 1:]], dim=1)

    def forward(self, content: Tensor, pitch: Tensor, emotion: Tensor, source: Tensor | None = None) -> Tensor:
        """content: (B, content_dim, T), pitch: (B, 4, T), emotion: (B, D) or (B, D, T), source: the
        content encoder's input log-mel (B, n_mels, T), read with the source skip or view -> (B, n_mels + 2, T)."""
        x = self.conv_pre(self._inputs(content, pitch))
        if self.level is not None:
            source = self.level(self._needed(source), pitch[:, 0:1])
        if self.source_input:
            x = x + self.source_pre(self.lifter(self._needed(source)))
        for block in self.blocks:
            x = block(x, emotion)
        return self._head(x, pitch, emotion, source)

    def step(self, content: Tensor, pitch: Tensor, emotion: Tensor, state: State,
             source: Tensor | None = None) -> tuple[Tensor, State]:
        """content: (B, content_dim, t), pitch: (B, 4, t), emotion: (B, D), source (B, n_mels, t) as in
        forward -> (B, n_mels + 2, t), new state."""
        s_pre, s_level, s_view, *s_blocks = split_state(state, [self.conv_pre, *self._source_modules(), *self.blocks])
        x, new_state = self.conv_pre.step(self._inputs(content, pitch), s_pre)
        if self.level is not None:
            source, s_level = self.level.step(self._needed(source), pitch[:, 0:1], s_level)
        if self.source_input:
            view, s_view = self.source_pre.step(self.lifter(self._needed(source)), s_view)
            x = x + view
        new_state = new_state + s_level + s_view
        for block, s in zip(self.blocks, s_blocks):
            x, s = block.step(x, emotion, s)
            new_state = new_state + s
        return self._head(x, pitch, emotion, source), new_state

    def _source_modules(self) -> list[StreamingModule]:
        """The level tracker and the view's conv, each replaced by a stateless stand-in when absent
        (so ``step`` slices the state the same way with and without them)."""
        return [self.level if self.level is not None else _NO_STATE,
                self.source_pre if self.source_input else _NO_STATE]


def split_frames(frames: Tensor, n_mels: int) -> tuple[Tensor, Tensor, Tensor]:
    """Generator output (B, n_mels + 2, T) -> mel (B, n_mels, T), lf0 (B, 1, T), voicing logit (B, 1, T)."""
    return frames[:, :n_mels], frames[:, n_mels:n_mels + 1], frames[:, n_mels + 1:n_mels + 2]


def frame_pitch(frames: Tensor, n_mels: int) -> Tensor:
    """Generator output -> (B, 2, T) log-F0 and voicing probability: what Ee reads and what the
    vocoder renders.

    The vocoder renders the generator's own voicing, not gated by the engine's pitch tracker.
    The gate (voiced only where the causal tracker finds the source voiced) guarded against a
    candidate generator that voiced loud noise; it also devoiced the frames the tracker misses,
    0.17 of those WORLD calls voiced and among them the contour's extremes. On the model shipped
    at commit a9d6a48, removing it raised DNSMOS OVRL from 2.05 to 2.19 and voicing agreement
    from 0.780 to 0.810 (`evc bench quality`, 504 trials), and white noise at -26 dBFS came out
    voiced in 0.00-0.05 of its frames against 0.00-0.15 gated."""
    _, lf0, logit = split_frames(frames, n_mels)
    return torch.cat([lf0, torch.sigmoid(logit)], dim=1)
