"""How long `cxrtool demo` takes, quick and full: the figures docs/demo.md and the README quote.

Runs each variant in a fresh process into a temporary folder and records its wall time, with the
machine's CPU, core count and load average before and after (the demo trains on the CPU, so a busy
machine is slower; the figures say which it was).

    python benchmarks/bench_demo.py [--variants quick,full]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name, load_average

VARIANTS = {"quick": ["--quick"], "full": []}


def time_demo(variant: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "cxrtool", "demo", "--out", str(Path(tmp) / "demo"), *VARIANTS[variant]]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="quick,full", help="comma-separated: quick, full")
    args = parser.parse_args(argv)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load average before: {load_average()}")
    print("| demo | wall time |")
    print("| --- | ---: |")
    seconds = {}
    for variant in args.variants.split(","):
        seconds[variant] = time_demo(variant)
        print(f"| `cxrtool demo{' --quick' if variant == 'quick' else ''}` | {seconds[variant] / 60:.1f} min |")
    print(f"load average after: {load_average()}")
    return seconds


if __name__ == "__main__":
    main()
