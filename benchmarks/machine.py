"""What every benchmark prints beside its figures: the CPU it ran on (and the load at the time).

The benchmarks run as scripts (`python benchmarks/bench_x.py`), so this folder is on `sys.path`
and they import it as `machine`.
"""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_name() -> str:
    """The CPU model from lscpu, else what the platform says."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    """The 1-minute load average: a figure measured on a busy machine says so."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"
