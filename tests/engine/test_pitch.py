"""The engine's YIN pitch tracker (engine/pitch.py): accurate against known tones, WORLD
(DIO + StoneMask) and pYIN, on espeak speech, causal, streamable exactly, silent on silence.

Errors are in cents, 1200 log2(f / f_ref); frame k of the tracker is compared with WORLD's
analysis at the end of hop k (training.data.analysis.pitch_targets, the training targets).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import load_audio
from engine.pitch import (
    FEATURES,
    PRIOR_FRAMES,
    PRIOR_LF0,
    StreamingPitch,
    centred,
    pitch_offline,
    reference_pitch,
)
from engine.signal import SignalSpec
from support.audio import speech_like
from training.data.analysis import pitch_targets
from training.data.esd import scan

SR = 16000
VOICED, LF0, REG_MEAN, REG_STD = (FEATURES.index(n) for n in ("voiced", "lf0", "reg_mean", "reg_std"))
TONES = [80.0, 110.0, 150.0, 220.0, 330.0, 440.0, 600.0]


def cents(lf0: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|difference| in cents of natural-log F0s."""
    return 1200.0 * np.abs(np.asarray(lf0, np.float64) - reference) / np.log(2.0)


def tone(f0: float, seconds: float = 1.0, level: float = 0.5) -> np.ndarray:
    """A harmonic tone (1/k amplitudes up to 7 kHz, like a glottal source), peak `level`: (N,) float32."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(7000 // f0) + 1))
    return (level * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("offset", ["causal", "centred"])
def test_tones_are_tracked_within_a_few_cents(spec: SignalSpec, offset: str) -> None:
    """80-600 Hz: every frame past the window's fill is voiced, the median error < 5 cents
    (measured 0.02-2.2) and the worst frame < 10 cents; WORLD on the same tones: < 1 cent."""
    for f0 in TONES:
        x = tone(f0)
        got = pitch_offline(x, spec, 0 if offset == "causal" else centred(SR))[:, 10:-10]
        world = pitch_targets(x, spec)[:, 10:-10]
        assert got[VOICED].min() == 1.0, f"{f0} Hz: unvoiced frames"
        err = cents(got[LF0], np.log(f0))
        assert np.median(err) < 5.0 and err.max() < 10.0, f"{f0} Hz: median {np.median(err):.2f}, max {err.max():.2f}"
        assert np.median(cents(got[LF0], world[0])) < 5.0, f"{f0} Hz against WORLD"


@pytest.mark.slow
def test_tones_agree_with_pyin(spec: SignalSpec) -> None:
    """librosa's pYIN as a second reference (its first call compiles for ~10 s): median
    difference < 10 cents at every F0 (pYIN itself is within 7 cents of the truth here)."""
    librosa = pytest.importorskip("librosa")
    for f0 in (80.0, 220.0, 600.0):
        x = tone(f0)
        got = pitch_offline(x, spec, centred(SR))[LF0]
        f, _, _ = librosa.pyin(x, fmin=60, fmax=800, sr=SR, frame_length=1024, hop_length=spec.hop)
        # pYIN frame j is centred on sample j * hop, the centred tracker's frame k on (k + 1) * hop.
        n = min(got.size, f.size - 1)
        both = np.isfinite(f[1:n + 1])
        diff = cents(got[:n][both], np.log(f[1:n + 1][both]))[10:-10]
        assert both.mean() > 0.9 and np.median(diff) < 10.0, f"{f0} Hz: median {np.median(diff):.2f} cents"


@pytest.fixture(scope="module")
def neutral_speech(tiny_corpus) -> list[np.ndarray]:
    """The tiny espeak corpus's Neutral test utterances (2 sentences × 4 speakers)."""
    return [load_audio(u.path, SR) for u in scan(tiny_corpus, splits=["test"]) if u.label == 0]


@pytest.mark.slow
def test_espeak_speech_against_world(spec: SignalSpec, neutral_speech) -> None:
    """The centred tracker (what references and copy synthesis read) against DIO + StoneMask
    over all frames of the corpus's Neutral test utterances. Measured: median 5.5 cents and
    90th percentile 25 cents over the 1216 frames both call voiced, voicing agreement 0.89,
    and 0.96 of the frames the tracker calls voiced are voiced for WORLD (with a voicing dip
    of 0.3 instead of VOICED_DIP: 1066 frames, 5.0 / 21 cents, agreement 0.81)."""
    err, agree, precision = [], [], []
    for audio in neutral_speech:
        got, world = pitch_offline(audio, spec, centred(SR)), pitch_targets(audio, spec)
        both = (got[VOICED] > 0) & (world[1] > 0)
        err.append(cents(got[LF0][both], world[0][both]))
        agree.append(got[VOICED] == world[1])
        precision.append(world[1][got[VOICED] > 0])
    err, agree, precision = (np.concatenate(a) for a in (err, agree, precision))
    assert err.size > 500, "too few voiced frames to measure"
    assert np.median(err) < 10.0, f"median {np.median(err):.1f} cents"
    assert np.percentile(err, 90) < 50.0, f"90th percentile {np.percentile(err, 90):.1f} cents"
    assert agree.mean() > 0.85, f"voicing agreement {agree.mean():.2f}"
    assert precision.mean() > 0.9, f"tracker-voiced frames voiced for WORLD {precision.mean():.2f}"


