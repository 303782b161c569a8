"""Planted copies among real radiographs: how many the near-duplicate search finds, kind by kind.

bench_dedup.py measures the search at NIH's size on generated films, which all look alike at low
frequencies (the hard case for the candidate step, and not what real films are like). This one
measures recall on real X-rays: it reads every image under the given folders (by default the
NIH sample and the Cohen set in ../shared/data), caches each at `--size` px as `prepare` does,
plants `--copies` altered copies of each kind of change (crop, rescale, gamma, contrast or
brightness, JPEG: bench_dedup.change, applied to the full-size file as a copy in the wild is) of
randomly drawn films under new patients, and runs the search as `prepare` does. Reported per
kind: the copies among the candidates (the cheap step) and the copies confirmed; and the
candidates per image, the seconds of each step and the pairs confirmed that were not planted
(duplicates already in the data, e.g. the Cohen set's files under two patient ids).

Groups: files named like NIH's (`<patient>_<follow-up>.png`) are grouped by patient, so a
patient's follow-ups are never compared; any other file is its own group.

    python benchmarks/bench_copies_real.py [--copies 60] [--seed 1] [--kinds crop,gamma] [FOLDER ...]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import numpy as np
from bench_dedup import KINDS, change
from machine import cpu_name

from cxrtool.data.imageio import ImageReadError, preprocess, read_gray
from cxrtool.data.neardup.confirm import confirm
from cxrtool.data.neardup.hashing import fingerprint
from cxrtool.data.neardup.search import ImageSet, find_candidates
from cxrtool.data.walk import collect_image_files
from cxrtool.progress import set_quiet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_FOLDERS = [SHARED / "nih-chestxray14-sample" / "images", SHARED / "covid-chestxray-dataset" / "images"]
_NIH_NAME = re.compile(r"^(\d{8})_\d{3}$")


def group_of(path: Path) -> str:
    """NIH's patient for its file names (`00000013_005` -> `00000013`), else the file itself."""
    match = _NIH_NAME.match(path.stem)
    return match.group(1) if match else str(path)


def load(folders: list[Path], size: int, limit: int | None) -> tuple[list[np.ndarray], list[str], list[Path]]:
    """Every readable image under the folders, cached at `size` px; their groups and files."""
    files, _ = collect_image_files(folders)
    images, groups, kept = [], [], []
    for path in files[:limit]:
        try:
            images.append(preprocess(read_gray(path), size)[0])
        except ImageReadError:
            continue
        groups.append(group_of(path))
        kept.append(path)
    return images, groups, kept


def plant(images, groups, files, kinds: list[int], copies: int, size: int, seed: int):
    """`copies` altered copies per kind of change, each of a different randomly drawn film."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(images), size=min(len(images), copies * len(kinds)), replace=False)
    planted: list[tuple[int, int, str]] = []
    for n, source in enumerate(sources.tolist()):
        kind = kinds[n % len(kinds)]
        copy = change(read_gray(files[source]), kind, rng)
        images.append(preprocess(copy, size)[0])
        groups.append(f"copy{n}")
        planted.append((source, len(images) - 1, KINDS[kind]))
    return planted


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULT_FOLDERS)
    parser.add_argument("--copies", type=int, default=60, help="copies planted per kind of change")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"changes to plant, of {','.join(KINDS)}")
    parser.add_argument("--size", type=int, default=128, help="cache side (128: the confirmation's full detail)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="read at most this many files (a quick run)")
    args = parser.parse_args(argv)
    kinds = [KINDS.index(k.strip()) for k in args.kinds.split(",") if k.strip()]
    set_quiet(True)
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}")
    images, groups, files = load(args.folders, args.size, args.limit)
    n_real = len(images)
    planted = plant(images, groups, files, kinds, args.copies, args.size, args.seed)
    fps = [fingerprint(img) for img in images]
    start = time.perf_counter()
    found = find_candidates(ImageSet(fps, lambda i: images[i], groups=groups))
    t_candidates = time.perf_counter() - start
    pairs = confirm(found, lambda i: images[i])
    t_confirm = time.perf_counter() - start - t_candidates
    candidates, confirmed = set(found.pairs), {(p.i, p.j) for p in pairs}
    wanted = {(min(a, b), max(a, b)) for a, b, _ in planted}
    rows = {}
    for kind in dict.fromkeys(k for _, _, k in planted):
        these = [(min(a, b), max(a, b)) for a, b, k in planted if k == kind]
        rows[kind] = {
            "planted": len(these),
            "candidates": sum(p in candidates for p in these),
            "confirmed": sum(p in confirmed for p in these),
        }
    figures = {
        "images": len(images),
        "real images": n_real,
        "candidates per image": round(len(found.pairs) / max(1, len(images)), 2),
        "candidate step s": round(t_candidates, 1),
        "confirmation s": round(t_confirm, 1),
        "pairs not planted": len(confirmed - wanted),
        "kinds": rows,
    }
    print(
        f"{n_real:,} real images + {len(planted)} planted copies; {len(found.pairs):,} candidates "
        f"({figures['candidates per image']} per image) in {t_candidates:.1f} s, confirmed in {t_confirm:.1f} s; "
        f"{figures['pairs not planted']} pairs confirmed that were not planted"
    )
    print("| change | planted | among the candidates | confirmed |")
    print("| --- | ---: | ---: | ---: |")
    for kind, row in rows.items():
        print(f"| {kind} | {row['planted']} | {row['candidates']} | {row['confirmed']} |")
    return figures


if __name__ == "__main__":
    main()
