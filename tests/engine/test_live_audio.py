"""Live conversion through a real audio server: PulseAudio with a FIFO microphone and a null sink.

The utterance goes into the microphone in real time, a LiveSession (real
StreamingConverter on the toy model) runs in a subprocess (PortAudio must start after
the server's environment is set), and the speaker's monitor is recorded. Checks: the
recording is the offline conversion of what the microphone delivered, no block was
late or lost, an emotion switch is crossfaded, and the end-to-end delay is measured.

The toy model outputs log-mel-valued levels (about -23 to -4); a tap around the
converter maps them into [-0.8, 0.8] so that 16-bit audio carries them unclipped.
Run as a script (by the tests), this file is the subprocess: see `child()`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import pulse
from support.audio import speech_like

WHY_NOT = pulse.unavailable()
pytestmark = [pytest.mark.audio, pytest.mark.skipif(WHY_NOT is not None, reason=f"live audio: {WHY_NOT}")]

RATE, BLOCK = 16000, 320
SWITCH_AT_S = 5.75
"""Inside speech_like's pause (55-60 % of the utterance): the switch must not hide behind speech."""
MAX_BLOCKS = 2000
"""Blocks the tap keeps (40 s): more than any run here."""
TESTS_DIR = Path(__file__).resolve().parents[1]


def _config(model_dir: str):
    from engine.config import config_from_dict

    return config_from_dict({"model": {"dir": str(model_dir)}, "runtime": {"providers": ["cpu"]},
                             "signal": {"lookahead_frames": 0}})  # the toy model's


class Tap:
    """A converter that records what it was given and returned, block by block, and maps the
    toy model's output to audio levels: out = gain * (converted + offset)."""

    def __init__(self, converter, gain: float, offset: float):
        self.conv, self.gain, self.offset = converter, np.float32(gain), np.float32(offset)
        self.inputs = np.zeros((MAX_BLOCKS, converter.block_samples), np.float32)
        self.outputs = np.zeros_like(self.inputs)
        self.embedding_sums = np.zeros(MAX_BLOCKS, np.float64)
        self.blocks = 0
        self.speech_block = None
        self._out = np.zeros(converter.block_samples, np.float32)

    def __getattr__(self, name):
        return getattr(self.conv, name)

    @property
    def bypass(self) -> bool:
        return self.conv.bypass

    @bypass.setter
    def bypass(self, value: bool) -> None:
        self.conv.bypass = value

    def reset(self) -> None:
        """A new stream (LiveSession.start, or a reopen): recording starts over too."""
        self.conv.reset()
        self.blocks, self.speech_block = 0, None

    def process(self, block: np.ndarray) -> np.ndarray:
        y = self.conv.process(block)
        np.add(y, self.offset, out=self._out)
        np.multiply(self._out, self.gain, out=self._out)
        k = self.blocks
        if k < MAX_BLOCKS:
            self.inputs[k], self.outputs[k] = block, self._out
            self.embedding_sums[k] = float(self.conv.embedding.sum())
            if self.speech_block is None and np.any(block != 0):
                self.speech_block = k
        self.blocks += 1
        return self._out


def child(job_path: str) -> None:
    """The live side: run a session until 'stop' on stdin, switching emotion once when asked."""
    from engine.live import LiveSession
    from engine.pipeline import StreamingConverter

    job = json.loads(Path(job_path).read_text())
    cfg = _config(job["model"])
    conv = StreamingConverter(cfg, quiet=True)
    conv.set_embedding(np.asarray(job["emb_a"], np.float32))
    conv.bypass = job["bypass"]
    tap = Tap(conv, job["gain"], job["offset"])
    session = LiveSession(tap, cfg)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    session.start()
    print("ready", flush=True)
    pending = job["emb_b"] is not None
    while not stop.wait(0.002) and session.running:
        if pending and tap.speech_block is not None and tap.blocks >= tap.speech_block + job["switch_blocks"]:
            conv.set_embedding(np.asarray(job["emb_b"], np.float32))  # from this thread, as a UI would
            pending = False
    stats = session.stop()
    n = min(tap.blocks, MAX_BLOCKS)
    np.savez(job["out"] + ".npz", inputs=tap.inputs[:n].reshape(-1), outputs=tap.outputs[:n].reshape(-1),
             embedding_sums=tap.embedding_sums[:n])
    Path(job["out"] + ".json").write_text(json.dumps(stats))


