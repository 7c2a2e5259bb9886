"""Results the quality benchmark keeps between runs: DIR/<kind>-<key>.pkl.

The key is a digest of what the result was computed from. For corpus files that is
each file's path (relative to the corpus root), size and modification time in
nanoseconds, not its content: a stat of the 12,500 train files of the 10x300 corpus
takes milliseconds where hashing their 650 MB takes seconds on every run, a file
rewritten in place gets a new mtime, and what can fool the key only errs one way (a
copy without preserved times, or `touch`, makes a miss and a refit, never a stale hit).

Entries are written to a temporary file and renamed, so a crash leaves the old entry
or the new one. An entry that cannot be read back (truncated, another library version,
garbage) is recomputed with a one-line notice, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

FORMAT = "evc-cache/1"


def default_dir() -> Path:
    """$XDG_CACHE_HOME/evc, ~/.cache/evc without it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "evc"


def digest(description) -> str:
    """A short hex digest of a JSON-able description (dict keys sorted)."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def files_key(paths: Iterable[Path], root: Path) -> list[tuple[str, int, int]]:
    """(path relative to root, size, mtime_ns) of each file, sorted: what a result from them depends on."""
    rows = []
    for path in paths:
        stat = Path(path).stat()
        rows.append((Path(path).resolve().relative_to(Path(root).resolve()).as_posix(), stat.st_size,
                     stat.st_mtime_ns))
    return sorted(rows)


def content_digest(path: Path) -> str | None:
    """sha256 of a small file's bytes (labels, not audio), None when it does not exist."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class Cache:
    """A cache directory; directory None reads and writes nothing (`--no-cache`)."""

    def __init__(self, directory: str | Path | None, echo: Callable[[str], None] = print):
        self.directory = Path(directory).expanduser() if directory is not None else None
        self.echo = echo

    def path(self, kind: str, key: str) -> Path | None:
        return self.directory / f"{kind}-{key}.pkl" if self.directory is not None else None

    def load(self, kind: str, key: str):
        """The stored value, or None when absent, disabled or unreadable (said in one line)."""
        path = self.path(kind, key)
        if path is None or not path.is_file():
            return None
        try:
            with path.open("rb") as f:
                stored = pickle.load(f)
            if not (isinstance(stored, tuple) and len(stored) == 3 and stored[:2] == (FORMAT, key)):
                raise ValueError("not an entry of this key")
            return stored[2]
        except Exception as e:  # whatever a damaged pickle raises: the entry is recomputed
            self.echo(f"note: cache entry {path} is unreadable ({type(e).__name__}: {_first_line(e)}); "
                      "computing it again")
            return None

    def store(self, kind: str, key: str, value) -> None:
        """Write atomically; a cache that cannot be written costs the next run time, not this run."""
        path = self.path(kind, key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("wb", dir=path.parent, suffix=".tmp", delete=False) as f:
                pickle.dump((FORMAT, key, value), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(f.name, path)
        except OSError as e:
            self.echo(f"note: cannot write cache entry {path} ({e.strerror or e}); continuing without it")

    def get(self, kind: str, key: str, make: Callable[[], object]) -> tuple[object, bool]:
        """(value, True) from the cache, else (make(), False) after storing it."""
        value = self.load(kind, key)
        if value is not None:
            return value, True
        value = make()
        self.store(kind, key, value)
        return value, False


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no message"
