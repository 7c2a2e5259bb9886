"""StreamingConverter on the toy model: equals frontend + toy reference, crossfades, bypass, reset."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from engine.bank import EmotionBank, EmotionEncoder
from engine.errors import EVCError, ModelError
from engine.features import log_mel_offline
from engine.pipeline import TIMING_WINDOW, StreamingConverter
from engine.pitch import pitch_offline
from support.audio import speech_like
from support.memory import assert_retains_nothing_per_block
from support.toy_engine import reference_wav, toy_config
from support.toy_model import toy_reference

DIM = 8


def run(conv: StreamingConverter, audio: np.ndarray) -> np.ndarray:
    """Concatenated process() outputs over the whole blocks of audio (N,) -> (blocks * block_samples,)."""
    b = conv.block_samples
    return np.concatenate([conv.process(audio[i:i + b]).copy() for i in range(0, audio.size - b + 1, b)])


def block_values(out: np.ndarray, conv: StreamingConverter) -> np.ndarray:
    """The toy output's first sample of each block: (blocks,)."""
    return out[:: conv.block_samples]


@pytest.fixture
def conv(tmp_path) -> StreamingConverter:
    return StreamingConverter(toy_config(tmp_path), bank=EmotionBank(tmp_path / "bank.json"), quiet=True)


@pytest.fixture
def embedding() -> np.ndarray:
    return np.random.default_rng(3).standard_normal(DIM).astype(np.float32)


@pytest.mark.parametrize("block_frames", [1, 2, 4])
def test_process_equals_frontend_and_toy_reference(tmp_path, block_frames, embedding):
    conv = StreamingConverter(toy_config(tmp_path, block_frames=block_frames), quiet=True)
    assert conv.block_samples == block_frames * conv.spec.hop
    conv.set_embedding(embedding)
    audio = speech_like(1.5)
    out = run(conv, audio)
    expected = toy_reference(log_mel_offline(audio, conv.spec), embedding, conv.spec)[: out.size]
    # The toy sums 80-240 log-mels of about -10 in float32 inside ONNX Runtime and in numpy
    # in different orders: a few ulps of values up to ~20, hence the relative term.
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("block_frames", [1, 2])
def test_the_step_is_fed_the_causal_pitch_of_the_stream(tmp_path, block_frames, embedding):
    """The toy's formula ignores pitch, so read what the step was given: block by block the
    bound pitch input is the causal tracker's features of the stream, and reset() restarts
    the tracker (its register) with the rest."""
    conv = StreamingConverter(toy_config(tmp_path, block_frames=block_frames), quiet=True)
    conv.set_embedding(embedding)
    audio, b = speech_like(1.0), conv.block_samples

    def fed() -> np.ndarray:
        blocks = []
        for i in range(0, audio.size - b + 1, b):
            conv.process(audio[i:i + b])
            blocks.append(conv.runner.inputs["pitch"][0].copy())
        return np.concatenate(blocks, axis=1)

    first = fed()
    expected = pitch_offline(audio, conv.spec)[:, : first.shape[1]]
    assert expected[0].mean() > 0.2, "the stream must have voiced frames for the check to mean something"
    np.testing.assert_array_equal(first, expected)
    conv.reset()
    np.testing.assert_array_equal(fed(), first)


def test_output_is_one_reused_buffer(conv):
    block = np.zeros(conv.block_samples, np.float32)
    assert conv.process(block) is conv.process(block)


def test_wrong_block_is_refused(conv):
    with pytest.raises(ValueError, match="block"):
        conv.process(np.zeros(conv.block_samples + 1, np.float32))
    with pytest.raises(TypeError, match="float32"):
        conv.process(np.zeros(conv.block_samples, np.float64))


def test_process_allocates_nothing_per_block(conv, embedding):
    """Retained memory of engine/ frames over 2000 blocks, with a crossfade under way and bypass
    switching."""
    block = speech_like(0.5)[: conv.block_samples].copy()
    conv.set_embedding(embedding)
    for _ in range(20):
        conv.process(block)

    def step(i: int) -> None:
        if i % 500 == 0:
            conv.set_embedding(-embedding if i % 1000 else embedding, crossfade_blocks=300)
            conv.bypass = not conv.bypass
        conv.process(block)

    assert_retains_nothing_per_block(step, blocks=2000)


