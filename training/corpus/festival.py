"""Festival voices built from recordings of real people, through the system `text2wave` program.

Debian packages one voice per festvox-* package (diphone, cluster-unit and HTS voices in
Czech, Italian, Finnish, Russian, Catalan, Hindi, Marathi, Telugu...). The corpus
method is text-free, so every voice reads the corpus's English sentences with its own
language's letter-to-sound rules: an accent, but a human voice's timbre and phonation.

Three of Debian's voices are kept for an independent evaluation and must never render
anything here: they are refused by the digest of their names (RESERVED), so that this
repository never spells them out.

`synth(text, voice)` returns (N,) int16 samples at the voice's own rate (given with
them); one text2wave process per utterance, so the result depends on the arguments alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from engine.errors import EVCError

RESERVED = frozenset({"0d624f5c8dff7db7", "44bb9ec16b85e016", "2926fdc602880110"})
"""sha256[:16] of the Festival names of the voices reserved for independent evaluation."""
TIMEOUT_S = 60


def reserved(voice: str) -> bool:
    """True for a voice kept out of this project (by the digest of its Festival name)."""
    name = voice.lower().removeprefix("voice_")
    return hashlib.sha256(name.encode()).hexdigest()[:16] in RESERVED


def _ascii(text: str) -> str:
    """Festival's front ends read bytes in their own 8-bit encodings: keep the English sentences plain."""
    return re.sub(r"[^\x20-\x7e]", " ", text)


class Festival:
    """The system `text2wave` (Festival's batch front end)."""

    def __init__(self) -> None:
        self.path = shutil.which("text2wave")
        festival = shutil.which("festival")
        if self.path is None or festival is None:
            raise EVCError("Festival voices need the festival program: apt-get install festival festvox-...")
        banner = subprocess.run([festival, "--version"], capture_output=True, text=True, timeout=TIMEOUT_S)
        first = banner.stdout.strip().splitlines()[0] if banner.stdout.strip() else "festival"
        self.version = first.split(": ", 1)[-1]  # without the program's path: a recipe names no machine

    def voices(self) -> list[str]:
        """The installed voices Festival knows (reserved ones left out)."""
        run = subprocess.run(["festival", "--batch", "(print (voice.list))"], capture_output=True, text=True,
                             timeout=TIMEOUT_S)
        names = re.findall(r"[A-Za-z0-9_]+", run.stdout)
        return [n for n in names if not reserved(n)]

    def synth(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        """(samples (N,) int16, rate) of `voice` reading `text`; a one-line EVCError when it cannot."""
        if reserved(voice):
            raise EVCError(f"voice {voice!r} is reserved for independent evaluation and never renders here")
        # a file, not stdout: on a pipe text2wave cannot go back to write the header's sizes
        with tempfile.TemporaryDirectory(prefix="evc-festival-") as tmp:
            wav = os.path.join(tmp, "out.wav")
            run = subprocess.run([self.path, "-eval", f"(voice_{voice})", "-otype", "riff", "-o", wav],
                                 input=_ascii(text).encode(), capture_output=True, timeout=TIMEOUT_S)
            ok = run.returncode == 0 and os.path.exists(wav) and os.path.getsize(wav) > 44
            if not ok:
                message = run.stderr.decode(errors="replace").strip().splitlines()
                raise EVCError(f"Festival voice {voice!r} rendered nothing: "
                               f"{message[-1] if message else 'no message'}")
            audio, rate = sf.read(wav, dtype="int16")
        if audio.ndim > 1:
            audio = audio[:, 0]
        return audio, int(rate)
