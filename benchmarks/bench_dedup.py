"""The near-duplicate search at NIH's full size: time and peak memory, with planted copies found.

Writes a cache of N generated radiographs (default 112,120, NIH's count, ~3.6 images per patient
as in NIH) straight into the cache's image format at a small side (default 128 px, the side the
confirmation looks at), plants `--copies` altered copies (crop, rescale, gamma, contrast,
brightness, JPEG) under other patients, then runs `fingerprint.near_duplicates` exactly as
`prepare` does (patients as groups, pixels read back from the memmap). Reports: seconds per
stage, candidates, confirmed pairs, planted copies found, the peak of memory allocated by Python
and NumPy during the search (tracemalloc) and the process's peak resident size (getrusage; this
includes the memmap's pages the kernel keeps resident, which it can drop at any time).

    python benchmarks/bench_dedup.py [--images 112120] [--size 128] [--copies 200]
"""

from __future__ import annotations

import argparse
import io
import platform
import resource
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from cxrtool.data.fingerprint import fingerprint, near_duplicates
from cxrtool.data.imageio import preprocess
from cxrtool.data.sources.synthetic import Anatomy, draw_image
from cxrtool.progress import set_quiet


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown CPU"


def change(img: np.ndarray, kind: int, rng: np.random.Generator) -> np.ndarray:
    """One of the alterations a copy of a film goes through."""
    h, w = img.shape
    if kind == 0:  # a border of up to 15% per side
        b = rng.uniform(0, 0.15, 4)
        return img[int(b[0] * h) : h - int(b[1] * h), int(b[2] * w) : w - int(b[3] * w)]
    if kind == 1:
        f = rng.uniform(0.5, 0.9)
        return np.asarray(Image.fromarray(img).resize((int(w * f), int(h * f)), Image.Resampling.LANCZOS))
    if kind == 2:
        return (255 * (img / 255.0) ** rng.uniform(0.6, 1.6)).astype(np.uint8)
    if kind == 3:
        return np.clip((img.astype(float) - 128) * rng.uniform(1.1, 1.4) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(rng.integers(50, 90)))
    return np.asarray(Image.open(buf).convert("L"))


def build(path: Path, n: int, size: int, copies: int, seed: int) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """The image file, fingerprints and patients of n images; the planted (original, copy) rows."""
    rng = np.random.default_rng(seed)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size))
    fps, patients, planted = [], [], []
    originals = n - copies
    row, patient = 0, 0
    while row < originals:
        anat = Anatomy.sample(rng)
        for _ in range(min(originals - row, int(rng.integers(1, 7)))):  # follow-ups: ~3.5 per patient
            img, _ = draw_image(anat, [], size, rng)
            images[row] = img
            fps.append(fingerprint(img))
            patients.append(f"p{patient}")
            row += 1
        patient += 1
    for k in range(copies):
        source = int(rng.integers(0, originals))
        img = preprocess(change(np.asarray(images[source]), k % 5, rng), size)[0]
        images[row] = img
        fps.append(fingerprint(img))
        patients.append(f"copy{k}")
        planted.append((source, row))
        row += 1
    images.flush()
    del images
    return fps, patients, planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=112_120)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_quiet(True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.u8.npy"
        start = time.perf_counter()
        fps, patients, planted = build(path, args.images, args.size, args.copies, args.seed)
        built = time.perf_counter() - start
        images = np.load(path, mmap_mode="r")
        tracemalloc.start()
        start = time.perf_counter()
        pairs = near_duplicates(fps, lambda i: images[i], groups_a=patients)
        took = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    found = {(p.i, p.j) for p in pairs}
    hits = sum((min(a, b), max(a, b)) in found for a, b in planted)
    planted_rows = {b for _, b in planted}
    other = sum(1 for p in pairs if p.i not in planted_rows and p.j not in planted_rows)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {cpu_name()}, {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"| images | side | build s | search s | images/s | pairs | planted found | other pairs | peak traced MB | peak RSS MB |")
    print(f"|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.images:,} | {args.size} | {built:.0f} | {took:.0f} | {args.images / took:.0f} | {len(pairs)} | "
          f"{hits}/{len(planted)} | {other} | {peak / 2**20:.0f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
