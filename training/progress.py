"""Progress bars: tqdm when it is installed and wanted, the bare iterable otherwise."""

from __future__ import annotations

from collections.abc import Iterable


def progress(items: Iterable, enabled: bool = True, **tqdm_args) -> Iterable:
    """`items` wrapped in a tqdm bar (tqdm_args: desc, total, unit...), or unchanged."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: training runs the same without a bar
        return items
    return tqdm(items, dynamic_ncols=True, **tqdm_args)
