"""Checkpoints → the eval-mode networks that are exported, checked against each other.

A Stage II checkpoint holds content_encoder, emotion_encoder, recognition and
generator; a vocoder checkpoint holds the vocoder (and its discriminators, which are
not loaded). Each network is rebuilt from the constructor arguments recorded in its
own checkpoint's config and loaded with strict=True; every way this can fail is a
one-line ModelError.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from engine.errors import ModelError
from engine.signal import SignalSpec
from training.build import build_models
from training.checkpoint import load_checkpoint, load_weights

STAGE2_NETWORKS = ("content_encoder", "emotion_encoder", "recognition", "generator")
VOCODER_NETWORKS = ("vocoder",)
# block_frames is how the engine feeds the models, not a property of the weights: the
# causal networks take blocks of any length, so the export chooses it.
STREAM_ONLY_FIELDS = ("block_frames",)


@dataclass(frozen=True)
class Networks:
    """Everything export needs from the two checkpoints; networks in eval mode, no grad.

    spec: the checkpoints' shared signal contract (block_frames as trained, replaced by
    the export). The vocoder's weight norm is already folded into plain weights.
    """

    content_encoder: nn.Module
    emotion_encoder: nn.Module
    recognition: nn.Module
    generator: nn.Module
    vocoder: nn.Module
    spec: SignalSpec
    run_ids: dict[str, str]

    def parameter_counts(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in getattr(self, name).parameters())
                for name in (*STAGE2_NETWORKS, *VOCODER_NETWORKS)}


def _signal(path: Path, ckpt: dict) -> SignalSpec:
    try:
        return SignalSpec(**ckpt["signal"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: no valid signal contract ({type(e).__name__}: {e})") from None


def _build(path: Path, ckpt: dict, spec: SignalSpec, names: tuple[str, ...]) -> dict[str, nn.Module]:
    """The named networks of `ckpt`, built from its own config and loaded strictly, in eval mode."""
    missing = [n for n in names if n not in ckpt["models"]]
    if missing:
        raise ModelError(f"{path}: checkpoint has no weights for {', '.join(missing)}")
    try:
        models = build_models(ckpt["config"]["models"], spec, names)
        load_weights(models, ckpt, names)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: cannot rebuild its networks from the recorded config ({_one_line(e)})") from None
    for m in models.values():
        m.eval().requires_grad_(False)
    return models


def _one_line(e: Exception, limit: int = 300) -> str:
    """An exception's message on one line; load_state_dict puts the keys on the second."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_same_contract(stage2: tuple[Path, SignalSpec], vocoder: tuple[Path, SignalSpec]) -> None:
    (p2, s2), (pv, sv) = stage2, vocoder
    a, b = s2.to_dict(), sv.to_dict()
    diff = [k for k in a if a[k] != b[k] and k not in STREAM_ONLY_FIELDS]
    if diff:
        shown = ", ".join(f"{k} {a[k]} vs {b[k]}" for k in diff)
        raise ModelError(f"{p2.name} and {pv.name} were trained for different signal contracts ({shown})")


def load_part(path: str | Path, stage: str) -> tuple[dict[str, nn.Module], SignalSpec, str]:
    """(networks, signal contract, run id) of one checkpoint of `stage` ("stage2" or "vocoder")."""
    path = Path(path)
    ckpt = load_checkpoint(path, stage)
    spec = _signal(path, ckpt)
    models = _build(path, ckpt, spec, STAGE2_NETWORKS if stage == "stage2" else VOCODER_NETWORKS)
    return models, spec, str(ckpt.get("run_id"))


def load_networks(stage2_path: str | Path, vocoder_path: str | Path) -> Networks:
    """Networks of a Stage II and a vocoder checkpoint; ModelError (one line) on any mismatch."""
    stage2, spec2, run2 = load_part(stage2_path, "stage2")
    vocoder, specv, runv = load_part(vocoder_path, "vocoder")
    _check_same_contract((Path(stage2_path), spec2), (Path(vocoder_path), specv))
    return Networks(**stage2, vocoder=_folded(vocoder["vocoder"]), spec=spec2,
                    run_ids={"stage2": run2, "vocoder": runv})


def _folded(vocoder: nn.Module) -> nn.Module:
    """A copy of the vocoder with weight norm folded in: plain Conv weights in the graph."""
    # Fold with gradients on: parametrize registers a folded weight that does not require
    # grad as a buffer, not a parameter, and the parameter count would miss it.
    vocoder = copy.deepcopy(vocoder).requires_grad_(True)
    vocoder.remove_weight_norm()
    return vocoder.eval().requires_grad_(False)
