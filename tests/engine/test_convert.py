"""`evc register`, `evc bank`, `evc convert` through engine.cli.main on the toy model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from engine.anchor import neutral_anchor
from engine.audio import load_audio
from engine.bank import EmotionBank
from engine.cli import main
from engine.cli_files import convert_array
from engine.features import log_mel_offline
from engine.pipeline import StreamingConverter
from engine.pitch import reference_pitch
from engine.prosody import prosody_move
from engine.signal import SignalSpec
from support.audio import speech_like
from support.toy_engine import reference_wav, toy_config, toy_config_file, write_wav
from support.toy_model import toy_centre, toy_reference


@pytest.fixture
def cfg_file(tmp_path):
    return toy_config_file(tmp_path)


@pytest.fixture
def registered(cfg_file, tmp_path, capsys):
    """cfg_file with 'angry' and 'neutral' in its bank."""
    for name, seed in (("angry", 2), ("neutral", 1)):
        ref = reference_wav(tmp_path / f"{name}_ref.wav", seed=seed, f0=100.0 + 50 * seed)
        assert main(["--config", str(cfg_file), "register", name, str(ref)]) == 0
    capsys.readouterr()
    return cfg_file


def _input(tmp_path, n: int, name: str = "in.wav") -> tuple:
    """A speech-like input of exactly n samples at 16 kHz, quiet enough not to clip; (path, samples)."""
    audio = 0.02 * speech_like(max(1.0, n / 16000 + 0.2), seed=7)[2000:2000 + n]
    path = write_wav(tmp_path / name, audio)
    return path, sf.read(str(path), dtype="float32")[0]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("evc: error: ") and err.count("\n") == 1, err
    return err


def test_register_list_show_remove(cfg_file, tmp_path, capsys):
    ref = reference_wav(tmp_path / "ref.wav")
    assert main(["--config", str(cfg_file), "register", "Angry", str(ref)]) == 0
    assert "registered 'angry'" in capsys.readouterr().out
    assert main(["--config", str(cfg_file), "bank", "list"]) == 0
    out = capsys.readouterr().out
    assert "angry" in out and str(ref.resolve()) in out and "other model" not in out
    assert main(["--config", str(cfg_file), "bank", "show", "angry"]) == 0
    out = capsys.readouterr().out
    assert "embedding: 8 values" in out and "category: Neutral" in out and "sha256: " in out
    assert main(["--config", str(cfg_file), "register", "angry", str(ref)]) == 1
    assert "--overwrite" in _error_line(capsys)
    assert main(["--config", str(cfg_file), "register", "angry", str(ref), "--overwrite"]) == 0
    assert main(["--config", str(cfg_file), "bank", "remove", "angry"]) == 0
    assert "removed 'angry'" in capsys.readouterr().out
    assert main(["--config", str(cfg_file), "bank", "list"]) == 0
    assert "no entries" in capsys.readouterr().out


def test_register_reads_references_from_a_given_neutral_utterance(cfg_file, tmp_path, capsys):
    ref = reference_wav(tmp_path / "ref.wav")
    quiet = reference_wav(tmp_path / "quiet.wav", seed=4, gain=0.1)
    assert main(["--config", str(cfg_file), "register", "plain", str(ref)]) == 0
    assert "read from the training speakers' average voice" in capsys.readouterr().out
    assert main(["--config", str(cfg_file), "register", "angry", str(ref), "--neutral", str(quiet)]) == 0
    assert f"read from --neutral {quiet}" in capsys.readouterr().out
    bank, spec = EmotionBank(tmp_path / "bank.json"), SignalSpec()
    quiet_audio = load_audio(quiet, 16000)
    voice = neutral_anchor([log_mel_offline(quiet_audio, spec)], [reference_pitch(quiet_audio, spec)])
    shift = (voice - toy_centre(spec))[:8]  # what the toy encoder subtracts for a reference read from `voice`
    assert np.abs(shift).max() > 0.5
    np.testing.assert_allclose(bank.get("plain").embedding - bank.get("angry").embedding, shift, atol=1e-4)
    assert main(["--config", str(cfg_file), "bank", "show", "plain"]) == 0
    assert "voice: mean log-mel" in capsys.readouterr().out
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    assert main(["--config", str(cfg_file), "register", "sad", str(ref), "--neutral", str(silent)]) == 1
    assert "no voiced speech" in _error_line(capsys)


def test_register_several_references_and_a_missing_one(cfg_file, tmp_path, capsys):
    refs = [str(reference_wav(tmp_path / f"ref{k}.wav", seed=k)) for k in range(2)]
    assert main(["--config", str(cfg_file), "register", "happy", *refs]) == 0
    assert "6.0 s" in capsys.readouterr().out  # durations summed: two references of 3 s
    assert main(["--config", str(cfg_file), "bank", "show", "happy"]) == 0
    out = capsys.readouterr().out
    assert "duration_s: 6.0" in out and all(str(Path(r).resolve()) in out for r in refs)
    assert main(["--config", str(cfg_file), "bank", "list"]) == 0
    assert f"2 references: {Path(refs[0]).resolve()} ..." in capsys.readouterr().out
    assert main(["--config", str(cfg_file), "register", "sad", refs[0], str(tmp_path / "nope.wav")]) == 1
    assert "nope.wav" in _error_line(capsys)


def test_bank_list_marks_entries_of_another_model(registered, tmp_path, capsys):
    bank_path = tmp_path / "bank.json"
    raw = json.loads(bank_path.read_text())
    raw["entries"]["angry"]["model"] = "0" * 64
    bank_path.write_text(json.dumps(raw))
    assert main(["--config", str(registered), "bank", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "other model" in line] == [line for line in lines if "angry" in line]


@pytest.mark.parametrize("n", [3200, 3201, 4999, 16017, 23999])
def test_output_length_equals_input_length(registered, tmp_path, capsys, n):
    src, _ = _input(tmp_path, n)
    assert main(["--config", str(registered), "convert", str(src), "--emotion", "angry", "--strength", "0.7"]) == 0
    out = capsys.readouterr().out
    dst = tmp_path / "in.angry.wav"
    assert f"wrote {dst}" in out and "algorithmic latency 20.0 ms" in out and "measured RTF" in out
    info = sf.info(str(dst))
    assert (info.frames, info.samplerate, info.channels) == (n, 16000, 1)


@pytest.mark.parametrize("n", [1, 319, 320, 321, 5000])
def test_convert_array_is_the_streaming_pipeline(tmp_path, n):
    conv = StreamingConverter(toy_config(tmp_path), quiet=True)
    emb = np.linspace(-1, 1, 8).astype(np.float32)
    conv.set_embedding(emb)
    audio = speech_like(0.5, seed=3)[800:800 + n]
    out = convert_array(conv, audio)
    padded = np.zeros(-(-n // 320) * 320, np.float32)
    padded[:n] = audio
    expected = toy_reference(log_mel_offline(padded, conv.spec), emb, conv.spec)[:n]
    assert out.shape == (n,) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-5)


def test_convert_array_removes_the_models_delay(tmp_path):
    """Bypass delays by exactly the model's delay, so a bypassed file comes back aligned."""
    conv = StreamingConverter(toy_config(tmp_path, lookahead_frames=2), quiet=True)
    conv.bypass = True
    audio = speech_like(0.3, seed=4)[:4321]
    np.testing.assert_array_equal(convert_array(conv, audio), audio)


