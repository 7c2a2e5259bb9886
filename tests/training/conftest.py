"""Every training test runs its tiny models on one torch thread (support.threads)."""

from __future__ import annotations

import pytest

from support.threads import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield
