"""Bank references and sample inputs for the bundled model, from a synthetic corpus.

    python -m training.recipes.bundle CORPUS MODEL_DIR

Registers, with the model's own emotion encoder, `neutral` plus two references per
emotion from the corpus's test split (never trained on): NAME (the strongest) and
NAME-mild (the mildest, by ground-truth strength). Writes two neutral sample inputs:
samples/seen_speaker.wav (a test-split utterance of a training speaker) and
samples/unseen_speaker.wav (a voice the corpus does not contain, a new sentence).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

from engine.audio import load_audio, save_audio
from engine.bank import EmotionBank, EmotionEncoder
from engine.config import EngineConfig, ModelConfig
from engine.manifest import load_manifest
from engine.runtime import Sessions
from engine.signal import EMOTIONS
from training.corpus.espeak import Espeak
from training.corpus.profiles import PROFILES, SPEAKERS, render, ssml
from training.corpus.sentences import sentences
from training.data.esd import scan

SEEN_SPEAKER = "0011"


def _references(corpus: Path) -> dict[str, Path]:
    """Bank name → reference wav: test-split utterances of the seen speaker."""
    with open(corpus / "metadata.csv") as f:
        strength = {r["utt_id"]: float(r["strength"]) for r in csv.DictReader(f)}
    utts = scan(corpus, speakers=[SEEN_SPEAKER], splits=["test"])
    refs = {"neutral": next(u.path for u in utts if u.emotion == "Neutral")}
    for emotion in EMOTIONS[1:]:
        ranked = sorted((u for u in utts if u.emotion == emotion), key=lambda u: strength[u.utt_id])
        refs[emotion.lower()] = ranked[-1].path
        refs[f"{emotion.lower()}-mild"] = ranked[0].path
    return refs


def _unseen_sample(n_sentences: int):
    """A neutral utterance by a voice outside the corpus's speakers, on a sentence it never had."""
    speaker, engine = SPEAKERS[-1], Espeak()
    text = sentences(n_sentences + 1, seed=12345)[-1]
    raw = engine.synth(ssml(text, PROFILES["Neutral"], 0.0), speaker.voice, speaker.pitch)
    return render(raw, engine.rate, speaker, PROFILES["Neutral"], 0.0)


def bundle(corpus: Path, model_dir: Path) -> None:
    cfg = dataclasses.replace(EngineConfig(), model=ModelConfig(dir=str(model_dir.resolve())))
    manifest = load_manifest(model_dir)
    encoder = EmotionEncoder(Sessions(model_dir, manifest, cfg.runtime, quiet=True), manifest)
    bank = EmotionBank(model_dir / "bank.json")
    for name, path in _references(corpus).items():
        bank.register(name, path, encoder, overwrite=True)
    samples = model_dir / "samples"
    refs = scan(corpus, speakers=[SEEN_SPEAKER], emotions=["Neutral"], splits=["test"])
    save_audio(samples / "seen_speaker.wav", load_audio(refs[-1].path))
    save_audio(samples / "unseen_speaker.wav", _unseen_sample(300))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path)
    p.add_argument("model_dir", type=Path)
    args = p.parse_args()
    bundle(args.corpus, args.model_dir)


if __name__ == "__main__":
    main()
