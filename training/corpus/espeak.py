"""espeak-ng through ctypes, from the pip package espeakng-loader (library and voices ship in it).

espeak-ng keeps global state, so one process holds one synthesiser: parallelise with
processes, never threads.
"""

from __future__ import annotations

import ctypes

import numpy as np

from engine.errors import EVCError

AUDIO_OUTPUT_SYNCHRONOUS = 2
SSML, UTF8 = 0x10, 0x01
PARAM_PITCH, PARAM_RANGE = 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """One espeak-ng synthesiser; `synth(ssml, voice)` returns int16 samples at `self.rate` Hz."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise EVCError("corpus synthesis needs espeak-ng: pip install espeakng-loader") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                               espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise EVCError("espeak-ng failed to initialise (espeak_Initialize returned an error)")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: espeak holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    def _collect(self, samples, n: int, _events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(n,)).copy())
        return 0

    def synth(self, ssml: str, voice: str, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """ssml: an SSML document; voice: e.g. 'en-us+m3'; pitch, pitch_range: espeak's 0–100 base values."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EVCError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(PARAM_RANGE, pitch_range, 0)
        self._chunks = []
        text = ssml.encode("utf-8")
        self.lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, SSML | UTF8, None, None)
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