def test_bypass_convert_returns_the_input_samples(registered, tmp_path, capsys):
    src, samples = _input(tmp_path, 7777)
    dst = tmp_path / "out" / "dry.wav"
    assert main(["--config", str(registered), "convert", str(src), "--bypass", "-o", str(dst)]) == 0
    np.testing.assert_array_equal(sf.read(str(dst), dtype="float32")[0], samples)


def test_never_overwrites_the_input(registered, tmp_path, capsys, monkeypatch):
    src, _ = _input(tmp_path, 5000)
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for spelled in (str(src), "../in.wav", str(tmp_path / "sub" / ".." / "in.wav")):
        assert main(["--config", str(registered), "convert", str(src), "--emotion", "angry", "-o", spelled]) == 1
        assert "is the input file" in _error_line(capsys)
    (tmp_path / "link.wav").hardlink_to(src)
    assert main(["--config", str(registered), "convert", str(src), "--emotion", "angry", "-o", "../link.wav"]) == 1
    assert "is the input file" in _error_line(capsys)
    assert src.read_bytes() == before


def test_other_rate_and_channels_are_resampled_with_a_note(registered, tmp_path, capsys):
    stereo = 0.02 * np.stack([speech_like(0.7, 44100, seed=1), speech_like(0.7, 44100, seed=2)], axis=1)
    src = write_wav(tmp_path / "stereo.wav", stereo, sr=44100)
    assert main(["--config", str(registered), "convert", str(src), "--emotion", "angry"]) == 0
    out = capsys.readouterr().out
    assert "note: input downmixed from 2 channels, resampled from 44100 Hz to 16000 Hz mono" in out
    info = sf.info(str(tmp_path / "stereo.angry.wav"))
    assert (info.frames, info.samplerate) == (load_audio(src, 16000).size, 16000)


