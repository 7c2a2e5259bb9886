"""Shared fixtures: generated speech-like audio and a small signal contract."""

from __future__ import annotations

import numpy as np
import pytest

from engine.signal import SignalSpec
from support.audio import speech_like


@pytest.fixture
def spec() -> SignalSpec:
    return SignalSpec()


@pytest.fixture
def speech() -> np.ndarray:
    """3 s of speech-like audio at 16 kHz, (48000,) float32."""
    return speech_like(3.0)
