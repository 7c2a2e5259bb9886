"""File-level runtime commands: `evc register`, `evc bank list|show|remove`, `evc convert`.

Each reads the engine configuration from the global --config. Heavy modules (numba
frontend, onnxruntime) are imported inside the handlers, so `evc --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import warnings
from pathlib import Path

from engine.config import EngineConfig, load_config
from engine.errors import AudioError, EVCError


def register(sub: argparse._SubParsersAction) -> None:
    """Add register, bank and convert."""
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=None, help="exported model directory (default: engine.yaml model.dir)")

    p = sub.add_parser("register", parents=[model],
                       help="encode a reference utterance (or several: their mean) into the emotion bank")
    p.add_argument("name", help="bank name: 1-32 letters, digits, '_' or '-'")
    p.add_argument("reference", nargs="+",
                   help="reference recording(s) (WAV/FLAC/OGG/MP3) carrying the emotion; several are averaged")
    p.add_argument("--overwrite", action="store_true", help="replace an existing entry of that name")
    p.add_argument("--neutral", default=None, metavar="NEUTRAL.wav",
                   help="a neutral utterance of the references' speaker to read them from (default: the bank's "
                        "'neutral' entry; register it first)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("bank", help="list, show or remove emotion bank entries")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", parents=[model], help="every entry, one line each").set_defaults(func=cmd_bank_list)
    for name, func, text in (("show", cmd_bank_show, "one entry in full"),
                             ("remove", cmd_bank_remove, "delete an entry")):
        a = actions.add_parser(name, parents=[model], help=text)
        a.add_argument("name")
        a.set_defaults(func=func)

    p = sub.add_parser("convert", parents=[model], help="convert a file through the streaming pipeline")
    p.add_argument("input", help="speech to convert (any rate, mono or multichannel)")
    p.add_argument("--emotion", default=None, help="bank entry to convert to (required unless --bypass)")
    p.add_argument("--strength", type=float, default=None,
                   help="0 = the bank's neutral entry, 1 = the reference itself, up to 1.5 (default: the reference)")
    p.add_argument("-o", "--output", default=None, help="output WAV (default: INPUT.<emotion>.wav beside the input)")
    p.add_argument("--bypass", action="store_true", help="pass the input through the pipeline unconverted")
    p.set_defaults(func=cmd_convert)


def _config(args: argparse.Namespace) -> EngineConfig:
    """engine.yaml from --config, with --model (if given) replacing model.dir."""
    cfg = load_config(args.config)
    if getattr(args, "model", None):
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dir=str(Path(args.model).resolve())))
    return cfg


def _bank(cfg: EngineConfig):
    from engine.bank import EmotionBank

    return EmotionBank(cfg.bank_path)


def cmd_register(args: argparse.Namespace) -> int:
    from engine.bank import EmotionEncoder, valid_name
    from engine.manifest import load_for_config
    from engine.runtime import Sessions

    cfg = _config(args)
    valid_name(args.name)
    manifest = load_for_config(cfg)
    encoder = EmotionEncoder(Sessions(cfg.model_dir, manifest, cfg.runtime, quiet=True), manifest)
    voices = None
    if args.neutral is not None:
        from engine.audio import load_audio

        voice = encoder.voice(encoder.analyse(load_audio(args.neutral, manifest.spec.sample_rate)))
        if voice is None and manifest.anchor_centre is not None:
            raise EVCError(f"--neutral {args.neutral}: no voiced speech to take the speaker's neutral voice from")
        voices = [(voice, f"--neutral {args.neutral}")] * len(args.reference)
    entry = _bank(cfg).register(args.name, args.reference, encoder, overwrite=args.overwrite, voices=voices)
    print(f"registered '{entry.name}' in {cfg.bank_path}: {_summary(entry)}; read from {entry.read_from}")
    return 0


def _summary(entry) -> str:
    p = entry.probabilities.get(entry.category, 0.0)
    return (f"{entry.category} (p={p:.2f}), strength {entry.strength:.2f}, "
            f"{entry.voiced_s:.1f} s voiced of {entry.duration_s:.1f} s")


def cmd_bank_list(args: argparse.Namespace) -> int:
    cfg = _config(args)
    entries = _bank(cfg).list()
    if not entries:
        print(f"{cfg.bank_path}: no entries (add one: evc register NAME REF.wav)")
        return 0
    current = _current_model(cfg)
    print(f"{cfg.bank_path}:")
    for e in entries:
        stale = "  [other model: register again]" if current and e.model != current else ""
        print(f"  {e.name:<32} {_summary(e)}  {_sources(e.source)}{stale}")
    return 0


def _sources(source: str) -> str:
    """An entry's source, or for a mean of several references their count and the first."""
    from engine.bank import SOURCE_SEPARATOR

    paths = source.split(SOURCE_SEPARATOR)
    return source if len(paths) == 1 else f"{len(paths)} references: {paths[0]} ..."


def _current_model(cfg: EngineConfig) -> str | None:
    """model_id of the configured model, or None when it cannot be read (listing still works)."""
    from engine.bank import model_id
    from engine.manifest import load_manifest

    try:
        return model_id(load_manifest(cfg.model_dir, verify=False))
    except EVCError:
        return None


