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
    """ONNX Runtime sessions of a model's graphs (default 'step' and 'emotion_encoder') and which provider runs them."""

    def __init__(self, model_dir: str | Path, manifest: Manifest, cfg: RuntimeConfig, quiet: bool = False,
                 graphs: tuple[str, ...] = ("step", "emotion_encoder")):
        ort = _ort()
        providers, notes = plan_providers(cfg.providers)
        self.sessions = {}
        for name in graphs:
            graph = manifest.graphs.get(name)
            if graph is None:
                raise ModelError(f"{model_dir}: the model has no '{name}' graph (re-export it with this version)")
            try:
                self.sessions[name] = ort.InferenceSession(
                    str(Path(model_dir) / graph.file), session_options(cfg), providers=providers)
            except Exception as e:  # ORT raises its own Fail/InvalidGraph types
                raise ModelError(f"{graph.file}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
        active = self.sessions[graphs[0]].get_providers()
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
    """Runs a streaming graph (step.onnx, or vocoder.onnx) one block at a time into preallocated buffers.

    Inputs are the graph's declared non-state inputs (step: mel (1, n_mels, block_frames),
    pitch (1, 4, block_frames), emotion (1, D); vocoder: mel, pitch (1, 2, block_frames));
    the output is audio (1, block_frames * hop). On CPU the host buffers are bound by
    pointer, so ORT reads and writes them in place. On CUDA, inputs and state live in device
    OrtValues (state never leaves the GPU); inputs are copied up in place each block and the
    audio is written back into the host buffer.
    """

    def __init__(self, sessions: Sessions, manifest: Manifest, graph: str = "step"):
        info = manifest.graphs[graph]
        self.session = sessions[graph]
        self.cuda = sessions.device == "cuda"
        state_infos = manifest.state if graph == "step" else info.state
        state_names = {t.name for t in state_infos}
        self.inputs = {t.name: np.zeros(t.shape, np.float32) for t in info.inputs if t.name not in state_names}
        # Every non-state output gets a buffer (step: audio and frames): an unbound output
        # would be allocated by ONNX Runtime on every block.
        self.outputs = {t.name: np.zeros(t.shape, np.float32) for t in info.outputs
                        if t.name.removesuffix(NEXT_SUFFIX) not in state_names}
        self.audio = self.outputs[STEP_OUTPUT]
        init = (manifest.raw.get("state_init") or {}) if graph == "step" else {}
        self.state = StreamState(state_infos, {k: np.asarray(v, np.float32) for k, v in init.items()})
        self.device_inputs = self._device_values() if self.cuda else None
        self.bindings = [self._binding(side) for side in (0, 1)]

    def _device_values(self) -> dict:
        value = _ort().OrtValue.ortvalue_from_numpy
        return {"inputs": {n: value(a, "cuda", 0) for n, a in self.inputs.items()},
                "state": [{n: value(a, "cuda", 0) for n, a in side.items()} for side in self.state.buffers]}

    def _binding(self, side: int):
        """IO binding reading state set `side` and writing the other."""
        b = self.session.io_binding()
        for name, array in self.outputs.items():
            _bind(b, name, array, True)
        if self.cuda:
            dev = self.device_inputs
            for name, value in dev["inputs"].items():
                b.bind_ortvalue_input(name, value)
            for name in self.state.names:
                b.bind_ortvalue_input(name, dev["state"][side][name])
                b.bind_ortvalue_output(name + NEXT_SUFFIX, dev["state"][1 - side][name])
            return b
        for name, array in self.inputs.items():
            _bind(b, name, array, False)
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

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        """One block: each input without its batch axis (mel (n_mels, block_frames), pitch (P,
        block_frames), emotion (D,)) -> audio (block_samples,), a view of a reused buffer."""
        for name, value in inputs.items():
            np.copyto(self.inputs[name][0], value)
            if self.cuda:
                self.device_inputs["inputs"][name].update_inplace(self.inputs[name])
        self.session.run_with_iobinding(self.bindings[self.state.current])
        self.state.advance()
        return self.audio[0]
