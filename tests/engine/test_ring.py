"""RingBuffer against a deque model, wrap-around, no allocation, and two real threads."""

from __future__ import annotations

import sys
import threading
import tracemalloc
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ring import RingBuffer


class Model:
    """The documented policy in plain Python: drop what does not fit, zero-fill short reads."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.q = capacity, deque()
        self.overruns = self.underruns = self.dropped = 0

    def write(self, x) -> int:
        n = min(len(x), self.capacity - len(self.q))
        self.q.extend(x[:n])
        if n < len(x):
            self.overruns += 1
            self.dropped += len(x) - n
        return n

    def read(self, size: int) -> tuple[list[float], int]:
        n = min(size, len(self.q))
        data = [self.q.popleft() for _ in range(n)] + [0.0] * (size - n)
        self.underruns += n < size
        return data, n


ops = st.lists(st.tuples(st.sampled_from(["write", "read", "clear"]), st.integers(0, 40)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 32), ops=ops)
def test_matches_deque_model(capacity, ops):
    ring, model = RingBuffer(capacity), Model(capacity)
    counter = 0
    for op, size in ops:
        if op == "write":
            x = np.arange(counter, counter + size, dtype=np.float32)
            counter += size
            assert ring.write(x) == model.write(list(x))
        elif op == "read":
            out = np.full(size, -1.0, dtype=np.float32)
            expected, n = model.read(size)
            assert ring.read(out) == n
            np.testing.assert_array_equal(out, np.asarray(expected, dtype=np.float32))
        else:
            ring.clear()
            model.q.clear()
        assert ring.available == len(model.q)
        assert ring.free == capacity - len(model.q)
        assert (ring.overruns, ring.underruns, ring.dropped) == (model.overruns, model.underruns, model.dropped)


def test_wrap_around_keeps_order():
    ring = RingBuffer(5)
    out = np.empty(3, dtype=np.float32)
    assert ring.write(np.array([1, 2, 3, 4], dtype=np.float32)) == 4
    assert ring.read(out) == 3 and out.tolist() == [1, 2, 3]
    # Write index at 4: this write wraps, storing 5 at the end and 6, 7, 8 at the start.
    assert ring.write(np.array([5, 6, 7, 8], dtype=np.float32)) == 4
    assert ring.free == 0
    out5 = np.empty(5, dtype=np.float32)
    assert ring.read(out5) == 5 and out5.tolist() == [4, 5, 6, 7, 8]
    assert ring.overruns == ring.underruns == 0


def test_overrun_drops_the_newest_and_underrun_pads_with_zeros():
    ring = RingBuffer(4)
    assert ring.write(np.array([1, 2, 3, 4, 5, 6], dtype=np.float32)) == 4
    assert (ring.overruns, ring.dropped) == (1, 2)
    assert ring.write(np.array([9], dtype=np.float32)) == 0
    assert (ring.overruns, ring.dropped) == (2, 3)
    out = np.full(6, -1.0, dtype=np.float32)
    assert ring.read(out) == 4
    assert out.tolist() == [1, 2, 3, 4, 0, 0] and ring.underruns == 1
    assert ring.read(out[:0]) == 0 and ring.underruns == 1  # an empty read is not an underrun


def test_clear_discards_readable_samples_only():
    ring = RingBuffer(8)
    ring.write(np.ones(6, dtype=np.float32))
    ring.clear()
    assert (ring.available, ring.free) == (0, 8)
    ring.write(np.full(3, 2.0, dtype=np.float32))
    out = np.empty(3, dtype=np.float32)
    assert ring.read(out) == 3 and out.tolist() == [2, 2, 2]


@pytest.mark.parametrize("capacity", [0, -3])
def test_capacity_must_be_positive(capacity):
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(capacity)


def test_steady_state_allocates_nothing():
    ring = RingBuffer(1000)
    block = np.linspace(-1, 1, 320, dtype=np.float32)
    out = np.empty(320, dtype=np.float32)
    for _ in range(10):  # warm up: first calls may create cached objects
        ring.write(block)
        ring.read(out)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(1000):  # 320 does not divide 1000: most pairs wrap around
            ring.write(block)
            ring.read(out)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 300
    np.testing.assert_array_equal(out, block)


def test_two_threads_pass_every_sample_in_order():
    total, capacity = 100_000, 257
    source = np.arange(total, dtype=np.float32)  # exact in float32 (< 2**24)
    received = np.empty(total, dtype=np.float32)
    ring = RingBuffer(capacity)
    rng = np.random.default_rng(0)
    write_sizes, read_sizes = rng.integers(1, 100, 10_000), rng.integers(1, 100, 10_000)

    def produce():
        sent, i = 0, 0
        while sent < total:
            size = min(int(write_sizes[i % write_sizes.size]), total - sent, ring.free)
            i += 1
            sent += ring.write(source[sent:sent + size])

    def consume():
        got, i = 0, 0
        out = np.empty(100, dtype=np.float32)
        while got < total:
            size = min(int(read_sizes[i % read_sizes.size]), total - got, ring.available)
            i += 1
            n = ring.read(out[:size])
            received[got:got + n] = out[:n]
            got += n

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to interleave writes and reads
    try:
        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    np.testing.assert_array_equal(received, source)
    # Sizes were bounded by free/available, so the policy never had to act.
    assert (ring.overruns, ring.underruns, ring.available) == (0, 0, 0)
