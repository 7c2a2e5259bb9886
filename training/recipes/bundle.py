"""Bank references and sample inputs for the bundled model, from a synthetic corpus.

    python -m training.recipes.bundle CORPUS MODEL_DIR

Registers, with the model's own emotion encoder, `neutral` and per emotion NAME and NAME-mild,
each the mean embedding of one test-split utterance (never trained on) of every speaker the
model trained on (the manifest's; speaker 0011 where it records none): the first Neutral one,
the strongest and the mildest of the emotion by ground-truth strength, each read from its
speaker's neutral voice (the anchor of that speaker's Neutral reference). One speaker's
reference carries its speaker along: on the model shipped at commit d3331a1, 0011's Angry
reference raised other speakers' log-mel level by 0.14 nepers, the mean over eight speakers'
by 0.64. Writes three neutral sample inputs:
samples/seen_speaker.wav (a test-split utterance of a training speaker),
samples/unseen_speaker.wav (a Festival voice the model never heard, on a sentence the corpus
does not contain) and samples/unseen_speaker_noisy_room.wav (the same as a microphone in a
room records it: noise at 20 dB SNR and a generated room, as `evc bench quality --degrade`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

from benchmarks.scoring import degraded
from engine.audio import load_audio, save_audio
from engine.bank import EmotionBank, EmotionEncoder
from engine.config import EngineConfig, ModelConfig
from engine.manifest import load_manifest
from engine.runtime import Sessions
from engine.signal import EMOTIONS
from training.corpus.profiles import PROFILES, FestivalSpeaker
from training.corpus.sentences import sentences
from training.corpus.synth import render_utterance
from training.data.esd import scan

SEEN_SPEAKER = "0011"
UNSEEN_VOICE = FestivalSpeaker("upc_ca_ona_hts")
"""Corpus v3's speaker 0032, held out by training/configs/bundled.yaml with both its variants."""


def _references(corpus: Path, speakers: list[str]) -> dict[str, list[Path]]:
    """Bank name → reference wavs: one test-split utterance of each speaker, in `speakers`' order."""
    with open(corpus / "metadata.csv") as f:
        strength = {r["utt_id"]: float(r["strength"]) for r in csv.DictReader(f)}
    refs: dict[str, list[Path]] = {}
    for speaker in speakers:
        utts = scan(corpus, speakers=[speaker], splits=["test"])
        refs.setdefault("neutral", []).append(next(u.path for u in utts if u.emotion == "Neutral"))
        for emotion in EMOTIONS[1:]:
            ranked = sorted((u for u in utts if u.emotion == emotion), key=lambda u: strength[u.utt_id])
            refs.setdefault(emotion.lower(), []).append(ranked[-1].path)
            refs.setdefault(f"{emotion.lower()}-mild", []).append(ranked[0].path)
    return refs


def _unseen_sample(n_sentences: int):
    """A neutral utterance by a held-out voice, on a sentence outside the corpus's."""
    text = sentences(n_sentences + 1, seed=12345)[-1]
    return render_utterance(UNSEEN_VOICE, text, PROFILES["Neutral"], 0.0)


def bundle(corpus: Path, model_dir: Path) -> None:
    cfg = dataclasses.replace(EngineConfig(), model=ModelConfig(dir=str(model_dir.resolve())))
    manifest = load_manifest(model_dir)
    encoder = EmotionEncoder(Sessions(model_dir, manifest, cfg.runtime, quiet=True), manifest)
    bank = EmotionBank(model_dir / "bank.json")
    refs = _references(corpus, manifest.training_speakers or [SEEN_SPEAKER])
    voices = [(encoder.voice(encoder.analyse(load_audio(p))), "its speaker's neutral test utterance")
              for p in refs["neutral"]]
    for name, paths in refs.items():
        bank.register(name, paths, encoder, overwrite=True, voices=None if name == "neutral" else voices)
    samples = model_dir / "samples"
    refs = scan(corpus, speakers=[SEEN_SPEAKER], emotions=["Neutral"], splits=["test"])
    save_audio(samples / "seen_speaker.wav", load_audio(refs[-1].path))
    unseen = _unseen_sample(300)
    save_audio(samples / "unseen_speaker.wav", unseen)
    save_audio(samples / "unseen_speaker_noisy_room.wav", degraded(unseen, "unseen_speaker"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path)
    p.add_argument("model_dir", type=Path)
    args = p.parse_args()
    bundle(args.corpus, args.model_dir)


if __name__ == "__main__":
    main()
