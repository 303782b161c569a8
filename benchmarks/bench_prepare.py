"""How fast `cxrtool prepare` decodes 1024x1024 PNGs, against a plain single-process PIL loop.

Generates N synthetic radiographs at 1024 x 1024 in NIH's layout (once, in a temporary folder),
then times: (a) a bare loop that opens each PNG with PIL, converts to grey and resizes to 256;
(b) `prepare_nih` with 1 worker; (c) `prepare_nih` with every CPU. `prepare` does more than (a):
it also square-crops, fingerprints each image, hashes each file, finds near-duplicates, splits and
writes the cache. torch is imported before timing: the manifest records its version, and that
one-off import (seconds on a busy machine) is not a per-image cost. Prints a markdown table.

    python benchmarks/bench_prepare.py [--images 200] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name
from PIL import Image

from cxrtool.data.prepare import PrepareNihConfig, prepare_nih
from cxrtool.data.sources.synthetic import SyntheticConfig, write_raw
from cxrtool.progress import set_quiet


def plain_loop(files: list[Path], size: int) -> float:
    start = time.perf_counter()
    out = np.empty((len(files), size, size), dtype=np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            out[i] = np.asarray(im.convert("L").resize((size, size), Image.Resampling.LANCZOS))
    return len(files) / (time.perf_counter() - start)


def timed_prepare(root: Path, out: Path, size: int, workers: int, n: int) -> float:
    start = time.perf_counter()
    prepare_nih(PrepareNihConfig(root=root, out=out, size=size, workers=workers, overwrite=True))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    set_quiet(True)
    import torch  # noqa: F401 - see the docstring

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "raw"
        # About two images per patient: enough patients for the requested count.
        write_raw(root, SyntheticConfig(n_patients=max(1, args.images // 2), size=1024, seed=0))
        files = sorted((root / "images").glob("*.png"))
        n = len(files)
        plain_loop(files[:10], args.size)  # warm the file cache
        rows = [("plain PIL loop (1 process: open, grey, resize)", 1, plain_loop(files, args.size))]
        rows.append(("cxrtool prepare nih", 1, timed_prepare(root, Path(tmp) / "c1", args.size, 1, n)))
        if cpus > 1:
            rows.append(("cxrtool prepare nih", cpus, timed_prepare(root, Path(tmp) / "cn", args.size, cpus, n)))
    print(f"{n} PNGs of 1024 x 1024 -> {args.size} px cache; {cpu_name()}, {cpus} CPUs, no GPU\n")
    print("| method | workers | images/s |")
    print("| --- | --- | --- |")
    for name, workers, rate in rows:
        print(f"| {name} | {workers} | {rate:.1f} |")


if __name__ == "__main__":
    main()
