"""Write a model directory (step.onnx, emotion_encoder.onnx, manifest.json) atomically.

A model may serve several block sizes: the first of `block_frames` is the manifest's
signal.block_frames (step.onnx); each further size N gets the same weights exported
as step_bN.onnx, recorded as graph "step@N" and verified like the first.

Everything is written into a hidden temporary directory beside the output, verified
(export/verify.py), and only then renamed into place. An existing output directory is
kept until that rename, so a failed export leaves it exactly as it was::

    OUT.partial-XXXX/   write graphs, verify, variants, manifest     (failure: removed)
    OUT -> OUT.old-XXXX, OUT.partial-XXXX -> OUT, remove OUT.old-XXXX  (success)
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime
import torch

from engine.errors import ModelError
from engine.manifest import BLOCK_STEP, FORMAT, PROSODY_LEVEL, parse_manifest, sha256_file
from engine.signal import EMOTIONS, SignalSpec
from export.graphs import EmotionEncoderGraph, StepGraph, VocoderGraph
from export.load import Networks, load_networks
from export.to_onnx import (
    DEFAULT_OPSET,
    check_opset,
    export_emotion_encoder,
    export_step,
    export_vocoder,
    opset_of,
    tensor_infos,
    training_ops,
)
from export.variants import build_variants
from export.verify import check, probe, probe_audio, verify_export, verify_step

STEP_FILE, ENCODER_FILE, VOCODER_FILE = "step.onnx", "emotion_encoder.onnx", "vocoder.onnx"
FILES = {"step": STEP_FILE, "emotion_encoder": ENCODER_FILE, "vocoder": VOCODER_FILE}


def export_model(stage2: str | Path, vocoder: str | Path, out: str | Path, block_frames: int | Sequence[int] = 2,
                 opset: int = DEFAULT_OPSET, variants: Sequence[str] = (), log=None) -> dict:
    """Export, verify and write the model directory `out`; returns the manifest written.

    block_frames: the block size of step.onnx, or several (the first is the default; see above).

    Raises ModelError (one line) on unusable checkpoints or a failed verification, in
    which case nothing at `out` has changed. `log(line)` receives progress messages.
    """
    log = log or (lambda line: None)
    out = Path(out)
    check_opset(opset)
    _check_replaceable(out)
    blocks = [block_frames] if isinstance(block_frames, int) else list(dict.fromkeys(block_frames))
    networks = load_networks(stage2, vocoder)
    spec = networks.spec.replace(block_frames=blocks[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "partial")
    try:
        manifest = _write(networks, spec, tmp, opset, list(variants), log)
        for n in blocks[1:]:
            _add_block(networks, spec.replace(block_frames=n), tmp, opset, manifest, log)
        manifest["training"] = _sources(networks, stage2, vocoder)
        _write_manifest(tmp, manifest)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _check_replaceable(out: Path) -> None:
    """Refuse to replace anything but an earlier export (or an empty directory)."""
    if out.exists() and not out.is_dir():
        raise ModelError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ModelError(f"--out {out} is a non-empty directory without manifest.json: refusing to replace it")


def _write(networks: Networks, spec: SignalSpec, tmp: Path, opset: int, variants: list[str], log) -> dict:
    """Export the three graphs into tmp, verify them, build the variants; the manifest without sources."""
    step = StepGraph(networks.content_encoder, networks.generator, networks.vocoder)
    encoder = EmotionEncoderGraph(networks.emotion_encoder, networks.recognition)
    vocoder = VocoderGraph(networks.vocoder)
    dim = networks.emotion_encoder.dim
    models = {"step": export_step(step, spec, dim, tmp / STEP_FILE, opset),
              "emotion_encoder": export_emotion_encoder(encoder, spec, tmp / ENCODER_FILE, opset),
              "vocoder": export_vocoder(vocoder, spec, tmp / VOCODER_FILE, opset)}
    for name, model in models.items():
        if training_ops(model):
            raise ModelError(f"{name} graph contains training-only ops: {', '.join(training_ops(model))}")
    log(f"exported {', '.join(FILES.values())} (opset {opset}, block of {spec.block_frames} frames); verifying")
    errors = verify_export(networks, (step, tmp / STEP_FILE), (encoder, tmp / ENCODER_FILE),
                           (vocoder, tmp / VOCODER_FILE), spec.block_frames)
    check(errors)
    manifest = _manifest(networks, spec, {"step": step, "vocoder": vocoder}, models, tmp)
    manifest["parity"] = errors
    if variants:
        manifest["variants"], manifest["variants_skipped"] = _variants(networks, spec, step, tmp, variants)
    return manifest


def _add_block(networks: Networks, spec: SignalSpec, tmp: Path, opset: int, manifest: dict, log) -> None:
    """Export and verify the step graph for spec.block_frames as step_bN.onnx; record it in manifest."""
    n = spec.block_frames
    step = StepGraph(networks.content_encoder, networks.generator, networks.vocoder)
    file = f"step_b{n}.onnx"
    model = export_step(step, spec, networks.emotion_encoder.dim, tmp / file, opset)
    log(f"exported {file} (block of {n} frames); verifying")
    errors = verify_step(networks, (step, tmp / file), n, probe(networks, probe_audio(3.0, spec.sample_rate)))
    check({**manifest["parity"], "step": errors})
    inputs, outputs = tensor_infos(model)
    manifest["graphs"][BLOCK_STEP.format(n)] = {"file": file, "sha256": sha256_file(tmp / file), "inputs": inputs,
                                                "outputs": outputs, "state": _state(step), "block_frames": n}
    manifest["parity"][BLOCK_STEP.format(n)] = errors


def _variants(networks: Networks, spec: SignalSpec, step: StepGraph, tmp: Path, names: list[str]):
    p = probe(networks, probe_audio(3.0, spec.sample_rate))
    shapes = dict(zip(step.state_names(), step.state_shapes()))
    return build_variants(names, tmp / STEP_FILE, shapes, {"mel": p.mel.numpy(), "pitch": p.pitch_in.numpy()},
                          {k: v.numpy() for k, v in p.constants.items()}, spec.block_frames)


def _emotions(networks: Networks) -> list[str]:
    k = networks.recognition.rc.out_features
    if k != len(EMOTIONS):
        raise ModelError(f"recognition network has {k} emotion classes, the engine knows {len(EMOTIONS)}")
    return list(EMOTIONS)


def _state(graph) -> list[dict]:
    return [{"name": n, "shape": list(s), "dtype": "float32", "init": "zeros"}
            for n, s in zip(graph.state_names(), graph.state_shapes())]


def _manifest(networks: Networks, spec: SignalSpec, streams: dict, models: dict, tmp: Path) -> dict:
    graphs = {}
    for name, file in FILES.items():
        inputs, outputs = tensor_infos(models[name])
        graphs[name] = {"file": file, "sha256": sha256_file(tmp / file), "inputs": inputs, "outputs": outputs}
        if name in streams and name != "step":
            graphs[name]["state"] = _state(streams[name])
    return {
        "format": FORMAT, "signal": spec.to_dict(), "embedding_dim": networks.emotion_encoder.dim,
        "emotions": _emotions(networks),
        "anchor_centre": [float(v) for v in networks.emotion_encoder.centre],
        "algorithmic_latency_ms": spec.algorithmic_latency_ms, "prosody_level": PROSODY_LEVEL,
        "latency": {"block_ms": spec.block_ms, "lookahead_ms": 1000.0 * spec.lookahead_frames / spec.frame_rate,
                    "vocoder_overlap_ms": 0.0,
                    "why": "content encoder, generator and vocoder are causal with no lookahead, the pitch "
                           "tracker reads no sample past the block, and the vocoder's minimum-phase filters "
                           "emit hop samples per frame: the latency is the block alone"},
        "graphs": graphs,
        "state": _state(streams["step"]),
        "opset": opset_of(models["step"]), "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "parameters": networks.parameter_counts(),
    }


def _sources(networks: Networks, stage2: str | Path, vocoder: str | Path) -> dict:
    """Which training runs (and checkpoint files) the model comes from, and the speakers they
    trained on (absent when the checkpoints predate that record: unknown, never guessed)."""
    speakers = {} if networks.speakers is None else {"speakers": networks.speakers}
    return {**speakers, "stage2_run_id": networks.run_ids["stage2"], "vocoder_run_id": networks.run_ids["vocoder"],
            "stage2_checkpoint": {"file": Path(stage2).name, "sha256": sha256_file(stage2)},
            "vocoder_checkpoint": {"file": Path(vocoder).name, "sha256": sha256_file(vocoder)}}


def _write_manifest(tmp: Path, manifest: dict) -> None:
    parse_manifest(manifest, str(tmp / "manifest.json"))  # the engine's reader must accept it
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _sibling(out: Path, kind: str) -> Path:
    """A new hidden directory beside out, on its filesystem so that rename is atomic.

    Made with mkdir (not mkdtemp, which is private to the user): the umask decides its
    mode, as it would for a directory the user makes.
    """
    while True:
        path = out.parent / f".{out.name}.{kind}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename tmp to out; an existing out is moved aside first and restored if the rename fails.

    Linux cannot rename a directory over a non-empty one, so there is a moment between
    the two renames when out does not exist; it is never half-written.
    """
    if not out.exists():
        os.rename(tmp, out)
        return
    old = _sibling(out, "old")
    os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / out.name, out)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)
