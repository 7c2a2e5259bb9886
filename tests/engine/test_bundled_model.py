"""The bundled default model as users get it: silence stays silent, unvoiced stays unvoiced.

These check the trained model, not the code: a vocoder that buzzes over silence or a
generator that voices fricatives fails here whatever the unit tests say.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import load_audio, rms_db
from engine.bank import EmotionBank
from engine.cli_files import convert_array
from engine.config import load_config
from engine.pipeline import StreamingConverter
from engine.signal import SignalSpec

pytestmark = pytest.mark.slow
SAMPLE = "unseen_speaker.wav"


@pytest.fixture(scope="module")
def converter():
    cfg = load_config()
    conv = StreamingConverter(cfg, bank=EmotionBank(cfg.bank_path), quiet=True)
    return conv


@pytest.fixture(scope="module")
def speech(converter) -> np.ndarray:
    return load_audio(converter.cfg.model_dir / "samples" / SAMPLE)


def _converted(conv: StreamingConverter, audio: np.ndarray, emotion: str) -> np.ndarray:
    conv.set_emotion(emotion, crossfade_blocks=0)
    conv.reset()
    return convert_array(conv, audio).copy()


@pytest.mark.parametrize("emotion", ["angry", "sad", "surprise"])
def test_silence_in_gives_output_60_db_below_speech(converter, speech, emotion):
    """Speech, then 1 s of digital silence, then speech: the silent second (after a 100 ms
    decay) comes out at least 60 dB below the converted speech's level."""
    sr = SignalSpec().sample_rate
    gap = np.zeros(sr, np.float32)
    out = _converted(converter, np.concatenate([speech, gap, speech]), emotion)
    n = speech.size
    level = rms_db(out[:n])
    quiet = rms_db(out[n + sr // 10:n + sr])
    assert level > -45.0
    assert level - quiet >= 60.0, f"speech {level:.1f} dBFS, silence {quiet:.1f} dBFS"


def test_noise_in_is_not_voiced_out(converter):
    """White noise at speech level (no pitch in it) converts to output that DIO finds voiced in
    under 10% of its frames: the harmonic source stays off when the input is unvoiced."""
    pyworld = pytest.importorskip("pyworld")
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal(2 * SignalSpec().sample_rate)).astype(np.float32)
    out = _converted(converter, noise, "happy").astype(np.float64)
    f0, t = pyworld.dio(out, SignalSpec().sample_rate, f0_floor=50.0, f0_ceil=800.0, frame_period=5.0)
    f0 = pyworld.stonemask(out, f0, t, SignalSpec().sample_rate)
    assert np.mean(f0 > 0) < 0.10