@pytest.mark.parametrize("blocks", [1, 3, 4, 7])
def test_crossfade_moves_linearly_over_n_blocks(conv, blocks):
    """Silence in: the toy output is constant + sum(embedding), so each block shows the embedding."""
    silence = np.zeros(conv.block_samples * (10 + blocks), np.float32)
    start = np.zeros(DIM, np.float32)
    target = np.full(DIM, 0.5, np.float32)  # sum 4
    conv.set_embedding(start)
    conv.process(silence[: conv.block_samples])
    conv.set_embedding(target, crossfade_blocks=blocks)
    values = block_values(run(conv, silence), conv)
    np.testing.assert_array_equal(conv.embedding, target)
    base = block_values(run(_fresh(conv), silence), conv)  # same stream, start embedding throughout
    k = np.arange(1, values.size + 1)
    np.testing.assert_allclose(values - base, 4.0 * np.minimum(k / blocks, 1.0), atol=1e-5)


def _fresh(conv: StreamingConverter) -> StreamingConverter:
    conv.reset()
    conv.set_embedding(np.zeros(DIM, np.float32), crossfade_blocks=0)
    conv.process(np.zeros(conv.block_samples, np.float32))
    return conv


def test_crossfade_default_comes_from_config(conv):
    assert conv.cfg.bank.crossfade_blocks == 4
    conv.set_embedding(np.zeros(DIM, np.float32))
    conv.set_embedding(np.ones(DIM, np.float32))
    seen = []
    for _ in range(5):
        conv.process(np.zeros(conv.block_samples, np.float32))
        seen.append(float(conv.embedding[0]))
    np.testing.assert_allclose(seen, [0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-7)


def test_emotion_switch_adds_no_step_beyond_normal_variation(conv, embedding):
    """On speech, an emotion switch 1.5 times larger than the largest block-to-block change of
    the speech itself, crossfaded over 8 blocks, changes the output by less per block than
    the speech does on average; the same switch without crossfade is a click (so the test can fail).

    The toy is linear in sum(embedding), so switched - steady is the switch's contribution alone."""
    audio = speech_like(2.0)
    conv.set_embedding(embedding)
    steady = block_values(run(conv, audio), conv)
    natural = np.abs(np.diff(steady))
    jump = 1.5 * natural.max()
    steps = {}
    for fade in (0, 8):
        conv.reset()
        conv.set_embedding(embedding, crossfade_blocks=0)
        b = conv.block_samples
        head = run(conv, audio[: 20 * b])
        conv.set_embedding(embedding + jump / DIM, crossfade_blocks=fade)
        switched = block_values(np.concatenate([head, run(conv, audio[20 * b:])]), conv)
        steps[fade] = np.abs(np.diff(switched - steady)).max()
    assert steps[0] > natural.max()
    assert steps[8] < natural.mean()
    assert steps[8] == pytest.approx(jump / 8, rel=1e-3)


def _two_entries(conv: StreamingConverter, tmp_path) -> tuple:
    encoder = EmotionEncoder(conv.sessions, conv.manifest)
    neutral = conv.bank.register("neutral", reference_wav(tmp_path / "n.wav", seed=1, f0=110.0), encoder)
    angry = conv.bank.register("angry", reference_wav(tmp_path / "a.wav", seed=2, f0=220.0, gain=0.5), encoder)
    assert np.abs(neutral.embedding - angry.embedding).max() > 0.1
    return neutral, angry


def _used(conv: StreamingConverter) -> np.ndarray:
    conv.process(np.zeros(conv.block_samples, np.float32))
    return conv.embedding


@pytest.mark.parametrize("strength", [None, 0.0, 0.5, 1.0, 1.5])
def test_strength_interpolates_from_the_neutral_entry(conv, tmp_path, strength):
    neutral, angry = _two_entries(conv, tmp_path)
    conv.set_emotion("angry", strength, crossfade_blocks=0)
    s = 1.0 if strength is None else strength
    np.testing.assert_allclose(_used(conv), neutral.embedding + s * (angry.embedding - neutral.embedding),
                               atol=1e-6)
    assert (conv.emotion_name, conv.strength) == ("angry", strength)


def test_strength_0_is_neutral_and_1_is_the_reference_exactly(conv, tmp_path):
    neutral, angry = _two_entries(conv, tmp_path)
    conv.set_emotion("Angry", 0.0, crossfade_blocks=0)
    np.testing.assert_array_equal(_used(conv), neutral.embedding)
    conv.set_emotion("angry", 1.0, crossfade_blocks=0)
    np.testing.assert_array_equal(_used(conv), angry.embedding)


@pytest.mark.parametrize("strength", [-0.1, 1.51, float("nan")])
def test_strength_out_of_range_is_refused(conv, tmp_path, strength):
    _two_entries(conv, tmp_path)
    with pytest.raises(EVCError, match="strength"):
        conv.set_emotion("angry", strength)


def _recategorise(bank_path, categories: dict) -> None:
    raw = json.loads(bank_path.read_text())
    for name, category in categories.items():
        raw["entries"][name]["category"] = category
    bank_path.write_text(json.dumps(raw))


def test_neutral_entry_is_found_by_category(conv, tmp_path):
    neutral, angry = _two_entries(conv, tmp_path)
    encoder = EmotionEncoder(conv.sessions, conv.manifest)
    calm = conv.bank.register("calm", tmp_path / "n.wav", encoder)
    conv.bank.remove("neutral")
    _recategorise(conv.bank.path, {"angry": "Angry", "calm": "Neutral"})
    conv.set_emotion("angry", 0.0, crossfade_blocks=0)
    np.testing.assert_array_equal(_used(conv), calm.embedding)


def test_strength_without_a_neutral_entry_is_refused(conv, tmp_path):
    _two_entries(conv, tmp_path)
    conv.bank.remove("neutral")
    _recategorise(conv.bank.path, {"angry": "Angry"})
    conv.set_emotion("angry")  # the reference's own strength needs no neutral entry
    with pytest.raises(EVCError, match="neutral reference"):
        conv.set_emotion("angry", 0.5)


def test_entry_of_another_model_is_refused(conv, tmp_path):
    _two_entries(conv, tmp_path)
    raw = json.loads(conv.bank.path.read_text())
    raw["entries"]["angry"]["model"] = "0" * 64
    conv.bank.path.write_text(json.dumps(raw))
    with pytest.raises(EVCError, match="another model"):
        conv.set_emotion("angry")


def test_set_emotion_without_bank_or_bad_embedding(tmp_path):
    conv = StreamingConverter(toy_config(tmp_path), quiet=True)
    with pytest.raises(EVCError, match="no emotion bank"):
        conv.set_emotion("angry")
    with pytest.raises(EVCError, match="8 finite values"):
        conv.set_embedding(np.zeros(7, np.float32))
    with pytest.raises(EVCError, match="8 finite values"):
        conv.set_embedding(np.full(8, np.nan, np.float32))


def test_bypass_returns_the_input(conv, embedding):
    conv.set_embedding(embedding)
    conv.bypass = True
    audio = speech_like(1.0)
    out = run(conv, audio)
    np.testing.assert_array_equal(out, audio[: out.size])


def test_bypass_switches_with_a_one_block_ramp_and_keeps_the_model_warm(conv, embedding):
    audio = speech_like(1.0)
    b = conv.block_samples
    conv.set_embedding(embedding)
    wet = run(conv, audio)
    conv.reset()
    outs = []
    for i in range(audio.size // b):
        conv.bypass = 10 <= i < 20
        outs.append(conv.process(audio[i * b:(i + 1) * b]).copy())
    out = np.concatenate(outs)
    dry = audio[: out.size]
    ramp = np.arange(1, b + 1) / b
    np.testing.assert_allclose(out[10 * b:11 * b], dry[10 * b:11 * b] + (1 - ramp) * (wet - dry)[10 * b:11 * b],
                               atol=1e-5)
    np.testing.assert_array_equal(out[11 * b:20 * b], dry[11 * b:20 * b])
    np.testing.assert_allclose(out[20 * b:21 * b], dry[20 * b:21 * b] + ramp * (wet - dry)[20 * b:21 * b],
                               atol=1e-5)
    np.testing.assert_array_equal(out[21 * b:], wet[21 * b:])
    np.testing.assert_array_equal(out[:10 * b], wet[:10 * b])


def test_bypass_delays_by_the_lookahead(tmp_path):
    conv = StreamingConverter(toy_config(tmp_path, lookahead_frames=3), quiet=True)
    assert conv.delay_samples == 3 * conv.spec.hop
    conv.bypass = True
    audio = speech_like(0.5)
    out = run(conv, audio)
    np.testing.assert_array_equal(out[: conv.delay_samples], 0.0)
    np.testing.assert_array_equal(out[conv.delay_samples:], audio[: out.size - conv.delay_samples])


def test_reset_reproduces_the_stream(conv, embedding):
    audio = speech_like(1.0)
    conv.set_embedding(embedding)
    first = run(conv, audio)
    conv.set_embedding(-embedding, crossfade_blocks=50)
    run(conv, audio[:3200])
    conv.set_embedding(embedding, crossfade_blocks=50)
    conv.reset()  # settles the fade at its latest target
    np.testing.assert_array_equal(run(conv, audio), first)


def test_stats_count_blocks_and_give_ordered_percentiles(conv):
    assert conv.stats()["blocks"] == 0  # the warm-up block is not counted
    run(conv, np.zeros(conv.block_samples * (TIMING_WINDOW + 10), np.float32))
    s = conv.stats()
    assert s["blocks"] == TIMING_WINDOW + 10
    assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["block_ms"] == pytest.approx(20.0)
    assert s["rtf"] == pytest.approx(np.mean(conv._times._ns) / 1e6 / 20.0)


def test_model_config_mismatch_is_refused(tmp_path):
    cfg = toy_config(tmp_path)
    other = toy_config(tmp_path / "other", block_frames=4)
    with pytest.raises(ModelError, match="block_frames"):
        StreamingConverter(dataclasses.replace(cfg, signal=other.signal), quiet=True)


@pytest.fixture
def moving(tmp_path) -> StreamingConverter:
    """A converter on the toy model whose step graph takes the prosody move, imposed in full."""
    cfg = toy_config(tmp_path, prosody=True)
    cfg = dataclasses.replace(cfg, bank=dataclasses.replace(cfg.bank, pitch_move=1.0, level_move=1.0))
    return StreamingConverter(cfg, bank=EmotionBank(tmp_path / "bank.json"), quiet=True)


def _fed_move(conv: StreamingConverter) -> np.ndarray:
    conv.process(np.zeros(conv.block_samples, np.float32))
    return conv.runner.inputs["prosody"][0].copy()


def _moved_entries(conv: StreamingConverter, tmp_path) -> None:
    """neutral: a 110 Hz reference; high: the same an octave up; quiet: the same at half the amplitude."""
    encoder = EmotionEncoder(conv.sessions, conv.manifest)
    for name, f0, gain in (("neutral", 110.0, 1.0), ("high", 220.0, 1.0), ("quiet", 110.0, 0.5)):
        conv.bank.register(name, reference_wav(tmp_path / f"{name}.wav", seed=1, f0=f0, gain=gain), encoder)


@pytest.mark.parametrize("strength", [None, 0.0, 0.5, 1.5])
def test_the_measured_move_from_the_neutral_entry_reaches_the_step(moving, tmp_path, strength):
    """An octave up is a log-F0 shift of log 2 with the spread kept; half the amplitude a level
    -log 2 nepers under the neutral entry's with the pitch kept; each move (the level's from the neutral
    entry's to the reference's) times the strength, imposed with the config's weights."""
    _moved_entries(moving, tmp_path)
    s = 1.0 if strength is None else strength
    moving.set_emotion("high", strength, crossfade_blocks=0)
    high = _fed_move(moving)
    moving.set_emotion("quiet", strength, crossfade_blocks=0)
    quiet = _fed_move(moving)
    assert (high[0], high[3]) == (quiet[0], quiet[3]) == (1.0, 1.0)
    level, high_level = moving.bank.neutral().prosody[2], moving.bank.get("high").prosody[2]
    np.testing.assert_allclose(high[1:], [s * np.log(2.0), 0.0, 1.0, level + s * (high_level - level)], atol=0.01)
    np.testing.assert_allclose(quiet[[1, 2, 4]], [0.0, 0.0, level - s * np.log(2.0)], atol=0.01)


def test_the_move_is_crossfaded_with_the_embedding(moving, tmp_path):
    _moved_entries(moving, tmp_path)
    moving.set_emotion("high", 0.0, crossfade_blocks=0)
    start = _fed_move(moving)
    moving.set_emotion("high", 1.0, crossfade_blocks=4)
    fed = [_fed_move(moving) for _ in range(4)]
    np.testing.assert_allclose(fed[1], start + 0.5 * (fed[3] - start), atol=1e-6)
    assert fed[3][1] > 0.5


def test_the_move_weights_come_from_the_config(tmp_path):
    """Shipped with half the pitch move and no level move; a config's weights are fed as they are."""
    cfg = toy_config(tmp_path, prosody=True)
    assert (cfg.bank.pitch_move, cfg.bank.level_move) == (0.5, 0.0)
    cfg = dataclasses.replace(cfg, bank=dataclasses.replace(cfg.bank, pitch_move=0.0, level_move=0.25))
    conv = StreamingConverter(cfg, bank=EmotionBank(tmp_path / "bank.json"), quiet=True)
    _two_entries(conv, tmp_path)
    conv.set_emotion("angry", crossfade_blocks=0)
    move = _fed_move(conv)
    assert (move[0], move[3]) == (0.0, 0.25)


def test_no_neutral_entry_or_no_measured_prosody_feeds_no_move(moving, tmp_path):
    """Without a neutral entry, or with entries registered before prosody was measured, the step gets
    zeros: the generator's own prosody."""
    _two_entries(moving, tmp_path)
    raw = json.loads(moving.bank.path.read_text())
    for entry in raw["entries"].values():
        del entry["prosody"]
    moving.bank.path.write_text(json.dumps(raw))
    moving.set_emotion("angry", 1.0, crossfade_blocks=0)
    assert not _fed_move(moving).any()
    moving.bank.remove("neutral")
    _recategorise(moving.bank.path, {"angry": "Angry"})
    moving.set_emotion("angry", crossfade_blocks=0)
    assert not _fed_move(moving).any()
