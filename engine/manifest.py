"""manifest.json: what an exported model directory holds and the contract it was built for.

Written by export/, read and enforced here. The engine refuses a model whose files do
not match their sha256 or whose contract differs from engine.yaml, naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.config import EngineConfig
from engine.errors import ModelError
from engine.signal import SignalSpec

FORMAT = "evc-model/1"
STEP_INPUTS = ("mel", "pitch", "emotion")
PROSODY_INPUT = "prosody"
"""The step graph's optional fourth input, the measured prosody move (1, engine.prosody.MOVE_SIZE);
models exported before it take none and convert with the generator's own prosody."""
PROSODY_LEVEL = "reference"
"""manifest.json ``prosody_level``: the move's level is the reference's own voiced level
(engine.prosody.prosody_move). A step graph taking PROSODY_INPUT without it was exported when the
level was a shift from the source's, which the engine no longer computes."""
VOCODER_INPUTS = ("mel", "pitch")
STEP_OUTPUT = "audio"
FRAMES_OUTPUT = "frames"
"""The step graph's second output: the generator's frames (1, n_mels + 2, block_frames)."""
NEXT_SUFFIX = "_next"
"""A state input `s` of the step graph is returned as output `s + NEXT_SUFFIX`."""
BLOCK_STEP = "step@{}"
"""The graph key of a step graph for another block size: the same weights exported with
block_frames N (its mel input is (1, n_mels, N)); 'step' serves signal.block_frames."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # ints, or strings naming a dynamic axis
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphInfo:
    file: str
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    state: tuple[TensorInfo, ...] = ()  # a streaming graph's own state, but the step's (Manifest.state)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest; `raw` keeps every field (versions, parameter counts, errors...)."""

    spec: SignalSpec
    embedding_dim: int
    emotions: tuple[str, ...]
    algorithmic_latency_ms: float
    graphs: dict[str, GraphInfo]
    state: tuple[TensorInfo, ...]
    raw: dict

    @property
    def step(self) -> GraphInfo:
        return self.graphs["step"]

    @property
    def takes_prosody(self) -> bool:
        """Whether the step graph imposes a measured prosody move (PROSODY_INPUT)."""
        return any(t.name == PROSODY_INPUT for t in self.step.inputs)

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """The block sizes (frames) this model has a step graph for, its signal.block_frames first."""
        extra = sorted(int(k.split("@", 1)[1]) for k in self.graphs if k.startswith(BLOCK_STEP.format("")))
        return (self.spec.block_frames, *extra)

    def for_block(self, block_frames: int) -> Manifest:
        """This manifest as seen by an engine running blocks of `block_frames`: its step graph
        for that size as 'step', the signal contract and latency for it. ModelError when none."""
        if block_frames == self.spec.block_frames:
            return self
        graph = self.graphs.get(BLOCK_STEP.format(block_frames))
        if graph is None:
            sizes = ", ".join(str(n) for n in self.block_sizes)
            raise ModelError(f"engine.yaml signal.block_frames = {block_frames} but the model has step graphs for "
                             f"block_frames {sizes} only: re-export with --block-frames or change engine.yaml")
        spec = self.spec.replace(block_frames=block_frames)
        latency = self.algorithmic_latency_ms - self.spec.block_ms + spec.block_ms
        return dataclasses.replace(self, spec=spec, graphs={**self.graphs, "step": graph},
                                   state=graph.state or self.state, algorithmic_latency_ms=latency)

    @property
    def anchor_centre(self) -> np.ndarray | None:
        """(n_mels + 1,) float32 the training speakers' mean neutral voice (engine.anchor): the anchor of
        a reference read as it is; None for an emotion encoder that takes no anchor (exported before)."""
        if not _takes_anchor(self.graphs["emotion_encoder"]):
            return None
        return np.asarray(self.raw["anchor_centre"], np.float32)

    @property
    def training_speakers(self) -> list[str] | None:
        """The speakers the model trained on, as export recorded them; None when unrecorded."""
        speakers = (self.raw.get("training") or {}).get("speakers")
        return list(speakers) if speakers is not None else None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensors(items) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(t["name"], tuple(t["shape"]), t.get("dtype", "float32")) for t in items)


