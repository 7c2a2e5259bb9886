"""Checkpoints → the eval-mode networks that are exported, checked against each other.

A Stage II checkpoint holds content_encoder, emotion_encoder, recognition and
generator; a vocoder checkpoint holds the vocoder. Each network is rebuilt from the
constructor arguments recorded in its own checkpoint's config and loaded with
strict=True; every way this can fail is a one-line ModelError.
"""

from __future__ import annotations

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
    the export). speakers: the speakers the networks trained on (both checkpoints' together;
    None when a checkpoint predates that record).
    """

    content_encoder: nn.Module
    emotion_encoder: nn.Module
    recognition: nn.Module
    generator: nn.Module
    vocoder: nn.Module
    spec: SignalSpec
    run_ids: dict[str, str]
    speakers: list[str] | None

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


@dataclass(frozen=True)
class Part:
    """One checkpoint's networks (eval mode), signal contract, run id and training speakers."""

    models: dict[str, nn.Module]
    spec: SignalSpec
    run_id: str
    speakers: list[str] | None


def load_part(path: str | Path, stage: str) -> Part:
    """The networks of one checkpoint of `stage` ("stage2" or "vocoder") and what it records."""
    path = Path(path)
    ckpt = load_checkpoint(path, stage)
    spec = _signal(path, ckpt)
    models = _build(path, ckpt, spec, STAGE2_NETWORKS if stage == "stage2" else VOCODER_NETWORKS)
    return Part(models, spec, str(ckpt.get("run_id")), ckpt.get("speakers"))


def load_networks(stage2_path: str | Path, vocoder_path: str | Path) -> Networks:
    """Networks of a Stage II and a vocoder checkpoint; ModelError (one line) on any mismatch."""
    stage2, vocoder = load_part(stage2_path, "stage2"), load_part(vocoder_path, "vocoder")
    _check_same_contract((Path(stage2_path), stage2.spec), (Path(vocoder_path), vocoder.spec))
    known = stage2.speakers is not None and vocoder.speakers is not None
    return Networks(**stage2.models, vocoder=vocoder.models["vocoder"], spec=stage2.spec,
                    run_ids={"stage2": stage2.run_id, "vocoder": vocoder.run_id},
                    speakers=sorted(set(stage2.speakers) | set(vocoder.speakers)) if known else None)
