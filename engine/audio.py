"""Audio file I/O: the one loader every package uses, an atomic writer, activity measures.

Everything comes out as the signal contract wants it: (N,) float32 mono at the
requested rate. Bad files stop with a one-line AudioError that says what is wrong;
librosa (slow to import) is only imported when a file needs resampling.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.errors import AudioError

_FORMATS = "WAV, FLAC, OGG or MP3"


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Audio file as (N,) float32 mono at sample_rate.

    Channels are averaged; another rate is resampled (soxr_hq). Isolated NaN/inf
    samples are zeroed with a warning; a missing, unreadable, empty or all-NaN file
    raises AudioError.
    """
    path = Path(path)
    data, rate = _read(path)
    data = _finite(data, path)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _read(path: Path) -> tuple[np.ndarray, int]:
    """(N, C) float32 samples and the file's rate; AudioError for a file that gives none."""
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioError(f"not an audio file but a directory or device: {path}")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        # error_string is libsndfile's reason without the path the message repeats.
        reason = getattr(e, "error_string", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise AudioError(f"cannot decode {path}: expected a {_FORMATS} file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file is empty (0 samples): {path}")
    return data, rate


def _finite(data: np.ndarray, path: Path) -> np.ndarray:
    """data with NaN/inf samples zeroed (warned); AudioError when none is finite.

    Zeroed before downmixing so that one bad channel does not poison the others.
    """
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return data
    if n_bad == data.size:
        raise AudioError(f"audio file holds no finite sample (all {n_bad} are NaN/inf): {path}")
    warnings.warn(f"{path}: {n_bad} NaN/inf sample(s) of {data.size} replaced by 0", stacklevel=3)
    data[bad] = 0.0
    return data


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write (N,) audio as a 16-bit PCM WAV, atomically.

    The file is written beside the target and renamed over it, so a crash never
    leaves a truncated file. Samples beyond [-1, 1] are clipped and NaN/inf zeroed,
    each with a warning: clipping is distortion the user should hear about, not a
    silent side effect of the 16-bit format.
    """
    path = Path(path)
    audio = _writable(np.asarray(audio, dtype=np.float32), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 lets the umask set permissions as for any new file
        # (mkstemp would leave the result readable by its owner only).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            sf.write(f, audio, sample_rate, subtype="PCM_16", format="WAV")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _writable(audio: np.ndarray, path: Path) -> np.ndarray:
    """audio (N,) finite and within [-1, 1], warning about each repair."""
    if audio.ndim != 1:
        raise AudioError(f"{path}: expected mono audio of shape (N,), got shape {audio.shape}")
    bad = ~np.isfinite(audio)
    if bad.any():
        warnings.warn(f"{path}: {int(bad.sum())} NaN/inf sample(s) written as 0", stacklevel=3)
        audio = np.where(bad, np.float32(0.0), audio)
    over = np.abs(audio) > 1.0
    if over.any():
        peak = float(np.abs(audio).max())
        warnings.warn(f"{path}: {int(over.sum())} sample(s) beyond [-1, 1] (peak {peak:.3f}) clipped",
                      stacklevel=3)
        audio = np.clip(audio, -1.0, 1.0)
    return audio


def rms_db(audio: np.ndarray) -> float:
    """RMS level of (N,) audio in dB full scale (a full-scale sine is -3 dB); -inf for silence."""
    if audio.size == 0:
        return float("-inf")
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def is_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the RMS level of (N,) audio is below threshold_db dBFS (or it is empty)."""
    return rms_db(audio) < threshold_db


def voiced_seconds(audio: np.ndarray, sr: int, frame: float = 0.02, rel_db: float = -35.0,
                   floor_db: float = -60.0) -> float:
    """Seconds of activity in (N,) audio: a crude energy detector, not a VAD.

    Counts the complete frames of `frame` seconds whose RMS level is within rel_db of the
    loudest frame and above floor_db dBFS (so that a recording of near-silence counts as
    none). Used to refuse references with too little speech.
    """
    n = max(1, round(frame * sr))
    n_frames = audio.size // n
    if n_frames == 0:
        return 0.0
    frames = audio[: n_frames * n].reshape(n_frames, n)
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(power)
    active = (level >= level.max() + rel_db) & (level > floor_db)
    return float(active.sum() * n / sr)
