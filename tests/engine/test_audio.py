"""engine.audio on generated files: rates, channels, broken files, atomic writes, activity."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

from engine.audio import is_silent, load_audio, rms_db, save_audio, voiced_seconds
from engine.errors import AudioError


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the spectral peak, interpolated between bins (well under 1 Hz error)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=8 * x.size))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1: k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (8 * x.size)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_44k_stereo_becomes_16k_mono(tmp_path):
    left = _tone(440.0, 1.5, 44100, amp=0.5)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, 0.5 * left], axis=1), 44100, subtype="PCM_24")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    assert x.size == 24000  # 1.5 s at 16 kHz
    assert abs(_peak_hz(x, 16000) - 440.0) < 1.0
    # The downmix is the mean of the channels: amplitude 0.75 * 0.5.
    assert _rms(x[1000:-1000]) == pytest.approx(0.375 / np.sqrt(2), rel=0.01)


def test_8k_is_upsampled(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, _tone(1000.0, 2.0, 8000, amp=0.3), 8000)
    x = load_audio(path)
    assert x.size == 32000
    assert abs(_peak_hz(x, 16000) - 1000.0) < 1.0
    assert _rms(x[500:-500]) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)
    # Nothing above the original Nyquist frequency appears.
    spectrum = np.abs(np.fft.rfft(x))
    assert spectrum[np.fft.rfftfreq(x.size, 1 / 16000) > 4100].max() < 1e-3 * spectrum.max()


def test_16k_int16_is_read_unchanged(tmp_path):
    pcm = (np.random.default_rng(0).standard_normal(16000) * 3000).astype(np.int16)
    path = tmp_path / "native.wav"
    sf.write(path, pcm, 16000)
    np.testing.assert_array_equal(load_audio(path), pcm.astype(np.float32) / 32768)


def test_other_target_rate(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, _tone(300.0, 1.0, 16000), 16000)
    x = load_audio(path, sample_rate=22050)
    assert x.size == 22050 and abs(_peak_hz(x, 22050) - 300.0) < 1.0


def test_isolated_nan_and_inf_are_zeroed_with_one_warning(tmp_path):
    x = _tone(200.0, 0.5, 16000)
    x[[10, 500, 4000]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning) as caught:
        y = load_audio(path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "3 NaN/inf" in message and "\n" not in message
    assert np.isfinite(y).all() and y.size == x.size
    assert y[10] == y[500] == y[4000] == 0.0
    np.testing.assert_array_equal(np.delete(y, [10, 500, 4000]), np.delete(x, [10, 500, 4000]))


def test_nan_in_one_channel_does_not_poison_the_other(tmp_path):
    left, right = _tone(200.0, 0.1, 16000), _tone(200.0, 0.1, 16000)
    left[7] = np.nan
    path = tmp_path / "nan_stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match="1 NaN/inf"):
        y = load_audio(path)
    assert y[7] == pytest.approx(right[7] / 2)


def _broken_files(tmp_path):
    """name -> path of each kind of unusable file."""
    all_nan = tmp_path / "all_nan.wav"
    sf.write(all_nan, np.full(100, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x01garbage that is not a wav header" * 10)
    return {"missing": tmp_path / "nowhere.wav", "directory": tmp_path, "corrupt": corrupt,
            "empty": empty, "all_nan": all_nan}


def test_each_broken_file_has_its_own_one_line_message(tmp_path):
    messages = {}
    for name, path in _broken_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load_audio(path)
        messages[name] = str(info.value)
    assert len(set(messages.values())) == len(messages)
    assert all("\n" not in m and str(tmp_path) in m for m in messages.values())
    assert "not found" in messages["missing"]
    assert "WAV" in messages["corrupt"]
    assert "empty" in messages["empty"]
    assert "NaN" in messages["all_nan"]


def test_save_round_trip_is_pcm16(tmp_path):
    x = _tone(440.0, 0.25, 16000, amp=0.8)
    path = tmp_path / "out" / "sub" / "x.wav"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_audio(path, x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
    np.testing.assert_allclose(load_audio(path), x, atol=1.0 / 32768 + 1e-7)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.wav"]


def test_save_clips_loudly_never_wraps(tmp_path):
    x = np.array([0.0, 1.5, -2.0, 0.5, 1.0], dtype=np.float32)
    path = tmp_path / "loud.wav"
    with pytest.warns(UserWarning, match=r"2 sample\(s\) beyond \[-1, 1\] \(peak 2.000\)"):
        save_audio(path, x)
    y = load_audio(path)
    assert y[1] > 0.999 and y[2] < -0.999 and y[4] > 0.999
    assert y[3] == pytest.approx(0.5, abs=1e-4)


def test_save_zeroes_nan_with_warning(tmp_path):
    path = tmp_path / "nan.wav"
    with pytest.warns(UserWarning, match="1 NaN/inf"):
        save_audio(path, np.array([0.25, np.nan, 0.25], dtype=np.float32))
    np.testing.assert_allclose(load_audio(path), [0.25, 0.0, 0.25], atol=1e-4)


def test_save_replaces_atomically_and_cleans_up_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.wav"
    save_audio(path, np.full(100, 0.5, dtype=np.float32))
    save_audio(path, np.full(50, 0.25, dtype=np.float32))
    assert load_audio(path).size == 50

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        save_audio(path, np.zeros(10, dtype=np.float32))
    monkeypatch.undo()
    assert load_audio(path) == pytest.approx(np.full(50, 0.25), abs=1e-4)  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temp file left


def test_save_rejects_multichannel(tmp_path):
    with pytest.raises(AudioError, match=r"shape \(N,\)"):
        save_audio(tmp_path / "x.wav", np.zeros((10, 2), dtype=np.float32))


def test_rms_db_and_is_silent():
    assert rms_db(_tone(100.0, 1.0, 16000, amp=1.0)) == pytest.approx(-3.01, abs=0.01)
    assert rms_db(np.zeros(10, dtype=np.float32)) == float("-inf")
    assert is_silent(np.zeros(1600, dtype=np.float32))
    assert is_silent(np.zeros(0, dtype=np.float32))
    quiet = _tone(100.0, 1.0, 16000, amp=np.sqrt(2) * 10 ** (-70 / 20))  # -70 dBFS
    loud = _tone(100.0, 1.0, 16000, amp=np.sqrt(2) * 10 ** (-50 / 20))  # -50 dBFS
    assert is_silent(quiet) and not is_silent(loud)
    assert not is_silent(quiet, threshold_db=-80)


def test_voiced_seconds_measures_the_active_part():
    sr = 16000
    rng = np.random.default_rng(0)
    hiss = (1e-4 * rng.standard_normal(3 * sr)).astype(np.float32)  # -80 dBFS
    x = hiss.copy()
    x[sr: sr + sr // 2] += _tone(200.0, 0.5, sr, amp=0.5)
    assert voiced_seconds(x, sr) == pytest.approx(0.5, abs=0.02)
    assert voiced_seconds(hiss, sr) == 0.0  # below the absolute floor
    assert voiced_seconds(np.zeros(sr, dtype=np.float32), sr) == 0.0
    assert voiced_seconds(np.zeros(10, dtype=np.float32), sr) == 0.0
    # A much quieter second burst is beyond rel_db of the loud one and does not count.
    x[2 * sr: 2 * sr + sr // 4] += _tone(200.0, 0.25, sr, amp=0.5 * 10 ** (-40 / 20))
    assert voiced_seconds(x, sr) == pytest.approx(0.5, abs=0.02)
    assert voiced_seconds(x, sr, rel_db=-45) == pytest.approx(0.75, abs=0.04)


def test_import_is_light():
    code = "import sys, engine.audio; print(sorted({'librosa', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