def _bad_wav(tmp_path, kind: str):
    path = tmp_path / f"{kind}.wav"
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    elif kind == "empty":
        write_wav(path, np.zeros(0, np.float32))
    elif kind == "silent":
        write_wav(path, np.zeros(16000, np.float32))
    elif kind == "nan":
        audio = 0.1 * speech_like(1.0)
        audio[100:103] = np.nan
        write_wav(path, audio, subtype="FLOAT")
    elif kind == "inf":
        write_wav(path, np.full(1000, np.inf, np.float32), subtype="FLOAT")
    return path


def _with_bank_entry_model(tmp_path, value: str) -> None:
    raw = json.loads((tmp_path / "bank.json").read_text())
    raw["entries"]["angry"]["model"] = value
    (tmp_path / "bank.json").write_text(json.dumps(raw))


def _mismatched_config(tmp_path):
    data = yaml.safe_load((tmp_path / "engine.yaml").read_text())
    data["signal"]["block_frames"] = 4
    path = tmp_path / "block4.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD = {
    # case: (argv after --config, with IN = a good input; what the error must say)
    "missing input": (lambda t: ["convert", str(t / "nope.wav"), "--emotion", "angry"], "not found"),
    "corrupt input": (lambda t: ["convert", str(_bad_wav(t, "corrupt")), "--emotion", "angry"], "cannot decode"),
    "empty input": (lambda t: ["convert", str(_bad_wav(t, "empty")), "--emotion", "angry"], "empty"),
    "silent input": (lambda t: ["convert", str(_bad_wav(t, "silent")), "--emotion", "angry"], "silent"),
    "nan samples": (lambda t: ["convert", str(_bad_wav(t, "nan")), "--emotion", "angry"], "3 of its 16000 samples"),
    "all inf": (lambda t: ["convert", str(_bad_wav(t, "inf")), "--emotion", "angry"], "no finite sample"),
    "unknown emotion": (lambda t: ["convert", "IN", "--emotion", "angri"], "did you mean angry"),
    "no emotion": (lambda t: ["convert", "IN"], "--emotion"),
    "strength too high": (lambda t: ["convert", "IN", "--emotion", "angry", "--strength", "2"], "strength"),
    "missing model": (lambda t: ["convert", "IN", "--emotion", "angry", "--model", str(t / "none")], "not found"),
    "entry of another model": (lambda t: _with_bank_entry_model(t, "0" * 64) or ["convert", "IN", "--emotion", "angry"],
                               "another model"),
    "corrupt bank": (lambda t: (t / "bank.json").write_text("{") and ["convert", "IN", "--emotion", "angry"],
                     "corrupt"),
    "output is a directory": (lambda t: ["convert", "IN", "--emotion", "angry", "-o", str(t)], "directory"),
    "short reference": (lambda t: ["register", "x", str(reference_wav(t / "short.wav", seconds=1.0))], "voiced"),
    "silent reference": (lambda t: ["register", "x", str(_bad_wav(t, "silent"))], "silent"),
    "bad name": (lambda t: ["register", "no way", str(reference_wav(t / "r.wav"))], "invalid emotion name"),
    "show unknown": (lambda t: ["bank", "show", "happy"], "unknown emotion 'happy'"),
    "remove unknown": (lambda t: ["bank", "remove", "happy"], "unknown emotion 'happy'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_nonzero(registered, tmp_path, capsys, case):
    build, says = BAD[case]
    src, _ = _input(tmp_path, 8000)
    argv = [str(src) if a == "IN" else a for a in build(tmp_path)]
    assert main(["--config", str(registered), *argv]) != 0
    assert says in _error_line(capsys)
    assert not list(tmp_path.glob("in.*.wav"))


def test_model_mismatch_is_one_line_naming_the_field(registered, tmp_path, capsys):
    src, _ = _input(tmp_path, 8000)
    assert main(["--config", str(_mismatched_config(tmp_path)), "convert", str(src), "--emotion", "angry"]) == 1
    assert "block_frames" in _error_line(capsys)


def test_convert_runs_the_bank_embedding_through_the_pipeline(registered, tmp_path, capsys, monkeypatch):
    """What convert writes (before 16-bit quantisation, which clips the toy's large values) is
    convert_array with the bank entry's embedding: strength 0.5 halfway from neutral."""
    import engine.cli_files

    written = {}
    monkeypatch.setattr(engine.cli_files, "_save", lambda dst, audio, sr: written.update(audio=audio.copy()))
    src, samples = _input(tmp_path, 6400)
    assert main(["--config", str(registered), "convert", str(src), "--emotion", "angry", "--strength", "0.5"]) == 0
    bank = EmotionBank(tmp_path / "bank.json")
    neutral, angry = bank.get("neutral").embedding, bank.get("angry").embedding
    conv = StreamingConverter(toy_config(tmp_path / "again"), quiet=True)
    conv.set_embedding(neutral + 0.5 * (angry - neutral))
    np.testing.assert_allclose(written["audio"], convert_array(conv, samples), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_convert_equals_the_offline_pytorch_render(tmp_path, capsys, monkeypatch):
    """Tiny random-weight checkpoints exported with 2-frame blocks: `evc register` then
    `evc convert` (block by block through ONNX Runtime) equals export.reference.render_offline
    (whole utterance in PyTorch) with the bank's embedding and prosody move from its neutral
    entry: the embedding within 1e-4, the
    audio within export.verify's log-spectral tolerance. Not sample by sample: the vocoder's
    excitation phase integrates the generator's F0, so last-bit differences of its log-F0
    between ONNX Runtime and PyTorch shift later pulses by a fraction of a sample (about
    3e-2 max abs here) without changing what is heard; export checks the frames themselves
    to 1e-4."""
    pytest.importorskip("torch")
    reference = pytest.importorskip("export.reference")
    import engine.cli_files
    from export.model_dir import export_model
    from export.verify import SPECTRAL_TOLERANCE_DB, log_spectral_distance_db
    from support.tiny_checkpoints import write_checkpoint

    stage2 = write_checkpoint(tmp_path / "stage2.pt", "stage2", seed=0)
    vocoder = write_checkpoint(tmp_path / "vocoder.pt", "vocoder", seed=1)
    export_model(stage2, vocoder, tmp_path / "model", block_frames=2)
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"dir": str(tmp_path / "model")}, "runtime": {"providers": ["cpu"]},
                                   "bank": {"path": str(tmp_path / "bank.json"), "pitch_move": 1.0,
                                            "level_move": 1.0},
                                   "signal": {"lookahead_frames": 0}}))  # the tiny checkpoints' own
    neutral_ref = reference_wav(tmp_path / "neutral.wav", seed=4, f0=150.0)
    ref = reference_wav(tmp_path / "ref.wav", seed=5, f0=210.0, gain=1.5)
    assert main(["--config", str(cfg), "register", "neutral", str(neutral_ref)]) == 0
    assert main(["--config", str(cfg), "register", "happy", str(ref)]) == 0
    bank = EmotionBank(tmp_path / "bank.json")
    entry, neutral = bank.get("happy"), bank.get("neutral")
    np.testing.assert_allclose(entry.embedding, reference.reference_embedding(stage2, load_audio(ref), neutral.voice),
                               atol=1e-4)
    move = prosody_move(entry.prosody, neutral.prosody, 1.0, 1.0, 1.0)
    assert move[1] > 0.2 and move[4] > 0.1  # higher and louder: the step graph imposes a real move

    written = {}
    monkeypatch.setattr(engine.cli_files, "_save", lambda dst, audio, sr: written.update(audio=audio.copy()))
    n = 48_877  # 305 whole frames, ragged against the 2-frame block, plus a partial hop
    src = write_wav(tmp_path / "in.wav", 0.5 * speech_like(3.1, seed=3)[:n])
    samples = sf.read(str(src), dtype="float32")[0]
    assert main(["--config", str(cfg), "convert", str(src), "--emotion", "happy"]) == 0
    got = written["audio"]
    assert got.shape == (n,)
    offline = reference.render_offline(stage2, vocoder, samples, entry.embedding, move)
    assert offline.size == n - n % 160 and np.abs(offline).max() > 0.05
    distance = log_spectral_distance_db(got[: offline.size], offline)
    assert distance < SPECTRAL_TOLERANCE_DB, f"log-spectral distance {distance:.3g} dB"
    # The distance is not blind: the same audio 1 dB louder is 1 dB away, 20 tolerances.
    assert log_spectral_distance_db(1.122 * got[: offline.size], offline) == pytest.approx(1.0, abs=0.01)
    assert "running on CPUExecutionProvider" in capsys.readouterr().out
