"""One torch thread for tests of tiny models (tests/training, tests/export)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny per-block convs only pay for thread synchronisation, and on a busy 2-core machine
    OpenMP threads spinning against other processes made training tests ~40x and the streaming
    module ~3x slower (31 s against 11 s). Restores the previous count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
