"""EmotionBank on the toy model: register/list/get/remove, names, refusals, atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from engine.audio import load_audio
from engine.bank import FORMAT, SOURCE_SEPARATOR, EmotionBank, EmotionEncoder, check_entry, model_id, valid_name
from engine.errors import EVCError
from engine.features import log_mel_offline
from engine.manifest import load_manifest, sha256_file
from engine.prosody import prosody_stats
from engine.runtime import Sessions
from support.toy_engine import reference_wav, toy_config, write_wav

DIM = 8


@pytest.fixture
def cfg(tmp_path):
    return toy_config(tmp_path)


@pytest.fixture
def encoder(cfg):
    manifest = load_manifest(cfg.model_dir)
    return EmotionEncoder(Sessions(cfg.model_dir, manifest, cfg.runtime, quiet=True), manifest)


@pytest.fixture
def bank(cfg):
    return EmotionBank(cfg.bank_path)


@pytest.fixture
def ref(tmp_path):
    return reference_wav(tmp_path / "ref.wav")


def test_register_stores_what_the_encoder_says(bank, encoder, ref):
    entry = bank.register("Angry", ref, encoder)
    audio = load_audio(ref, 16000)
    # the toy encoder's embedding is the mean over time of the first 8 log-mel bins
    expected = log_mel_offline(audio, encoder.manifest.spec)[:DIM].mean(axis=1)
    np.testing.assert_allclose(entry.embedding, expected, rtol=1e-5)
    assert entry.name == "angry"
    assert entry.category == "Neutral"  # uniform probabilities: the first class wins
    assert entry.probabilities == pytest.approx({e: 0.2 for e in encoder.manifest.emotions})
    assert entry.strength == pytest.approx(0.5)
    assert entry.duration_s == pytest.approx(3.0)
    assert 1.0 <= entry.voiced_s < 3.0
    assert entry.sha256 == sha256_file(ref)
    assert entry.source == str(ref.resolve())
    assert entry.model == model_id(encoder.manifest) == encoder.manifest.graphs["emotion_encoder"].sha256
    assert entry.registered.endswith("+00:00")
    np.testing.assert_array_equal(entry.prosody, prosody_stats(encoder.analyse(audio)))


def test_several_references_are_stored_as_their_mean(bank, encoder, tmp_path):
    refs = [reference_wav(tmp_path / f"ref{k}.wav", seed=k, f0=f0, gain=g)
            for k, (f0, g) in enumerate([(120.0, 1.0), (200.0, 0.3), (160.0, 0.6)])]
    alone = [bank.register(f"one{k}", r, encoder) for k, r in enumerate(refs)]
    entry = bank.register("angry", [str(r) for r in refs], encoder)
    np.testing.assert_allclose(entry.embedding, np.mean([e.embedding for e in alone], axis=0), rtol=1e-6)
    assert not np.allclose(alone[0].embedding, alone[1].embedding)  # the mean is not any one of them
    assert entry.duration_s == pytest.approx(9.0)
    assert entry.voiced_s == pytest.approx(sum(e.voiced_s for e in alone), abs=2e-3)
    assert entry.source.split(SOURCE_SEPARATOR) == [str(r.resolve()) for r in refs]
    assert entry.sha256 != alone[0].sha256 and len(entry.sha256) == 64
    np.testing.assert_allclose(entry.prosody, np.mean([e.prosody for e in alone], axis=0), rtol=1e-6)
    assert EmotionBank(bank.path).get("angry").to_json() == entry.to_json()


def test_one_bad_reference_among_several_is_named_and_nothing_is_stored(bank, encoder, tmp_path):
    good = reference_wav(tmp_path / "good.wav")
    silent = write_wav(tmp_path / "silent.wav", np.zeros(48000, np.float32))
    with pytest.raises(EVCError, match="silent.wav is silent"):
        bank.register("angry", [good, silent], encoder)
    assert bank.list() == []


def test_entries_survive_a_reload(bank, encoder, ref, cfg):
    stored = bank.register("angry", ref, encoder)
    again = EmotionBank(cfg.bank_path).get("ANGRY")
    np.testing.assert_array_equal(again.embedding, stored.embedding)
    assert again.to_json() == stored.to_json()
    raw = json.loads(cfg.bank_path.read_text())
    assert raw["format"] == FORMAT and list(raw["entries"]) == ["angry"]


def test_list_get_remove(bank, encoder, ref):
    assert bank.list() == []
    for name in ("sad", "angry", "happy"):
        bank.register(name, ref, encoder)
    assert [e.name for e in bank.list()] == ["angry", "happy", "sad"]
    assert bank.remove("Happy").name == "happy"
    assert [e.name for e in bank.list()] == ["angry", "sad"]
    with pytest.raises(EVCError, match="unknown emotion 'happy'"):
        bank.remove("happy")


def test_missing_name_suggests_close_matches(bank, encoder, ref):
    with pytest.raises(EVCError, match="bank .* is empty"):
        bank.get("angry")
    bank.register("angry", ref, encoder)
    bank.register("sad", ref, encoder)
    with pytest.raises(EVCError, match="did you mean angry") as err:
        bank.get("angyr")
    assert "\n" not in str(err.value)
    with pytest.raises(EVCError, match="the bank has angry, sad"):
        bank.get("zzz")


def test_existing_name_needs_overwrite(bank, encoder, ref, tmp_path):
    first = bank.register("angry", ref, encoder)
    other = reference_wav(tmp_path / "other.wav", seed=5, gain=0.3)
    with pytest.raises(EVCError, match="--overwrite"):
        bank.register("angry", other, encoder)
    np.testing.assert_array_equal(bank.get("angry").embedding, first.embedding)
    second = bank.register("angry", other, encoder, overwrite=True)
    assert second.sha256 != first.sha256
    assert bank.get("angry").sha256 == second.sha256


@pytest.mark.parametrize("name", ["", "-x", "_x", "a" * 33, "a b", "a/b", "é", "x.y", None])
def test_bad_names_are_refused(name):
    with pytest.raises(EVCError, match="invalid emotion name"):
        valid_name(name)


@pytest.mark.parametrize("name, stored", [("A", "a"), ("Angry_2", "angry_2"), ("x-Y", "x-y"), ("9" * 32, "9" * 32)])
def test_good_names_are_lower_cased(name, stored):
    assert valid_name(name) == stored


def test_bad_name_is_refused_before_encoding(bank, encoder, tmp_path):
    with pytest.raises(EVCError, match="invalid emotion name"):
        bank.register("no good", tmp_path / "missing.wav", encoder)
    assert not bank.path.exists()


def test_too_short_reference_is_refused(bank, encoder, tmp_path):
    short = reference_wav(tmp_path / "short.wav", seconds=1.0)  # about 0.6 s voiced
    with pytest.raises(EVCError, match=r"0\.\d+ s of voiced audio, at least 1 s") as err:
        bank.register("angry", short, encoder)
    assert "\n" not in str(err.value)
    assert not bank.path.exists()


def test_silent_reference_is_refused(bank, encoder, tmp_path):
    silent = write_wav(tmp_path / "silent.wav", np.zeros(48000, np.float32))
    with pytest.raises(EVCError, match="silent"):
        bank.register("angry", silent, encoder)


def test_missing_reference_is_refused(bank, encoder, tmp_path):
    with pytest.raises(EVCError, match="not found"):
        bank.register("angry", tmp_path / "nope.wav", encoder)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": "other", "entries": {}}',
                                     '{"format": "evc-bank/1", "entries": {"a": {"embedding": [1.0]}}}',
                                     '{"format": "evc-bank/1", "entries": {"bad name": {}}}'])
def test_corrupt_bank_is_reported_and_never_overwritten(bank, encoder, ref, content):
    bank.path.write_text(content)
    for call in (bank.list, lambda: bank.get("a"), lambda: bank.register("angry", ref, encoder)):
        with pytest.raises(EVCError, match="corrupt") as err:
            call()
        message = str(err.value)
        assert str(bank.path) in message and "move it away" in message and "\n" not in message
    assert bank.path.read_text() == content


def test_entry_from_another_model_is_detected(bank, encoder, ref, tmp_path):
    entry = bank.register("angry", ref, encoder)
    check_entry(entry, encoder.manifest)
    other = toy_config(tmp_path / "other", block_frames=4)
    other_manifest = load_manifest(other.model_dir)
    # a re-export with another block size keeps the same encoder: entries stay valid
    assert model_id(other_manifest) == model_id(encoder.manifest)
    raw = json.loads(bank.path.read_text())
    raw["entries"]["angry"]["model"] = "f" * 64
    bank.path.write_text(json.dumps(raw))
    with pytest.raises(EVCError, match="another model's emotion encoder"):
        check_entry(bank.get("angry"), encoder.manifest)


def test_neutral_prefers_the_entry_named_neutral(bank, encoder, ref):
    bank.register("calm", ref, encoder)
    bank.register("neutral", ref, encoder)
    assert bank.neutral().name == "neutral"


def _shift(encoder, voice):
    """What the toy encoder subtracts from its embedding for a reference read from `voice`."""
    return (voice - encoder.manifest.anchor_centre)[:DIM]


def test_emotions_are_read_from_the_neutral_entrys_voice(bank, encoder, tmp_path):
    quiet, loud = (reference_wav(tmp_path / f"{n}.wav", seed=k, gain=g) for k, (n, g) in
                   enumerate([("neutral", 0.2), ("angry", 1.0)]))
    before = bank.register("early", loud, encoder)  # no neutral voice yet: the training speakers' average
    neutral = bank.register("neutral", quiet, encoder)
    angry = bank.register("angry", loud, encoder)
    assert before.read_from == "the training speakers' average voice"
    assert neutral.read_from == "its own voice" and angry.read_from == "the bank's neutral entry"
    voice = encoder.voice(encoder.analyse(load_audio(quiet, 16000)))
    np.testing.assert_allclose(neutral.voice, voice)
    pooled = log_mel_offline(load_audio(loud, 16000), encoder.manifest.spec)[:DIM].mean(axis=1)
    np.testing.assert_allclose(before.embedding, pooled, rtol=1e-5)
    np.testing.assert_allclose(angry.embedding, pooled - _shift(encoder, voice), rtol=1e-5, atol=1e-5)
    assert np.abs(angry.embedding - before.embedding).min() > 0.5  # a 14 dB quieter voice moves every value
    assert EmotionBank(bank.path).get("angry").to_json() == angry.to_json()


def test_given_voices_override_the_rule(bank, encoder, tmp_path):
    refs = [reference_wav(tmp_path / f"r{k}.wav", seed=k) for k in range(2)]
    voices = [(np.full(81, -4.0, np.float32), "speaker A's neutral"), (None, "the average voice")]
    entry = bank.register("angry", refs, encoder, voices=voices)
    pooled = [log_mel_offline(load_audio(r, 16000), encoder.manifest.spec)[:DIM].mean(axis=1) for r in refs]
    expected = np.mean([pooled[0] - _shift(encoder, voices[0][0]), pooled[1]], axis=0)
    np.testing.assert_allclose(entry.embedding, expected, rtol=1e-5, atol=1e-5)
    assert entry.read_from == "speaker A's neutral; the average voice"


def test_a_model_without_anchors_reads_references_as_they_are(tmp_path):
    from support.toy_model import write_toy_model

    model = write_toy_model(tmp_path / "old", anchored=False)
    manifest = load_manifest(model)
    old = EmotionEncoder(Sessions(model, manifest, toy_config(tmp_path).runtime, quiet=True), manifest)
    bank = EmotionBank(tmp_path / "bank.json")
    ref = reference_wav(tmp_path / "ref.wav")
    bank.register("neutral", reference_wav(tmp_path / "n.wav", seed=3, gain=0.2), old)
    entry = bank.register("angry", ref, old)
    pooled = log_mel_offline(load_audio(ref, 16000), manifest.spec)[:DIM].mean(axis=1)
    np.testing.assert_allclose(entry.embedding, pooled, rtol=1e-5)
    assert manifest.anchor_centre is None and entry.voice is None and "takes no neutral voice" in entry.read_from


def test_a_bank_written_before_anchors_still_loads(bank, encoder, ref):
    bank.register("angry", ref, encoder)
    raw = json.loads(bank.path.read_text())
    for entry in raw["entries"].values():
        del entry["voice"], entry["read_from"]
    bank.path.write_text(json.dumps(raw))
    old = bank.get("angry")
    assert old.voice is None and old.read_from == "" and old.prosody is not None
    assert bank.register("calm", ref, encoder).read_from == "the training speakers' average voice"


def test_a_bank_written_before_prosody_still_loads(bank, encoder, ref):
    bank.register("angry", ref, encoder)
    raw = json.loads(bank.path.read_text())
    del raw["entries"]["angry"]["prosody"]
    bank.path.write_text(json.dumps(raw))
    assert bank.get("angry").prosody is None


@pytest.mark.parametrize("prosody", [[1.0, 2.0], [1.0, float("nan"), 2.0], "loud"])
def test_malformed_prosody_is_reported_as_a_corrupt_bank(bank, encoder, ref, prosody):
    bank.register("angry", ref, encoder)
    raw = json.loads(bank.path.read_text())
    raw["entries"]["angry"]["prosody"] = prosody
    bank.path.write_text(json.dumps(raw))
    with pytest.raises(EVCError, match="corrupt.*prosody"):
        bank.get("angry")


_WRITER = textwrap.dedent("""
    import json, os, sys, time
    from engine.bank import EmotionBank

    path, mode = sys.argv[1], sys.argv[2]

    def half_dump(data, f, **kw):
        text = json.dumps(data, **kw)
        f.write(text[: len(text) // 2])
        f.flush()
        os.fsync(f.fileno())
        if mode == "exit-mid-write":
            os._exit(9)
        print("half written", flush=True)
        time.sleep(60)

    if mode == "exit-before-rename":
        os.replace = lambda *args: os._exit(9)
    else:
        json.dump = half_dump
    EmotionBank(path).remove("angry")
""")


@pytest.mark.parametrize("mode", ["exit-mid-write", "exit-before-rename", "sigkill-mid-write"])
def test_a_crash_while_writing_leaves_the_old_bank(bank, encoder, ref, mode):
    """A writer that dies half-way through the JSON (exits, or is SIGKILLed while blocked), or
    just before the rename, leaves the old bank byte for byte, still loadable."""
    bank.register("angry", ref, encoder)
    before = bank.path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(bank.path), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if mode.startswith("sigkill"):
        assert proc.stdout.readline().strip() == "half written", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode == (-signal.SIGKILL if mode.startswith("sigkill") else 9), proc.stderr.read()
    assert bank.path.read_bytes() == before
    assert [e.name for e in EmotionBank(bank.path).list()] == ["angry"]
    assert list(bank.path.parent.glob(".bank.json.*.tmp"))  # the torn write went to a temp file
    bank.register("sad", ref, encoder)  # which is in nobody's way
    assert [e.name for e in bank.list()] == ["angry", "sad"]