# ---- the parent side ------------------------------------------------------------------------


def offline(model_dir, inputs, emb_a, emb_b=None, switch_block=None, bypass=False, gain=1.0, offset=0.0,
            crossfade_blocks=None) -> np.ndarray:
    """The converter run over `inputs` block by block, switching to emb_b before block switch_block."""
    from engine.pipeline import StreamingConverter

    conv = StreamingConverter(_config(model_dir), quiet=True)
    conv.set_embedding(np.asarray(emb_a, np.float32))
    conv.bypass = bypass
    out = np.zeros(inputs.size, np.float32)
    for k in range(inputs.size // BLOCK):
        if k == switch_block:
            conv.set_embedding(np.asarray(emb_b, np.float32), crossfade_blocks)
        out[k * BLOCK:(k + 1) * BLOCK] = conv.process(inputs[k * BLOCK:(k + 1) * BLOCK])
    return np.float32(gain) * (out + np.float32(offset)) if not bypass else out


def align(signal: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """(lag, r): signal[lag:lag + len(ref)] best matches ref; r the Pearson correlation there."""
    a, b = signal - signal.mean(), ref - ref.mean()
    n = 1 << int(np.ceil(np.log2(a.size + b.size)))
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)[: a.size]
    lag = int(np.argmax(xc))
    seg = signal[lag:lag + ref.size]
    return lag, float(np.corrcoef(seg, ref[:seg.size])[0, 1])


def live_run(server, model_dir, audio, tmp: Path, *, bypass=False, gain=1.0, offset=0.0, emb_a=None,
             emb_b=None, switch_blocks=0) -> dict:
    """Play `audio` into the microphone while a child LiveSession runs; recording, tap and stats."""
    job = {"model": str(model_dir), "bypass": bypass, "gain": gain, "offset": offset, "emb_a": emb_a,
           "emb_b": emb_b, "switch_blocks": switch_blocks, "out": str(tmp / "result")}
    (tmp / "job.json").write_text(json.dumps(job))
    env = {**server.env, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), server.env.get("PYTHONPATH", "")])}
    rec = server.record()
    with open(tmp / "child.log", "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, str(tmp / "job.json")], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        killer = threading.Timer(60, proc.kill)  # a hung child fails the test instead of hanging it
        killer.start()
        try:
            ready = proc.stdout.readline().strip()
            assert ready == "ready", f"child did not start:\n{(tmp / 'child.log').read_text()[-3000:]}"
            time.sleep(0.5)  # the stream settles before the utterance starts
            first = server.mic.play(audio)
            assert server.mic.wait(audio.size / RATE + 10), "the microphone writer stalled"
            time.sleep(0.8)  # the last converted blocks reach the speaker
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            assert proc.wait(30) == 0, f"child failed:\n{(tmp / 'child.log').read_text()[-3000:]}"
        finally:
            killer.cancel()
            proc.kill()
            recording = rec.stop()
    data = np.load(job["out"] + ".npz")
    return {"recording": recording, "rec_start": rec.started_at, "played_at": server.mic.capture_time(first),
            "inputs": data["inputs"], "outputs": data["outputs"], "embedding_sums": data["embedding_sums"],
            "stats": json.loads(Path(job["out"] + ".json").read_text())}


def end_to_end_ms(run: dict, lag: int, file_at: int) -> float:
    """Time from the microphone capturing the utterance's first sample to its output at the speaker."""
    return 1000.0 * (run["rec_start"] + (lag + file_at) / RATE - run["played_at"])


def report(capsys, label: str, run: dict, e2e_ms: float) -> None:
    s = run["stats"]
    with capsys.disabled():
        print(f"\n[live audio] {label}: end-to-end {e2e_ms:.0f} ms (session estimate {s['latency_ms']:.0f} ms, "
              f"stream {s['stream_latency_ms'][0]:.0f}+{s['stream_latency_ms'][1]:.0f} ms); "
              f"{s['blocks']} blocks, late {s['late']}, dropped {s['dropped']}, xruns {s['xruns']}, "
              f"compute p50 {s['p50_ms']:.2f} p99 {s['p99_ms']:.2f} ms, duplex {s['duplex']}")


@pytest.fixture(scope="module")
def server():
    with pulse.PulseServer(RATE) as s:
        yield s


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from support.toy_model import write_toy_model

    return write_toy_model(tmp_path_factory.mktemp("toy") / "model")


def _levels(model_dir, audio: np.ndarray) -> tuple[float, float, float]:
    """(min, max, largest sample-to-sample step) of the toy conversion of silence + audio."""
    y = offline(model_dir, np.concatenate([np.zeros(10 * BLOCK, np.float32), audio]), np.zeros(8))
    return float(y.min()), float(y.max()), float(np.abs(np.diff(y)).max())


def _assert_clean(stats: dict) -> None:
    x = stats["xruns"]
    assert stats["late"] == 0 and x["output_underruns"] == 0, f"callback output underruns: {stats}"
    assert x["input_overruns"] == 0 and x["output_overruns"] == 0 and stats["dropped"] == 0, stats


def test_live_conversion_matches_offline_without_underruns(server, model_dir, tmp_path, capsys):
    audio = speech_like(10.0, seed=3)
    lo, hi, step = _levels(model_dir, audio)
    delta = 1.5 * step  # an instant switch would be the largest jump of the recording
    gain, offset = 1.6 / (hi - lo + delta), -(lo + hi + delta) / 2
    emb_a, emb_b = [0.0] * 8, [delta / 8] * 8
    first_voiced = int(np.flatnonzero(audio)[0]) // BLOCK
    run = live_run(server, model_dir, audio, tmp_path, gain=gain, offset=offset, emb_a=emb_a, emb_b=emb_b,
                   switch_blocks=round(SWITCH_AT_S * RATE / BLOCK) - first_voiced)

    inputs, sums = run["inputs"], run["embedding_sums"]
    switch = int(np.flatnonzero(np.abs(sums - sums[0]) > 1e-6)[0])  # first block of the crossfade
    ref = offline(model_dir, inputs, emb_a, emb_b, switch, gain=gain, offset=offset)
    np.testing.assert_allclose(run["outputs"], ref, atol=1e-5)  # the live worker ran the same conversion

    file_at, r_in = align(inputs, audio)
    assert r_in > 0.99, f"the microphone did not deliver the utterance intact (r={r_in:.3f})"
    lag, r = align(run["recording"], ref)
    assert r >= 0.9, f"recorded conversion vs offline conversion: r={r:.3f}"

    _assert_clean(run["stats"])
    rec = run["recording"][lag:lag + ref.size]
    at, crossfade = switch * BLOCK, 4
    around = slice(at - 2 * BLOCK, at + (crossfade + 2) * BLOCK)
    steps = np.abs(np.diff(rec))
    elsewhere = np.concatenate([steps[:around.start], steps[around.stop:]])
    assert steps[around].max() <= elsewhere.max(), (steps[around].max(), elsewhere.max())
    instant = np.abs(np.diff(offline(model_dir, inputs, emb_a, emb_b, switch, gain=gain, offset=offset,
                                     crossfade_blocks=0)))
    assert instant[around].max() > elsewhere.max(), "the switch is too small to show a click: test has no teeth"
    report(capsys, "conversion", run, end_to_end_ms(run, lag, file_at))


def test_live_bypass_latency(server, model_dir, tmp_path, capsys):
    audio = speech_like(4.0, seed=4)
    run = live_run(server, model_dir, audio, tmp_path, bypass=True, emb_a=[0.0] * 8)
    np.testing.assert_array_equal(run["outputs"], run["inputs"])
    file_at, r_in = align(run["inputs"], audio)
    assert r_in > 0.99
    lag, r = align(run["recording"], run["inputs"])
    assert r >= 0.99, f"bypass recording vs microphone input: r={r:.3f}"
    _assert_clean(run["stats"])
    report(capsys, "bypass", run, end_to_end_ms(run, lag, file_at))


if __name__ == "__main__":
    child(sys.argv[1])
