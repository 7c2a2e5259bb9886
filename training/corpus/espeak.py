"""espeak-ng, from the pip package espeakng-loader (ctypes) or else the system `espeak-ng` binary.

Both backends share one interface: `synth(ssml, voice, pitch, pitch_range)` returns
(N,) int16 samples at `rate` Hz (22050), and `version` names the backend, so a corpus
can record what rendered it. Their audio differs (different espeak builds and data).

The library keeps global state, so one process holds one synthesiser: parallelise with
processes, never threads.
"""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import subprocess

import numpy as np
import soundfile as sf

from engine.errors import EVCError

AUDIO_OUTPUT_SYNCHRONOUS = 2
SSML, UTF8 = 0x10, 0x01
PARAM_PITCH, PARAM_RANGE = 3, 4
RAND_SEED = 1  # unseeded, the breathy variants (f1-f5...) differ from run to run
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


_LIBRARY: tuple[ctypes.CDLL, int] | None = None


def _library() -> tuple[ctypes.CDLL, int]:
    """libespeak-ng and its sample rate, initialised once per process: espeak has one global state."""
    global _LIBRARY
    if _LIBRARY is None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise EVCError("espeak-ng failed to initialise (espeak_Initialize returned an error)")
        # Load the English dictionary once here, so that the forked children (see synth)
        # inherit it instead of each reading it again: halves the cost of an utterance.
        lib.espeak_SetVoiceByName(b"en")
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        _LIBRARY = lib, rate
    return _LIBRARY


class EspeakLibrary:
    """libespeak-ng shipped by espeakng-loader, driven through ctypes; instances share the one library."""

    def __init__(self) -> None:
        self.lib, self.rate = _library()
        self.version = f"libespeak-ng {self.lib.espeak_Info(None).decode()} (espeakng-loader)"
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: espeak holds only the pointer

    def _collect(self, samples, n: int, _events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(n,)).copy())
        return 0

    def synth(self, ssml: str, voice: str, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """ssml: an SSML document; voice: e.g. 'en-us+m3'; pitch, pitch_range: espeak's 0-100 base values.

        The waveform generator keeps state from one utterance to the next (phase, flutter,
        noise: neither espeak_Terminate nor espeak_ng_SetRandSeed resets it), so the same
        call would give slightly different samples depending on what was spoken before.
        Each utterance is therefore rendered in a forked child of a process that has never
        spoken: the result depends on the arguments alone (fork + voice load cost ~10 ms).
        Where there is no os.fork (Windows) it runs in-process, and is then reproducible
        only for the same sequence of calls.
        """
        if not hasattr(os, "fork"):
            return self._synth_here(ssml, voice, pitch, pitch_range)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            self._child(write_fd, ssml, voice, pitch, pitch_range)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            reply = f.read()
        os.waitpid(pid, 0)
        if reply[:1] != b"A":
            raise EVCError(reply[1:].decode(errors="replace") or "espeak-ng crashed while synthesising")
        return np.frombuffer(reply[1:], np.int16).copy()

    def _child(self, fd: int, *args) -> None:
        """In the forked child: synthesise, send b"A" + samples or b"E" + message, and exit."""
        code = 1
        try:
            with os.fdopen(fd, "wb") as f:
                try:
                    f.write(b"A" + self._synth_here(*args).tobytes())
                    code = 0
                except EVCError as e:
                    f.write(b"E" + str(e).encode())
        finally:
            os._exit(code)  # never return into the parent's Python stack (pytest, pool worker...)

    def _synth_here(self, ssml: str, voice: str, pitch: int, pitch_range: int) -> np.ndarray:
        """Synthesise in this process; see synth."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EVCError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(PARAM_RANGE, pitch_range, 0)
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):  # absent before espeak-ng 1.52
            self.lib.espeak_ng_SetRandSeed(RAND_SEED)
        self._chunks = []
        self.lib.espeak_SetSynthCallback(self._callback)  # the callback is global: claim it for this call
        text = ssml.encode("utf-8")
        self.lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, SSML | UTF8, None, None)
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


class EspeakBinary:
    """The system `espeak-ng` program, one fresh process per utterance (slower, same interface)."""

    rate = 22050

    def __init__(self, path: str) -> None:
        self.path = path
        banner = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        self.version = banner.split("  Data at")[0].strip()  # drop the data path: a recipe names no machine

    def synth(self, ssml: str, voice: str, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """As EspeakLibrary.synth; the command line has no pitch-range option, so only 50 is honoured."""
        if pitch_range != 50:
            raise EVCError("the espeak-ng program cannot set a base pitch range: pip install espeakng-loader")
        run = subprocess.run([self.path, "-m", "-b", "1", "-v", voice, "-p", str(pitch), "--stdout", ssml],
                             capture_output=True)
        if run.returncode != 0 or not run.stdout:
            raise EVCError(f"espeak-ng failed for voice {voice!r}: {run.stderr.decode(errors='replace').strip()}")
        audio, rate = sf.read(io.BytesIO(run.stdout), dtype="int16")
        if rate != self.rate:
            raise EVCError(f"espeak-ng wrote {rate} Hz audio, expected {self.rate}")
        return audio


def Espeak() -> EspeakLibrary | EspeakBinary:  # a factory named like the class its callers construct
    """The espeakng-loader library when installed, else the system `espeak-ng` binary."""
    try:
        return EspeakLibrary()
    except ImportError:
        pass
    path = shutil.which("espeak-ng")
    if path is None:
        raise EVCError("corpus synthesis needs espeak-ng: pip install espeakng-loader (or install espeak-ng)")
    return EspeakBinary(path)
