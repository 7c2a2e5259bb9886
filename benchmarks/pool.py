"""Work spread over processes, for the quality benchmark's feature extraction and scoring.

Spawned, never forked: the parent may hold ONNX Runtime and numba threads, which fork
would copy mid-state. Each worker is single-threaded (BLAS, OpenMP, numba): `jobs`
processes on `jobs` cores, not jobs x cores threads fighting for them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children():
    """Environment that spawned children inherit (read by their libraries as they load)."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parallel_map(fn: Callable, items: Sequence, jobs: int | None, initializer: Callable | None = None,
                 initargs: tuple = (), chunksize: int = 1, min_per_job: int = 1) -> list:
    """[fn(item) for item in items], in order, in `jobs` processes, each set up by initializer(*initargs).

    In this process when jobs <= 1 or there are fewer than min_per_job items per job (a worker
    costs an interpreter start and imports). fn, items and initargs must pickle for jobs > 1.
    """
    jobs = jobs or 1
    if jobs == 1 or len(items) < min_per_job * jobs:
        if initializer is not None:
            initializer(*initargs)
        return [fn(item) for item in items]
    with _single_threaded_children(), ProcessPoolExecutor(
            jobs, mp_context=get_context("spawn"), initializer=initializer, initargs=initargs) as pool:
        return list(pool.map(fn, items, chunksize=chunksize))
