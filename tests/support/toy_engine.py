"""An engine configuration around the toy model, and reference recordings for its bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from engine.config import EngineConfig, config_from_dict
from engine.signal import SignalSpec
from support.audio import speech_like
from support.toy_model import write_toy_model


def toy_config_dict(root: Path, block_frames: int = 2, lookahead_frames: int = 0, prosody: bool = False) -> dict:
    """Write the toy model under root/toy (prosody: its step graph takes the prosody move); the
    engine.yaml mapping that uses it (bank in root)."""
    spec = SignalSpec(block_frames=block_frames, lookahead_frames=lookahead_frames)
    toy = write_toy_model(root / "toy", spec, prosody=prosody)
    return {"signal": {"block_frames": block_frames, "lookahead_frames": lookahead_frames},
            "model": {"dir": str(toy)}, "bank": {"path": str(root / "bank.json")},
            "runtime": {"providers": ["cpu"]}}


def toy_config(root: Path, **options) -> EngineConfig:
    return config_from_dict(toy_config_dict(root, **options))


def toy_config_file(root: Path, **signal) -> Path:
    """root/engine.yaml for the toy model, for `evc --config`."""
    path = root / "engine.yaml"
    path.write_text(yaml.safe_dump(toy_config_dict(root, **signal)))
    return path


def write_wav(path: Path, audio: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), audio, sr, subtype=subtype)
    return path


def reference_wav(path: Path, seconds: float = 3.0, seed: int = 0, f0: float = 140.0, gain: float = 1.0) -> Path:
    """A speech-like reference with about half its duration voiced (3 s -> 1.6 s voiced)."""
    return write_wav(path, gain * speech_like(seconds, seed=seed, f0=f0))
