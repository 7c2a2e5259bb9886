"""Single-producer / single-consumer float32 ring buffer between audio callback and worker.

Real-time policy: neither side ever blocks or allocates.

* write() on a full buffer keeps what fits and DROPS the rest of the incoming block
  (the newest samples), counting one overrun per short write. Dropping the newest
  rather than overwriting the oldest keeps the consumer's unread data intact and
  keeps the producer from touching the read index.
* read() on a short buffer returns what there is, fills the rest of `out` with zeros
  (silence) and counts one underrun per short read.

Thread safety (one producer thread, one consumer thread, CPython with the GIL):
the producer only ever assigns `_written` and `overruns`/`dropped`, the consumer only
`_read` and `underruns`. Both indices are monotonic sample counters (Python ints never
overflow), their position in the array is counter % capacity and the fill level is
`_written - _read`, so no flag is shared and no lock is needed. A side first copies
the samples and only then publishes its new counter with a single attribute
assignment, which is atomic under the GIL; the other side therefore never sees an
index that runs ahead of the data. A stale view of the other side's counter only
makes `available`/`free` look smaller than they are, never larger. (Free-threaded
Python builds give no such ordering guarantee; this class assumes the GIL.)

storage:  [....RRRRRRRR.........]   R = readable, between _read and _written (mod capacity)
                ^read      ^write
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-capacity float32 FIFO of samples; all storage allocated in __init__."""

    def __init__(self, capacity: int) -> None:
        if int(capacity) <= 0:
            raise ValueError(f"capacity must be a positive number of samples, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0
        self._read = 0
        self.overruns = 0
        self.dropped = 0
        self.underruns = 0

    @property
    def available(self) -> int:
        """Samples ready to read."""
        return self._written - self._read

    @property
    def free(self) -> int:
        """Samples that can be written without an overrun."""
        return self.capacity - (self._written - self._read)

    def write(self, x: np.ndarray) -> int:
        """Append (n,) samples; returns how many fit. The rest are dropped and counted.

        Producer side only.
        """
        wanted = len(x)
        start = self._written
        n = min(wanted, self.capacity - (start - self._read))
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos:pos + first] = x[:first]
        self._buf[:n - first] = x[first:n]
        self._written = start + n
        if n < wanted:
            self.overruns += 1
            self.dropped += wanted - n
        return n

    def read(self, out: np.ndarray) -> int:
        """Fill (n,) out with the oldest samples; returns how many were real.

        A short read fills the tail of out with zeros and counts an underrun.
        Consumer side only.
        """
        wanted = len(out)
        start = self._read
        n = min(wanted, self._written - start)
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        out[:first] = self._buf[pos:pos + first]
        out[first:n] = self._buf[:n - first]
        self._read = start + n
        if n < wanted:
            out[n:] = 0.0
            self.underruns += 1
        return n

    def clear(self) -> None:
        """Discard every readable sample (counters are kept: they are statistics).

        Moves only the read index, so it is a consumer-side operation and safe while
        the producer runs; call it from the consumer thread.
        """
        self._read = self._written