def cmd_bank_show(args: argparse.Namespace) -> int:
    import numpy as np

    entry = _bank(_config(args)).get(args.name)
    data = entry.to_json()
    emb, voice = data.pop("embedding"), data.pop("voice")
    print(f"name: {entry.name}")
    for key, value in data.items():
        if key == "probabilities":
            value = ", ".join(f"{k} {v:.3f}" for k, v in value.items())
        print(f"{key}: {value}")
    print(f"embedding: {len(emb)} values, L2 norm {float(np.linalg.norm(emb)):.4f}")
    if voice is not None:
        print(f"voice: mean log-mel {float(np.mean(voice[:-1])):.2f}, F0 {float(np.exp(voice[-1])):.0f} Hz")
    return 0


def cmd_bank_remove(args: argparse.Namespace) -> int:
    cfg = _config(args)
    entry = _bank(cfg).remove(args.name)
    print(f"removed '{entry.name}' from {cfg.bank_path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from engine.pipeline import StreamingConverter

    cfg = _config(args)
    if args.emotion is None and not args.bypass:
        raise EVCError("convert needs --emotion NAME (or --bypass)")
    src = Path(args.input)
    dst = _output_path(src, args.output, "bypass" if args.emotion is None else args.emotion)
    audio, note = _load_input(src, cfg.spec.sample_rate)
    converter = StreamingConverter(cfg, bank=_bank(cfg), quiet=True)
    if args.emotion is not None:
        converter.set_emotion(args.emotion, args.strength)
    converter.bypass = args.bypass
    out = convert_array(converter, audio)
    _save(dst, out, converter.spec.sample_rate)
    _report(converter, dst, note)
    return 0


def _save(dst: Path, audio, sample_rate: int) -> None:
    """save_audio, its repairs (clipping) said as one-line notes rather than Python warnings."""
    from engine.audio import save_audio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_audio(dst, audio, sample_rate)
    for w in caught:
        print(f"note: {w.message}")


def _output_path(src: Path, output: str | None, label: str) -> Path:
    """-o, or SRC.<label>.wav beside the input; never the input itself."""
    dst = Path(output) if output else src.with_name(f"{src.stem}.{label}.wav")
    if dst.resolve() == src.resolve() or _same_file(dst, src):
        raise EVCError(f"output {dst} is the input file: choose another -o (the input is never overwritten)")
    if dst.is_dir():
        raise EVCError(f"output {dst} is a directory: give a file name")
    return dst


def _same_file(a: Path, b: Path) -> bool:
    """Both exist and are one file (a hard link resolves to a different path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _load_input(path: Path, sample_rate: int):
    """(audio (N,) float32 at sample_rate, note about resampling/downmixing or None).

    Unlike a reference, input with NaN/inf samples is refused: zeroed samples would
    be converted into clicks the user did not record.
    """
    import soundfile as sf

    from engine.audio import is_silent, load_audio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        audio = load_audio(path, sample_rate)
    bad = [str(w.message) for w in caught if "NaN/inf" in str(w.message)]
    if bad:
        count = re.search(r"(\d+) NaN/inf sample\(s\) of (\d+)", bad[0])
        what = f"{count[1]} of its {count[2]} samples are" if count else "some samples are"
        raise AudioError(f"input {path}: {what} NaN/inf: not valid audio")
    if is_silent(audio):
        raise AudioError(f"input {path} is silent: nothing to convert")
    info = sf.info(str(path))
    changes = ([f"downmixed from {info.channels} channels"] if info.channels > 1 else []) + (
        [f"resampled from {info.samplerate} Hz"] if info.samplerate != sample_rate else [])
    note = f"note: input {', '.join(changes)} to {sample_rate} Hz mono" if changes else None
    return audio, note


def convert_array(converter, audio):
    """The streaming pipeline over a whole signal: audio (N,) float32 -> (N,) float32.

    The signal is padded with zeros to whole blocks (plus the converter's internal
    delay, which is then dropped from the front), run block by block through
    converter.process, and trimmed back: output sample i belongs to input sample i.
    """
    import numpy as np

    n, block, delay = audio.size, converter.block_samples, converter.delay_samples
    total = -(-(n + delay) // block) * block
    padded = np.zeros(total, np.float32)
    padded[:n] = audio
    out = np.empty(total, np.float32)
    for start in range(0, total, block):
        out[start:start + block] = converter.process(padded[start:start + block])
    return out[delay:delay + n]


def _report(converter, dst: Path, note: str | None) -> None:
    stats = converter.stats()
    if note:
        print(note)
    print(f"wrote {dst}")
    print(f"algorithmic latency {converter.latency_ms:.1f} ms (manifest); {converter.sessions.summary}")
    print(f"measured RTF {stats['rtf']:.4f} over {stats['blocks']} blocks of {stats['block_ms']:.0f} ms "
          f"(p50 {stats['p50_ms']:.3f} ms, p99 {stats['p99_ms']:.3f} ms per block)")
