"""The rows of a quality table: systems (source, reference, target, neutral) audio (N,) float32 -> converted (N',).

* references (floors; they are given the target): the oracle, the target through WORLD
  analysis/synthesis; copy synthesis, the target's own features through the model's
  vocoder (engine.resynth), skipped with a note for a model that has no vocoder graph;
* baselines (benchmarks.baselines): zero effort, the DSP prosody transplant;
* the model as the engine runs it, which can also sweep its strength knob.

Every system pickles (a module-level function, or a class that builds its sessions on
first use), so scoring workers in other processes can run it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.baselines import prosody_transplant, world_resynthesis, zero_effort

if TYPE_CHECKING:  # the engine is imported when a system first runs, not with the benchmark's tables
    from engine.reference import Reference

SYSTEMS_VERSION = 1
"""Bump when the oracle or a baseline changes: their rows are cached (they depend on the corpus only)."""
System = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]
"""(source, reference, target, neutral) -> converted. Real systems never look at the target; references
and a test's perfect stand-in do. neutral: a Neutral utterance of the reference's speaker (their neutral
voice, as a user registers it beside their emotions), or None when the corpus has none."""
ORACLE = "oracle (WORLD resynthesis)"
COPY_SYNTHESIS = "copy synthesis"


def _zero_effort(source: np.ndarray, reference: np.ndarray, target: np.ndarray, neutral=None) -> np.ndarray:
    return zero_effort(source, reference)


def _prosody_transplant(source: np.ndarray, reference: np.ndarray, target: np.ndarray, neutral=None) -> np.ndarray:
    return prosody_transplant(source, reference)


def _oracle(source: np.ndarray, reference: np.ndarray, target: np.ndarray, neutral=None) -> np.ndarray:
    return world_resynthesis(target)


BASELINES: dict[str, System] = {"zero effort": _zero_effort, "DSP prosody transplant": _prosody_transplant}
CORPUS_ONLY: dict[str, System] = {ORACLE: _oracle, **BASELINES}
"""Systems whose output depends on the corpus files alone: their scored rows are cached."""
RENDERS_TARGET = frozenset({ORACLE, COPY_SYNTHESIS})
"""Reference rows: they render the target, so their strength is scored against the target's own."""


