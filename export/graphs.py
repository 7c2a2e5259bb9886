"""The two exported graphs as small wrapper modules around the training networks.

The wrappers only call the networks' own ``step``/``forward``: nothing in training/ is
patched for export. Their ``forward`` signatures are the graphs' signatures.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.generator import frame_pitch
from training.models.prosody import ProsodyMove
from training.models.streaming import StreamingModule, split_state

STATE_PREFIXES = {"content_encoder": "ec_", "generator": "gen_", "prosody": "pm_", "vocoder": "voc_"}


class StepGraph(nn.Module):
    """One streaming block through content encoder → generator → prosody move → vocoder.

    ``forward(mel (1, n_mels, N), pitch (1, 4, N), emotion (1, D), prosody (1, MOVE_SIZE), *state)
    -> (audio (1, N * hop), frames (1, n_mels + 2, N), *new_state)``: pitch is the engine
    tracker's features (engine/pitch.py); prosody the reference's measured move
    (training.models.prosody; zeros: the generator's own); frames the generator's output
    (liftered log-mel, log-F0, voicing logit) so moved, which export checks for parity exactly,
    the audio's excitation phase being an integral of the F0 that accumulates rounding
    (export/verify.py); state in the order of ``state_names()``: the encoder's, the
    generator's, the move's, the vocoder's, each prefixed (``ec_``, ``gen_``, ``pm_``,
    ``voc_``) so the names are unique in the graph.
    """

    OUTPUTS = ("audio", "frames")

    def __init__(self, content_encoder: StreamingModule, generator: StreamingModule,
                 vocoder: StreamingModule) -> None:
        super().__init__()
        self.content_encoder = content_encoder
        self.generator = generator
        self.prosody = ProsodyMove(generator.n_mels)
        self.vocoder = vocoder

    @property
    def parts(self) -> list[tuple[str, StreamingModule]]:
        return [(name, getattr(self, name)) for name in STATE_PREFIXES]

    def state_names(self) -> list[str]:
        return [n for name, m in self.parts for n in m.state_names(STATE_PREFIXES[name])]

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [s for _, m in self.parts for s in m.state_shapes(1)]

    def init_state(self) -> list[Tensor]:
        return [torch.zeros(s) for s in self.state_shapes()]

    def forward(self, mel: Tensor, pitch: Tensor, emotion: Tensor, prosody: Tensor,
                *state: Tensor) -> tuple[Tensor, ...]:
        """mel: (1, n_mels, N), pitch: (1, 4, N), emotion: (1, D), prosody: (1, MOVE_SIZE), state...
        -> (audio (1, N * hop), frames (1, n_mels + 2, N), new state...)."""
        s_ec, s_gen, s_pm, s_voc = split_state(list(state), [m for _, m in self.parts])
        content, s_ec = self.content_encoder.step(mel, s_ec)
        frames, s_gen = self.generator.step(content, pitch, emotion, s_gen, mel)
        frames, s_pm = self.prosody.step(frames, pitch, prosody, s_pm)
        n_mels = self.generator.n_mels
        audio, s_voc = self.vocoder.step(frames[:, :n_mels], frame_pitch(frames, n_mels), s_voc)
        return audio.reshape(1, -1), frames, *s_ec, *s_gen, *s_pm, *s_voc


class VocoderGraph(nn.Module):
    """The vocoder alone, one streaming block: copy synthesis of analysed speech.

    ``forward(mel (1, n_mels, N), pitch (1, 2, N), *state) -> (audio (1, N * hop), *new_state)``;
    pitch rows: natural-log F0 (held) and voicing. State names prefixed ``voc_``.
    """

    OUTPUTS = ("audio",)

    def __init__(self, vocoder: StreamingModule) -> None:
        super().__init__()
        self.vocoder = vocoder

    def state_names(self) -> list[str]:
        return self.vocoder.state_names(STATE_PREFIXES["vocoder"])

    def state_shapes(self) -> list[tuple[int, ...]]:
        return self.vocoder.state_shapes(1)

    def init_state(self) -> list[Tensor]:
        return [torch.zeros(s) for s in self.state_shapes()]

    def forward(self, mel: Tensor, pitch: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """mel: (1, n_mels, N), pitch: (1, 2, N), state... -> (audio (1, N * hop), new state...)."""
        audio, new_state = self.vocoder.step(mel, pitch, list(state))
        return audio.reshape(1, -1), *new_state


class EmotionEncoderGraph(nn.Module):
    """A whole reference utterance → what the emotion bank stores.

    ``forward(mel (1, n_mels, T), pitch (1, 2, T), anchor (1, n_mels + 1)) -> (embedding (1, D), probs (1, K),
    strength (1,), cue (1, T))``: pitch rows: natural-log F0 (held) and voicing; anchor: the
    speaker's neutral voice (engine.anchor; the manifest's anchor_centre reads the reference as it
    is); probs is the softmax of Rc's logits; T is dynamic in the exported graph.
    """

    OUTPUTS = ("embedding", "probs", "strength", "cue")

    def __init__(self, emotion_encoder: nn.Module, recognition: nn.Module) -> None:
        super().__init__()
        self.emotion_encoder = emotion_encoder
        self.recognition = recognition

    def forward(self, mel: Tensor, pitch: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """mel: (1, n_mels, T), pitch: (1, 2, T), anchor: (1, n_mels + 1) -> embedding (1, D), probs (1, K),
        strength (1,), cue (1, T)."""
        out = self.recognition(self.emotion_encoder(mel, pitch, anchor=anchor))
        return out.embedding, torch.softmax(out.logits, dim=-1), out.strength, out.cue

    def output_shapes(self) -> dict[str, list]:
        """The outputs' shapes for batch 1, "T" naming the reference's (dynamic) length."""
        D, K = self.emotion_encoder.dim, self.recognition.rc.out_features
        return {"embedding": [1, D], "probs": [1, K], "strength": [1], "cue": [1, "T"]}
