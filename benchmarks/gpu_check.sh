#!/usr/bin/env bash
# The GPU path, on a machine with an NVIDIA GPU: install the GPU extra, then
#   1. parity: the bundled model's generator frames and audio on CUDA (IO binding) vs CPU,
#      block by block over 10 s of probe speech, at 20 and 10 ms blocks (bar: frames < 1e-4);
#   2. `evc bench latency --provider cuda` at both block sizes, one intra-op thread;
#   3. an fp16 copy of the step graphs (onnxruntime's float16 converter, fp32 inputs/outputs):
#      its frames against fp32 on CUDA, and its latency.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default bench-out/gpu); needs no training extra.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/gpu}
mkdir -p "$out"

python3 -m venv .venv-gpu
.venv-gpu/bin/pip install -q '.[bench]'
.venv-gpu/bin/pip uninstall -q -y onnxruntime
.venv-gpu/bin/pip install -q '.[gpu]'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt"

.venv-gpu/bin/python - "$out" <<'EOF'
import json, shutil, sys
from pathlib import Path

import numpy as np
import onnx

from benchmarks.models import model_config
from benchmarks.signals import probe_speech
from engine.config import DEFAULT_MODEL_DIR, EngineConfig, RuntimeConfig
from engine.manifest import load_manifest, sha256_file
from engine.pipeline import StreamingConverter

out = Path(sys.argv[1])


def frames_and_audio(model_dir, provider, block):
    cfg = model_config(EngineConfig(runtime=RuntimeConfig(providers=(provider,))), model_dir, block_frames=block)
    conv = StreamingConverter(cfg, quiet=True)
    assert conv.sessions.device == provider, f"{provider} requested, {conv.sessions.summary}"
    conv.set_embedding(np.linspace(-1, 1, conv.manifest.embedding_dim).astype(np.float32))
    x, n, frames, audio = probe_speech(10.0), conv.block_samples, [], []
    for i in range(0, x.size - n + 1, n):
        audio.append(conv.process(x[i:i + n]).copy())
        frames.append(conv.runner.outputs["frames"][0].copy())
    return np.concatenate(frames, 1), np.concatenate(audio)


def fp16_copy(src, dst):
    """The model directory with fp16 step graphs (fp32 inputs and outputs), manifest hashes updated."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    shutil.copytree(src, dst, dirs_exist_ok=True)
    manifest = json.loads((dst / "manifest.json").read_text())
    for name, graph in manifest["graphs"].items():
        if name.startswith("step"):
            path = dst / graph["file"]
            onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(path))
            graph["sha256"] = sha256_file(path)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dst


model = DEFAULT_MODEL_DIR
fp16 = fp16_copy(model, out / "model-fp16")
results = {}
for block in load_manifest(model).block_sizes:
    cpu_f, cpu_a = frames_and_audio(model, "cpu", block)
    gpu_f, gpu_a = frames_and_audio(model, "cuda", block)
    half_f, _ = frames_and_audio(fp16, "cuda", block)
    results[block] = {"frames_cuda_vs_cpu": float(np.abs(gpu_f - cpu_f).max()),
                      "audio_cuda_vs_cpu": float(np.abs(gpu_a - cpu_a).max()),
                      "frames_fp16_vs_fp32": float(np.abs(half_f - gpu_f).max()),
                      "parity_ok": bool(np.abs(gpu_f - cpu_f).max() < 1e-4)}
    print(f"block {block}: {results[block]}")
(out / "parity.json").write_text(json.dumps(results, indent=2))
EOF

.venv-gpu/bin/evc bench latency --provider cuda --threads 1 --n 2000 --out "$out/latency-cuda" | tee "$out/latency-cuda.txt"
.venv-gpu/bin/evc bench latency --provider cuda --threads 1 --n 2000 --model "$out/model-fp16" \
  --out "$out/latency-cuda-fp16" | tee "$out/latency-cuda-fp16.txt"
.venv-gpu/bin/evc bench latency --provider cpu --threads 1 --n 2000 --out "$out/latency-cpu" | tee "$out/latency-cpu.txt"
echo "wrote $out"