def _takes_anchor(graph: GraphInfo) -> bool:
    """Whether an emotion encoder graph reads references from a neutral voice (an `anchor` input)."""
    return any(t.name == "anchor" for t in graph.inputs)


def parse_manifest(raw: dict, where: str = "manifest.json") -> Manifest:
    """Manifest from its JSON mapping; ModelError naming the first missing/bad field."""
    try:
        if raw.get("format") != FORMAT:
            raise ModelError(f"{where}: format {raw.get('format')!r}, expected {FORMAT!r}")
        graphs = {name: GraphInfo(g["file"], g["sha256"], _tensors(g["inputs"]), _tensors(g["outputs"]),
                                  _tensors(g.get("state", ())))
                  for name, g in raw["graphs"].items()}
        if "step" not in graphs or "emotion_encoder" not in graphs:
            raise ModelError(f"{where}: needs graphs 'step' and 'emotion_encoder'")
        n_anchor = int(raw["signal"]["n_mels"]) + 1
        if _takes_anchor(graphs["emotion_encoder"]) and len(raw["anchor_centre"]) != n_anchor:
            raise ModelError(f"{where}: anchor_centre has {len(raw['anchor_centre'])} values, expected {n_anchor}")
        return Manifest(
            spec=SignalSpec(**raw["signal"]), embedding_dim=int(raw["embedding_dim"]),
            emotions=tuple(raw["emotions"]), algorithmic_latency_ms=float(raw["algorithmic_latency_ms"]),
            graphs=graphs, state=_tensors(raw["state"]), raw=raw)
    except KeyError as e:
        raise ModelError(f"{where}: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ModelError(f"{where}: invalid ({e})") from None


def load_manifest(model_dir: str | Path, verify: bool = True) -> Manifest:
    """Read MODEL_DIR/manifest.json and (verify=True) check every graph's sha256."""
    model_dir = Path(model_dir)
    path = model_dir / "manifest.json"
    if not model_dir.is_dir():
        raise ModelError(f"model directory not found: {model_dir}")
    if not path.is_file():
        raise ModelError(f"{model_dir} has no manifest.json: not an exported evc model")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None
    manifest = parse_manifest(raw, str(path))
    if verify:
        for name, g in manifest.graphs.items():
            file = model_dir / g.file
            if not file.is_file():
                raise ModelError(f"{model_dir}: graph '{name}' file {g.file} is missing")
            if sha256_file(file) != g.sha256:
                raise ModelError(f"{file}: sha256 differs from the manifest (corrupt or replaced file)")
    return manifest


def load_for_config(cfg: EngineConfig) -> Manifest:
    """The model of cfg, verified, with the step graph for cfg's block size; ModelError naming a mismatch."""
    manifest = load_manifest(cfg.model_dir).for_block(cfg.signal.block_frames)
    check_against_config(manifest, cfg)
    return manifest


def check_against_config(manifest: Manifest, cfg: EngineConfig) -> None:
    """ModelError naming the first field where engine.yaml and the model disagree."""
    want, have = cfg.spec, manifest.spec
    for field in ("sample_rate", "block_frames", "lookahead_frames"):
        if getattr(want, field) != getattr(have, field):
            raise ModelError(f"engine.yaml signal.{field} = {getattr(want, field)} but the model was "
                             f"exported with {field} = {getattr(have, field)}: re-export or change engine.yaml")
    for field, value in have.to_dict().items():
        if getattr(SignalSpec(), field) != value and field not in ("block_frames", "lookahead_frames"):
            raise ModelError(f"model's signal {field} = {value}, the engine's contract has "
                             f"{getattr(SignalSpec(), field)}")
    missing = [n for n in STEP_INPUTS if n not in {t.name for t in manifest.step.inputs}]
    if missing:
        raise ModelError(f"manifest: the step graph has no input {', '.join(missing)}: it was exported by an "
                         "older evc; re-export the model")
    if manifest.takes_prosody and manifest.raw.get("prosody_level") != PROSODY_LEVEL:
        raise ModelError("manifest: the step graph's prosody input takes the level as a shift from the source's "
                         "(exported by an older evc); re-export the model")
    emb = next((t for t in manifest.step.inputs if t.name == "emotion"), None)
    if emb is None or emb.shape[-1] != manifest.embedding_dim:
        raise ModelError("manifest: step graph's 'emotion' input does not match embedding_dim")