class EngineSystem:
    """The model as the engine runs it: reference -> EmotionEncoder embedding, read from the speaker's
    neutral voice (the anchor of the trial's neutral utterance, as the bank's neutral entry anchors
    the emotions registered beside it), and its prosody move from that neutral utterance (as from
    the bank's neutral entry), then the streaming pipeline over the source from a reset state
    (engine.cli_files.convert_array)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._parts = None

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "_parts": None}  # ONNX Runtime sessions do not pickle: rebuilt on first use

    def load(self):
        """(converter, encoder), built on first use (sessions do not pickle: each worker builds its own)."""
        from engine.bank import EmotionEncoder
        from engine.pipeline import StreamingConverter

        if self._parts is None:
            converter = StreamingConverter(self.cfg, quiet=True)
            self._parts = converter, EmotionEncoder(converter.sessions, converter.manifest)
        return self._parts

    def _convert(self, source: np.ndarray, embedding: np.ndarray, move: np.ndarray) -> np.ndarray:
        from engine.cli_files import convert_array

        converter, _ = self.load()
        converter.set_embedding(embedding, crossfade_blocks=0, move=move)
        converter.reset()
        return convert_array(converter, source).copy()

    def _moves(self, reference: Reference, neutral: Reference | None, strengths: tuple[float, ...]) -> list:
        """The analysed reference's measured prosody move from the analysed neutral utterance
        (engine.prosody) at each strength, as the bank's entries give set_emotion; zeros without a
        neutral utterance."""
        from engine.prosody import prosody_move, prosody_stats

        bank = self.cfg.bank
        stats = [None if x is None else prosody_stats(x) for x in (reference, neutral)]
        return [prosody_move(*stats, s, bank.pitch_move, bank.level_move) for s in strengths]

    def __call__(self, source: np.ndarray, reference: np.ndarray, target: np.ndarray,
                 neutral: np.ndarray | None = None) -> np.ndarray:
        _, encoder = self.load()
        ref, neutral = encoder.analyse(reference), None if neutral is None else encoder.analyse(neutral)
        anchor = None if neutral is None else encoder.voice(neutral)
        (move,) = self._moves(ref, neutral, (1.0,))
        return self._convert(source, encoder.encode(ref, anchor).embedding, move)

    def sweep(self, source: np.ndarray, reference: np.ndarray, neutral: np.ndarray,
              strengths: tuple[float, ...]) -> list[np.ndarray]:
        """The source converted at each strength s: embedding e_n + s (e_ref - e_n), e_n the encoding of
        a Neutral utterance of the speaker, and the prosody move times s (the strength knob of
        engine.pipeline.set_emotion)."""
        _, encoder = self.load()
        ref, neutral = encoder.analyse(reference), encoder.analyse(neutral)
        anchor = encoder.voice(neutral)
        e_ref, e_neutral = (encoder.encode(x, anchor).embedding for x in (ref, neutral))
        moves = self._moves(ref, neutral, strengths)
        return [self._convert(source, (e_neutral + s * (e_ref - e_neutral)).astype(np.float32), move)
                for s, move in zip(strengths, moves)]


class CopySynthesis:
    """The target's own features through the model's vocoder (engine.resynth.copy_synthesis): its
    log-mel and the WORLD pitch the vocoder trained on (training.data.analysis), so the row is the
    vocoder's floor. On the bundled model, the engine's pitch tracker in its place cost the row
    1.1 dB of MCD (5.12 against 4.04), voicing agreement 0.75 against 0.94 and emotion accuracy
    0.68 against 0.78: the tracker is the engine's input analysis, not the vocoder's."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)

    @functools.cached_property
    def spec(self):
        """The model's signal contract (read once: the system renders every trial)."""
        from engine.manifest import load_manifest

        return load_manifest(self.model_dir).spec

    def __call__(self, source: np.ndarray, reference: np.ndarray, target: np.ndarray, neutral=None) -> np.ndarray:
        from engine.resynth import copy_synthesis
        from training.data.analysis import pitch_targets

        return np.asarray(copy_synthesis(self.model_dir, target, pitch_targets(target, self.spec)), np.float32)


def copy_synthesis_system(model_dir: Path) -> tuple[CopySynthesis | None, str | None]:
    """(the copy-synthesis row, None), or (None, why it is skipped) when the model cannot copy-synthesise."""
    from engine.errors import ModelError

    system = CopySynthesis(model_dir)
    try:
        system(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(1600, np.float32))
    except ModelError as e:
        return None, f"no copy-synthesis row: {e}"
    except ModuleNotFoundError as e:
        if e.name != "engine.resynth":
            raise
        return None, "no copy-synthesis row: this engine has no engine.resynth"
    return system, None


def build(cfg, model_dir: Path | None) -> tuple[dict[str, System], list[str]]:
    """The systems of a table in row order (references, baselines, model), and notes on rows left out."""
    if model_dir is None:
        return dict(CORPUS_ONLY), []
    from benchmarks.models import model_config

    copy, note = copy_synthesis_system(model_dir)
    systems: dict[str, System] = {ORACLE: _oracle, **({COPY_SYNTHESIS: copy} if copy else {}), **BASELINES}
    # One intra-op thread: the benchmark runs one scoring worker per core.
    model = EngineSystem(model_config(cfg, model_dir, threads=1))
    converter, _ = model.load()  # a model the engine refuses fails here, not after minutes of evaluator fitting
    systems[f"model ({model_dir.name})"] = model
    notes = [note] if note else []
    if converter.takes_prosody:
        notes.append(f"the model imposes each reference's measured prosody move: bank.pitch_move "
                     f"{cfg.bank.pitch_move:g}, bank.level_move {cfg.bank.level_move:g} (engine.yaml)")
    return systems, notes