@pytest.mark.parametrize("block_frames", [1, 2, 3, 8])
def test_streaming_equals_offline(block_frames: int) -> None:
    """Block by block, the tracker gives exactly pitch_offline's causal features of the stream."""
    spec = SignalSpec(block_frames=block_frames)
    audio = speech_like(2.0, seed=block_frames)
    tracker = StreamingPitch(spec)
    b = spec.block_samples
    streamed = np.concatenate([tracker.process(audio[i:i + b]).copy() for i in range(0, audio.size - b + 1, b)],
                              axis=1)
    offline = pitch_offline(audio, spec)
    assert streamed.shape == (len(FEATURES), audio.size // b * block_frames)
    assert 0.2 < streamed[VOICED].mean() < 0.8
    np.testing.assert_array_equal(streamed, offline[:, : streamed.shape[1]])
    tracker.reset()
    np.testing.assert_array_equal(tracker.process(audio[:b]), offline[:, :block_frames])


def test_process_reuses_its_buffer_and_rejects_bad_blocks(spec: SignalSpec) -> None:
    tracker = StreamingPitch(spec)
    block = np.zeros(spec.block_samples, np.float32)
    assert tracker.process(block) is tracker.process(block)
    with pytest.raises(ValueError, match="block"):
        tracker.process(np.zeros(spec.block_samples + 1, np.float32))


def test_future_samples_never_change_past_frames(spec: SignalSpec) -> None:
    """Causal framing: frame k reads nothing at or after (k + 1) * hop."""
    audio = speech_like(1.0, seed=2)
    cut = 40 * spec.hop + 37
    changed = audio.copy()
    changed[cut:] = tone(300.0, (audio.size - cut) / SR)
    before, after = pitch_offline(audio, spec), pitch_offline(changed, spec)
    frames = cut // spec.hop  # frames 0 .. frames-1 end at or before the cut
    np.testing.assert_array_equal(before[:, :frames], after[:, :frames])
    assert np.abs(before[:, frames:] - after[:, frames:]).max() > 0.1


@pytest.mark.parametrize("level_db", [None, -70.0])
def test_silence_is_unvoiced_and_leaves_the_prior(spec: SignalSpec, level_db: float | None) -> None:
    """Digital silence, and a tone 70 dB down (periodic, but below the -55 dBFS floor): every
    frame unvoiced, log-F0 and register at the prior."""
    x = np.zeros(SR, np.float32) if level_db is None else tone(220.0, level=10 ** (level_db / 20))
    got = pitch_offline(x, spec)
    assert got[VOICED].max() == 0.0
    np.testing.assert_allclose(got[[LF0, REG_MEAN]], PRIOR_LF0, atol=1e-6)


def test_white_noise_is_unvoiced(spec: SignalSpec) -> None:
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    assert pitch_offline(noise, spec)[VOICED].mean() < 0.02


def test_register_is_a_prior_started_mean_and_holds_through_unvoiced_frames(spec: SignalSpec) -> None:
    """After n voiced frames of a 220 Hz tone the register mean is the running mean with the
    prior weighted as PRIOR_FRAMES frames; in the silence after it, log-F0 holds the last
    voiced value and the register stops moving."""
    x = np.concatenate([tone(220.0), np.zeros(SR // 2, np.float32)])
    got = pitch_offline(x, spec)
    voiced = np.flatnonzero(got[VOICED])
    last = voiced[-1]
    n = voiced.size
    expected = (PRIOR_FRAMES * PRIOR_LF0 + got[LF0][voiced].astype(np.float64).sum()) / (PRIOR_FRAMES + n)
    assert n >= 95
    assert got[REG_MEAN, last] == pytest.approx(expected, abs=1e-4)
    assert cents(got[REG_MEAN, last], np.log(220.0)) < 70  # 10 prior frames of 110 leave about 60 cents
    assert got[REG_STD, last] < got[REG_STD, voiced[0]]  # a steady tone narrows the range
    after = got[:, last + 1:]
    assert after.shape[1] > 40 and after[VOICED].max() == 0.0
    np.testing.assert_array_equal(after[LF0], got[LF0, last])
    np.testing.assert_array_equal(after[REG_MEAN], got[REG_MEAN, last])


def test_reference_pitch_is_the_centred_log_f0_and_voicing(spec: SignalSpec, speech: np.ndarray) -> None:
    """What the emotion encoder reads: rows [lf0, voiced] of the centred analysis."""
    ref = reference_pitch(speech, spec)
    centred_features = pitch_offline(speech, spec, centred(SR))
    assert ref.shape == (2, speech.size // spec.hop) and ref.dtype == np.float32
    np.testing.assert_array_equal(ref, centred_features[[LF0, VOICED]])
