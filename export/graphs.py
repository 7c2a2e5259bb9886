"""The two exported graphs as small wrapper modules around the training networks.

The wrappers only call the networks' own ``step``/``forward``: nothing in training/ is
patched for export. Their ``forward`` signatures are the graphs' signatures.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.streaming import StreamingModule, split_state

STATE_PREFIXES = {"content_encoder": "ec_", "generator": "gen_", "vocoder": "voc_"}


class StepGraph(nn.Module):
    """One streaming block through content encoder → generator → vocoder.

    ``forward(mel (1, n_mels, N), emotion (1, D), *state) -> (audio (1, N * hop), *new_state)``,
    state in the order of ``state_names()``: the encoder's, the generator's, the vocoder's,
    each prefixed (``ec_``, ``gen_``, ``voc_``) so the names are unique in the graph.
    """

    def __init__(self, content_encoder: StreamingModule, generator: StreamingModule,
                 vocoder: StreamingModule) -> None:
        super().__init__()
        self.content_encoder = content_encoder
        self.generator = generator
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

    def forward(self, mel: Tensor, emotion: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """mel: (1, n_mels, N), emotion: (1, D), state... -> (audio (1, N * hop), new state...)."""
        s_ec, s_gen, s_voc = split_state(list(state), [m for _, m in self.parts])
        content, s_ec = self.content_encoder.step(mel, s_ec)
        out_mel, s_gen = self.generator.step(content, emotion, s_gen)
        audio, s_voc = self.vocoder.step(out_mel, s_voc)
        return audio.reshape(1, -1), *s_ec, *s_gen, *s_voc


class EmotionEncoderGraph(nn.Module):
    """A whole reference utterance → what the emotion bank stores.

    ``forward(mel (1, n_mels, T)) -> (embedding (1, D), probs (1, K), strength (1,), cue (1, T))``:
    probs is the softmax of Rc's logits; T is dynamic in the exported graph.
    """

    OUTPUTS = ("embedding", "probs", "strength", "cue")

    def __init__(self, emotion_encoder: nn.Module, recognition: nn.Module) -> None:
        super().__init__()
        self.emotion_encoder = emotion_encoder
        self.recognition = recognition

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """mel: (1, n_mels, T) -> embedding (1, D), probs (1, K), strength (1,), cue (1, T)."""
        out = self.recognition(self.emotion_encoder(mel))
        return out.embedding, torch.softmax(out.logits, dim=-1), out.strength, out.cue

    def output_shapes(self) -> dict[str, list]:
        """The outputs' shapes for batch 1, "T" naming the reference's (dynamic) length."""
        D, K = self.emotion_encoder.dim, self.recognition.rc.out_features
        return {"embedding": [1, D], "probs": [1, K], "strength": [1], "cue": [1, "T"]}
