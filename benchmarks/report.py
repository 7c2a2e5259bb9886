"""What every benchmark writes besides its numbers: the machine it ran on, JSON, tables."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Platform, CPU and library versions: a measured figure means nothing without them."""
    import numba
    import numpy
    import onnxruntime

    return {"platform": platform.platform(), "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
            "load_average_1m": _load(), "python": sys.version.split()[0], "numpy": numpy.__version__,
            "numba": numba.__version__, "onnxruntime": onnxruntime.__version__}


def _load() -> float | None:
    """1-minute load average when measured: other work on the CPUs shows up as p99 outliers."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_line(info: dict) -> str:
    return (f"machine: {info['cpu']} ({info['logical_cpus']} logical CPUs, load {info['load_average_1m']}), "
            f"{info['platform']}, onnxruntime {info['onnxruntime']}")


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; cells already formatted."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns right-aligned to their widest cell, for the terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [header, *rows])
