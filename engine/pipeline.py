"""The streaming conversion pipeline: one audio block in, one converted block out.

    block (block_samples,) ─┬─► StreamingLogMel ─► mel (n_mels, block_frames) ─┐
                            └─► StreamingPitch ──► pitch (4, block_frames) ─────┤
                                                  emotion embedding (D,) ───────┤
                                                  prosody move (5,) ────────────┼─► step.onnx ─► audio block
                                                  (both crossfaded) ────────────┘

The prosody move is the bank entry's measured pitch and level against the neutral entry's
(engine.prosody), imposed in the step graph: the pitch relative to the source's own register,
the loudness as the reference's; a model exported before the graph took it is fed nothing and
keeps its generator's prosody.

Everything a block touches is allocated in __init__; process() allocates nothing, so
the live worker and `evc convert` run the very same code at a steady cost. The live
audio worker calls process() from one thread; set_embedding/set_emotion may be called
from another (a UI): the new value is handed over under a lock and picked up at the
start of the next block.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.bank import MAX_STRENGTH, EmotionBank, check_entry
from engine.config import EngineConfig
from engine.errors import EVCError
from engine.features import StreamingLogMel
from engine.manifest import load_for_config
from engine.pitch import StreamingPitch
from engine.prosody import MOVE_SIZE, prosody_move
from engine.runtime import Sessions, StepRunner

TIMING_WINDOW = 1024
"""process() times kept for stats(): the last 1024 blocks (20 s at 20 ms blocks)."""


class EmbeddingFade:
    """The emotion embedding fed to each block, moving linearly to a new target.

    After set(target, n), the next n blocks use current + k/n * (target - current),
    k = 1..n, so block n uses the target exactly; n = 0 jumps at the next block.
    """

    def __init__(self, dim: int):
        self.now = np.zeros(dim, np.float32)
        self._start = np.zeros(dim, np.float32)
        self._target = np.zeros(dim, np.float32)
        self._delta = np.zeros(dim, np.float32)
        self._pending = np.zeros(dim, np.float32)
        self._pending_blocks = 0
        self._has_pending = False
        self._blocks = 0
        self._done = 0
        self._lock = threading.Lock()

    def set(self, target: np.ndarray, blocks: int) -> None:
        """Hand a new target over to the block thread; target: (D,)."""
        with self._lock:
            np.copyto(self._pending, target)
            self._pending_blocks = blocks
            self._has_pending = True

    def next_block(self) -> np.ndarray:
        """The embedding of the next block, (D,) float32, a view of a reused buffer."""
        if self._has_pending:
            self._take_pending()
        if self._done < self._blocks:
            self._done += 1
            if self._done == self._blocks:
                np.copyto(self.now, self._target)  # land exactly, not within rounding
            else:
                np.multiply(self._delta, self._done / self._blocks, out=self.now)
                np.add(self.now, self._start, out=self.now)
        return self.now

    def settle(self) -> None:
        """Finish any fade at once: the next block uses the latest target."""
        if self._has_pending:
            self._take_pending()
        np.copyto(self.now, self._target)
        self._done = self._blocks

    def _take_pending(self) -> None:
        with self._lock:
            np.copyto(self._start, self.now)
            np.copyto(self._target, self._pending)
            self._blocks, self._done = self._pending_blocks, 0
            self._has_pending = False
        np.subtract(self._target, self._start, out=self._delta)
        if self._blocks == 0:
            np.copyto(self.now, self._target)


def _finite(values: np.ndarray, size: int, what: str) -> np.ndarray:
    """values as (size,) float32, or EVCError (one line) when they are not `size` finite numbers."""
    values = np.asarray(values, np.float32)
    if values.shape != (size,) or not np.isfinite(values).all():
        raise EVCError(f"{what}: expected {size} finite values, got shape {values.shape}")
    return values


class DelayLine:
    """A fixed delay of `delay` samples over blocks of `block` samples, preallocated ring."""

    def __init__(self, delay: int, block: int):
        self.delay = delay
        self._ring = np.zeros(delay + block, np.float32)
        self._pos = 0

    def reset(self) -> None:
        self._ring.fill(0.0)
        self._pos = 0

    def process(self, block: np.ndarray, out: np.ndarray) -> None:
        """out (block,) := the input `delay` samples ago; block: (block,) float32."""
        size, n = self._ring.size, block.size
        _ring_copy(self._ring, self._pos, block, write=True)
        _ring_copy(self._ring, (self._pos - self.delay) % size, out, write=False)
        self._pos = (self._pos + n) % size


def _ring_copy(ring: np.ndarray, pos: int, x: np.ndarray, write: bool) -> None:
    """ring[pos : pos + len(x)] (wrapping) := x when write, else x := that span."""
    first = min(x.size, ring.size - pos)
    if write:
        np.copyto(ring[pos:pos + first], x[:first])
        np.copyto(ring[:x.size - first], x[first:])
    else:
        np.copyto(x[:first], ring[pos:pos + first])
        np.copyto(x[first:], ring[:x.size - first])


class BlockTimes:
    """Compute time of the last TIMING_WINDOW blocks, in a preallocated int64 ring (ns)."""

    def __init__(self, block_ms: float):
        self.block_ms = block_ms
        self._ns = np.zeros(TIMING_WINDOW, np.int64)
        self.count = 0

    def record(self, ns: int) -> None:
        self._ns[self.count % TIMING_WINDOW] = ns
        self.count += 1

    def since(self, count: int) -> tuple[np.ndarray, int]:
        """(ms of the blocks recorded after the first `count`, as far as the window still holds
        them; the count now); allocates. A caller polling within TIMING_WINDOW blocks sees all."""
        new = min(self.count - count, TIMING_WINDOW)
        idx = np.arange(self.count - new, self.count) % TIMING_WINDOW
        return self._ns[idx] / 1e6, self.count

    def summary(self) -> dict:
        """p50/p99/max ms and RTF (mean compute / block duration) over the window; allocates."""
        ms = self._ns[: min(self.count, TIMING_WINDOW)] / 1e6
        if ms.size == 0:
            return {"blocks": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "rtf": 0.0,
                    "block_ms": self.block_ms}
        return {"blocks": self.count, "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
                "rtf": float(ms.mean() / self.block_ms), "block_ms": self.block_ms}


class StreamingConverter:
    """Converts a stream block by block with the current emotion embedding.

    process(block (block_samples,) float32) -> (block_samples,) float32. The output of
    the call for input block t is the conversion of blocks up to t, delayed inside the
    model by `delay_samples` (lookahead and vocoder overlap, from the manifest);
    `bypass` returns the input through a delay line of the same length, so switching
    between the two keeps the timing. The model keeps running under bypass, so turning
    it off resumes from a warm state; each switch is crossfaded over one block.
    """

    def __init__(self, cfg: EngineConfig, bank: EmotionBank | None = None, quiet: bool = False):
        self.cfg = cfg
        self.bank = bank
        self.manifest = load_for_config(cfg)
        self.spec = self.manifest.spec
        self.block_samples = self.spec.block_samples
        self.sessions = Sessions(cfg.model_dir, self.manifest, cfg.runtime, quiet)
        self.runner = StepRunner(self.sessions, self.manifest)
        self.frontend = StreamingLogMel(self.spec)
        self.pitch = StreamingPitch(self.spec)
        self.emotion_name: str | None = None
        self.strength: float | None = None
        self._fade = EmbeddingFade(self.manifest.embedding_dim)
        self._move = EmbeddingFade(MOVE_SIZE)
        self.takes_prosody = self.manifest.takes_prosody
        self._has_embedding = False
        self._dry = DelayLine(self.delay_samples, self.block_samples)
        self._out = np.zeros(self.block_samples, np.float32)
        self._dry_out = np.zeros(self.block_samples, np.float32)
        self._ramp_up = (np.arange(1, self.block_samples + 1) / self.block_samples).astype(np.float32)
        self._ramp_down = 1.0 - self._ramp_up
        self._bypass = False
        self._wet = 1.0  # wet gain of the last block: 1 converted, 0 bypassed
        self._blocks_since_reset = 0
        self._times = BlockTimes(self.spec.block_ms)
        self._warm_up()

    @property
    def delay_samples(self) -> int:
        """Samples between an input sample and its converted output beyond the block itself.

        The lookahead frames at least; more when the manifest's algorithmic latency says
        the vocoder needs a synthesis overlap.
        """
        spec = self.spec
        stated = round(self.manifest.algorithmic_latency_ms * spec.sample_rate / 1000) - spec.block_samples
        return max(spec.lookahead_frames * spec.hop, stated, 0)

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency stated by the manifest (block + lookahead + overlap)."""
        return self.manifest.algorithmic_latency_ms

    @property
    def embedding(self) -> np.ndarray:
        """The embedding the last block used, (D,) float32 (a copy)."""
        return self._fade.now.copy()

    @property
    def bypass(self) -> bool:
        return self._bypass

    @bypass.setter
    def bypass(self, value: bool) -> None:
        """Switch at the next block, crossfaded over it; at once when no block ran since reset()."""
        self._bypass = bool(value)
        if self._blocks_since_reset == 0:
            self._wet = 0.0 if self._bypass else 1.0

    def set_embedding(self, embedding: np.ndarray, crossfade_blocks: int | None = None,
                      move: np.ndarray | None = None) -> None:
        """Move the emotion embedding (D,) to `embedding`, and the prosody move to `move` (MOVE_SIZE,)
        (None: zeros, the generator's own prosody), over `crossfade_blocks` blocks.

        Default cfg.bank.crossfade_blocks; 0 switches at the next block. The first
        embedding ever set applies at once: there is nothing to fade from (until then
        blocks use the zero vector).
        """
        embedding = _finite(embedding, self.manifest.embedding_dim, "embedding")
        move = np.zeros(MOVE_SIZE, np.float32) if move is None else _finite(move, MOVE_SIZE, "prosody move")
        blocks = self.cfg.bank.crossfade_blocks if crossfade_blocks is None else int(crossfade_blocks)
        if blocks < 0:
            raise EVCError(f"crossfade_blocks: expected >= 0, got {blocks}")
        blocks = blocks if self._has_embedding else 0
        self._fade.set(embedding, blocks)
        self._move.set(move, blocks)
        self._has_embedding = True

    def set_emotion(self, name: str, strength: float | None = None, crossfade_blocks: int | None = None) -> None:
        """Switch to bank entry `name` at `strength`.

        strength None: the reference's own embedding e_ref. Otherwise s in [0, MAX_STRENGTH]:
        e(s) = e_neutral + s * (e_ref - e_neutral), e_neutral the bank's neutral entry
        (EmotionBank.neutral); s = 0 is neutral, 1 the reference, above 1 exaggerates
        along the same direction.
        """
        if self.bank is None:
            raise EVCError("no emotion bank: the converter was built without one")
        entry = self.bank.get(name)
        check_entry(entry, self.manifest)
        embedding = entry.embedding
        if strength is not None:
            embedding = self._scaled(entry.embedding, float(strength))
        self.set_embedding(embedding, crossfade_blocks, self._prosody(entry, 1.0 if strength is None else strength))
        self.emotion_name, self.strength = entry.name, strength

    def _prosody(self, entry, strength: float) -> np.ndarray:
        """The measured move of `entry` from the bank's neutral entry at `strength` (zeros without one,
        or when either was registered before prosody was measured)."""
        try:
            neutral = self.bank.neutral()
        except EVCError:
            return np.zeros(MOVE_SIZE, np.float32)
        bank = self.cfg.bank
        return prosody_move(entry.prosody, neutral.prosody, float(strength), bank.pitch_move, bank.level_move)

    def _scaled(self, reference: np.ndarray, strength: float) -> np.ndarray:
        """e_neutral + strength * (reference - e_neutral), (D,) float32."""
        if not 0.0 <= strength <= MAX_STRENGTH:
            raise EVCError(f"strength: expected a number in [0, {MAX_STRENGTH}], got {strength:g}")
        neutral = self.bank.neutral()
        check_entry(neutral, self.manifest)
        return (neutral.embedding + strength * (reference - neutral.embedding)).astype(np.float32)

    def reset(self) -> None:
        """Start a new stream: frontends and model state from zero, delay line empty, fade finished."""
        self.frontend.reset()
        self.pitch.reset()
        self.runner.reset()
        self._dry.reset()
        self._fade.settle()
        self._move.settle()
        self._wet = 0.0 if self._bypass else 1.0
        self._blocks_since_reset = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """block (block_samples,) float32 → (block_samples,) float32.

        The result is a view of a buffer the next call overwrites: copy it to keep it.
        """
        start = time.perf_counter_ns()
        if block.shape != (self.block_samples,):
            raise ValueError(f"block: expected ({self.block_samples},) samples, got {block.shape}")
        mel, pitch, emotion = self.frontend.process(block), self.pitch.process(block), self._fade.next_block()
        move = self._move.next_block()
        if self.takes_prosody:
            wet = self.runner.run(mel=mel, pitch=pitch, emotion=emotion, prosody=move)
        else:
            wet = self.runner.run(mel=mel, pitch=pitch, emotion=emotion)
        self._mix(block, wet)
        self._blocks_since_reset += 1
        self._times.record(time.perf_counter_ns() - start)
        return self._out

    def _mix(self, block: np.ndarray, wet: np.ndarray) -> None:
        """_out := converted or dry (delayed input), ramped over this block when bypass changed."""
        target = 0.0 if self._bypass else 1.0
        self._dry.process(block, self._dry_out)  # always, so a switch to bypass finds it current
        if target == 1.0 and self._wet == 1.0:
            np.copyto(self._out, wet)
            return
        if target == self._wet:
            np.copyto(self._out, self._dry_out)
            return
        # out = dry + g * (wet - dry), g ramping from the old wet gain to the new one
        np.subtract(wet, self._dry_out, out=self._out)
        np.multiply(self._out, self._ramp_up if target == 1.0 else self._ramp_down, out=self._out)
        np.add(self._out, self._dry_out, out=self._out)
        self._wet = target

    def stats(self) -> dict:
        """Per-block compute time over the last TIMING_WINDOW blocks.

        {"blocks": total processed, "p50_ms", "p99_ms", "max_ms", "rtf": mean compute time
        / block duration (< 1 is faster than real time), "block_ms"}.
        """
        return self._times.summary()

    def times_since(self, count: int) -> tuple[np.ndarray, int]:
        """Per-block compute (ms) of the blocks after the first `count` since construction
        (the last TIMING_WINDOW at most), and the count now: poll it to see every block."""
        return self._times.since(count)

    def _warm_up(self) -> None:
        """One block through everything, so the first real block pays no first-call costs."""
        self.process(np.zeros(self.block_samples, np.float32))
        self.reset()
        self._times = BlockTimes(self.spec.block_ms)
