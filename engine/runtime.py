"""ONNX Runtime sessions for an exported model, and the step graph's stream state.

One place chooses providers (engine.yaml order, CUDA then CPU), pins threads, and
says once which provider runs and why another was skipped. The step graph runs with
IO binding: inputs, outputs and state live in buffers allocated once, state is
double-buffered (read A write B, then read B write A), so a block allocates nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from engine.config import RuntimeConfig
from engine.errors import ModelError
from engine.manifest import NEXT_SUFFIX, STEP_OUTPUT, Manifest, TensorInfo

ORT_NAMES = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
CUDA_HINT = ("install onnxruntime-gpu instead of onnxruntime (it needs CUDA 13.x and cuDNN 9.x "
             "libraries on the library path)")


def _ort():
    import onnxruntime

    return onnxruntime


def session_options(cfg: RuntimeConfig):
    """SessionOptions with pinned thread counts, sequential execution, full graph optimisation."""
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.intra_op_threads
    so.inter_op_num_threads = cfg.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the engine reports provider choice itself
    return so


def plan_providers(requested: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(ORT provider names to try in order, why each requested one was skipped)."""
    available = _ort().get_available_providers()
    chosen, skipped = [], []
    for name in requested:
        if ORT_NAMES[name] in available:
            chosen.append(ORT_NAMES[name])
        elif name == "cuda":
            skipped.append(f"cuda skipped: this onnxruntime has no CUDA provider; {CUDA_HINT}")
    if ORT_NAMES["cpu"] not in chosen:
        chosen.append(ORT_NAMES["cpu"])
    return chosen, skipped


class Sessions:
    """The model's ONNX Runtime sessions ('step', 'emotion_encoder') and which provider runs them."""

    def __init__(self, model_dir: str | Path, manifest: Manifest, cfg: RuntimeConfig, quiet: bool = False):
        ort = _ort()
        providers, notes = plan_providers(cfg.providers)
        self.sessions = {}
        for name, graph in manifest.graphs.items():
            try:
                self.sessions[name] = ort.InferenceSession(
                    str(Path(model_dir) / graph.file), session_options(cfg), providers=providers)
            except Exception as e:  # ORT raises its own Fail/InvalidGraph types
                raise ModelError(f"{graph.file}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
        active = self.sessions["step"].get_providers()
        self.device = "cuda" if active and active[0] == ORT_NAMES["cuda"] else "cpu"
        if providers[0] == ORT_NAMES["cuda"] and self.device != "cuda":
            notes.append(f"cuda skipped: the CUDA provider failed to start; {CUDA_HINT}")
        self.notes = notes
        self.summary = f"running on {active[0] if active else 'nothing'}" + "".join(f" ({n})" for n in notes)
        if not quiet:
            print(f"evc: {self.summary}", file=sys.stderr)

    def __getitem__(self, name: str):
        return self.sessions[name]


class StreamState:
    """The step graph's state tensors, preallocated twice (read one set, write the other).

    Keyed by the manifest's state names; `reset()` returns to the start of a stream.
    """

    def __init__(self, infos: tuple[TensorInfo, ...], init: dict[str, np.ndarray] | None = None):
        self.infos = infos
        self.init = {t.name: np.zeros(t.shape, np.float32) for t in infos}
        for name, value in (init or {}).items():
            self.init[name][...] = value
        self.buffers = ({n: v.copy() for n, v in self.init.items()},
                        {n: v.copy() for n, v in self.init.items()})
        self.current = 0

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.infos]

    def reset(self) -> None:
        for buffers in self.buffers:
            for name, value in buffers.items():
                np.copyto(value, self.init[name])
        self.current = 0

    def read(self) -> dict[str, np.ndarray]:
        """The state the next block reads."""
        return self.buffers[self.current]

    def write(self) -> dict[str, np.ndarray]:
        """Where the next block writes its new state."""
        return self.buffers[1 - self.current]

    def advance(self) -> None:
        self.current = 1 - self.current


def _bind(binding, name: str, array: np.ndarray, output: bool) -> None:
    args = (name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
    (binding.bind_output if output else binding.bind_input)(*args)


class StepRunner:
    """Runs step.onnx one block at a time into preallocated buffers.

    mel: (1, n_mels, block_frames), emotion: (1, D), audio: (1, block_frames * hop).
    On CPU the host buffers are bound by pointer, so ORT reads and writes them in
    place. On CUDA, mel, emotion and state live in device OrtValues (state never
    leaves the GPU); mel and emotion are copied up in place each block and the audio
    is written back into the host buffer.
    """

    def __init__(self, sessions: Sessions, manifest: Manifest):
        spec = manifest.spec
        self.session = sessions["step"]
        self.cuda = sessions.device == "cuda"
        self.mel = np.zeros((1, spec.n_mels, spec.block_frames), np.float32)
        self.emotion = np.zeros((1, manifest.embedding_dim), np.float32)
        self.audio = np.zeros((1, spec.block_samples), np.float32)
        init = manifest.raw.get("state_init") or {}
        self.state = StreamState(manifest.state, {k: np.asarray(v, np.float32) for k, v in init.items()})
        self.device_inputs = self._device_values() if self.cuda else None
        self.bindings = [self._binding(side) for side in (0, 1)]

    def _device_values(self) -> dict:
        value = _ort().OrtValue.ortvalue_from_numpy
        return {"mel": value(self.mel, "cuda", 0), "emotion": value(self.emotion, "cuda", 0),
                "state": [{n: value(a, "cuda", 0) for n, a in side.items()} for side in self.state.buffers]}

    def _binding(self, side: int):
        """IO binding reading state set `side` and writing the other."""
        b = self.session.io_binding()
        _bind(b, STEP_OUTPUT, self.audio, True)
        if self.cuda:
            dev = self.device_inputs
            b.bind_ortvalue_input("mel", dev["mel"])
            b.bind_ortvalue_input("emotion", dev["emotion"])
            for name in self.state.names:
                b.bind_ortvalue_input(name, dev["state"][side][name])
                b.bind_ortvalue_output(name + NEXT_SUFFIX, dev["state"][1 - side][name])
            return b
        _bind(b, "mel", self.mel, False)
        _bind(b, "emotion", self.emotion, False)
        for name in self.state.names:
            _bind(b, name, self.state.buffers[side][name], False)
            _bind(b, name + NEXT_SUFFIX, self.state.buffers[1 - side][name], True)
        return b

    def reset(self) -> None:
        self.state.reset()
        if self.cuda:
            for side in self.device_inputs["state"]:
                for name, value in side.items():
                    value.update_inplace(self.state.init[name])

    def run(self, mel: np.ndarray, emotion: np.ndarray) -> np.ndarray:
        """mel: (n_mels, block_frames), emotion: (D,) → audio (block_samples,), a view of a reused buffer."""
        np.copyto(self.mel[0], mel)
        np.copyto(self.emotion[0], emotion)
        if self.cuda:
            self.device_inputs["mel"].update_inplace(self.mel)
            self.device_inputs["emotion"].update_inplace(self.emotion)
        self.session.run_with_iobinding(self.bindings[self.state.current])
        self.state.advance()
        return self.audio[0]
