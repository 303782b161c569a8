"""The near-duplicate search at NIH's full size: time and peak memory, with planted copies found.

Writes a cache of N generated radiographs (default 112,120, NIH's count, ~3.6 images per patient
as in NIH) straight into the cache's image format at a small side (default 128 px, the side the
confirmation looks at), plants `--copies` altered copies (crop, rescale, gamma, contrast,
brightness, JPEG) under other patients, then runs `neardup.search.near_duplicates` exactly as
`prepare` does (patients as groups, pixels read back from the memmap). Reports: seconds per
stage, candidates, confirmed pairs, planted copies found, the peak of memory allocated by Python
and NumPy during the search (tracemalloc) and the process's peak resident size (getrusage; this
includes the memmap's pages the kernel keeps resident, which it can drop at any time).

With `--confirm M` the stages are timed apart: descriptors and candidates over all N images,
then the confirmation of a sample of M candidates (the planted pairs among them), whose rate is
extrapolated to every candidate; the line printed says which figures are measured. Planted
copies are counted by kind of change, and (staged) whether the candidate step found them.

`--reuse DIR` keeps the generated image file (and its fingerprints) in DIR and reads it back on
the next run with the same settings, so a rerun measures the search only.

    python benchmarks/bench_dedup.py [--images 112120] [--size 128] [--copies 200] [--confirm 0] [--reuse DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from machine import cpu_name
from PIL import Image

from cxrtool.data.imageio import preprocess
from cxrtool.data.neardup.hashing import fingerprint
from cxrtool.data.neardup.search import ImageSet, near_duplicates
from cxrtool.data.sources.synthetic import Anatomy, draw_image
from cxrtool.progress import set_quiet

KINDS = ("crop", "rescale", "gamma", "contrast/brightness", "jpeg")  # copy k gets change k % 5


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
    if kind == 3:  # contrast about mid-grey, or a brightness shift
        if rng.random() < 0.5:
            return np.clip((img.astype(float) - 128) * rng.uniform(1.1, 1.4) + 128, 0, 255).astype(np.uint8)
        return np.clip(img.astype(int) + int(rng.integers(-30, 31)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(rng.integers(50, 90)))
    return np.asarray(Image.open(buf).convert("L"))


def build(path: Path, n: int, size: int, copies: int, seed: int) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """The image file, fingerprints and patients of n images; the planted (original, copy) rows.

    The films that get copies are drawn at twice the cache side and altered there, as a copy in
    the wild is altered at full size and only then cached.
    """
    rng = np.random.default_rng(seed)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size))
    fps, patients, planted = [], [], []
    originals = n - copies
    sources = set(rng.choice(originals, size=min(copies, originals), replace=False).tolist())
    full: dict[int, np.ndarray] = {}
    row, patient = 0, 0
    while row < originals:
        anat = Anatomy.sample(rng)
        for _ in range(min(originals - row, int(rng.integers(1, 7)))):  # follow-ups: ~3.5 per patient
            # Films that will be copied are drawn at twice the side (to be altered there).
            img, _ = draw_image(anat, [], 2 * size if row in sources else size, rng)
            if row in sources:
                full[row] = img
            images[row] = preprocess(img, size)[0]
            fps.append(fingerprint(images[row]))
            patients.append(f"p{patient}")
            row += 1
        patient += 1
    for k, source in enumerate(sorted(full)):
        img = preprocess(change(full[source], k % 5, rng), size)[0]
        images[row] = img
        fps.append(fingerprint(img))
        patients.append(f"copy{k}")
        planted.append((source, row))
        row += 1
    images.flush()
    del images
    return fps, patients, planted


def build_or_reuse(folder: Path, n: int, size: int, copies: int, seed: int):
    """`build` into folder, or read back what an earlier run with the same settings built there."""
    path, meta = folder / "images.u8.npy", folder / "built.json"
    settings = {"images": n, "size": size, "copies": copies, "seed": seed}
    if path.is_file() and meta.is_file():
        saved = json.loads(meta.read_text())
        if saved["settings"] == settings:
            return path, saved["fingerprints"], saved["patients"], [tuple(p) for p in saved["planted"]], False
    folder.mkdir(parents=True, exist_ok=True)
    fps, patients, planted = build(path, n, size, copies, seed)
    meta.write_text(json.dumps({"settings": settings, "fingerprints": fps, "patients": patients, "planted": planted}))
    return path, fps, patients, planted, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=112_120)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument(
        "--confirm",
        type=int,
        default=0,
        help="confirm only this many candidates (planted ones first) and extrapolate; 0: the whole search",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", type=Path, default=None, help="keep the generated images here and reuse them")
    args = parser.parse_args()
    set_quiet(True)
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path, fps, patients, planted, made = build_or_reuse(
            args.reuse or Path(tmp), args.images, args.size, args.copies, args.seed
        )
        print(
            f"{'built' if made else 'reused'} {args.images:,} images at {args.size} px in {time.perf_counter() - start:.0f} s"
        )
        images = np.load(path, mmap_mode="r")
        tracemalloc.start()
        candidates = None
        if args.confirm == 0:
            start = time.perf_counter()
            pairs = near_duplicates(ImageSet(fps, lambda i: images[i], groups=patients))
            took = time.perf_counter() - start
            found = {(p.i, p.j) for p in pairs}
            line = f"whole search {took:.0f} s, {len(pairs)} pairs"
        else:
            took, found, line, candidates = staged(images, fps, patients, planted, args.confirm)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    hits = sum((min(a, b), max(a, b)) in found for a, b in planted)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(line)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("| change | planted | among candidates | confirmed |")
    print("|---|---|---|---|")
    for k, kind in enumerate(KINDS):
        rows = [(min(a, b), max(a, b)) for n, (a, b) in enumerate(planted) if n % len(KINDS) == k]
        among = "-" if candidates is None else str(sum(p in candidates for p in rows))
        print(f"| {kind} | {len(rows)} | {among} | {sum(p in found for p in rows)} |")
    print("| images | side | search s | planted copies found | peak traced MB | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.images:,} | {args.size} | {took:.0f} | {hits}/{len(planted)} | {peak / 2**20:.0f} | {rss:.0f} |")


def staged(images, fps, patients, planted, confirm: int):
    """The search's stages timed apart; only `confirm` candidates are confirmed (rate extrapolated)."""
    from cxrtool.data.neardup.confirm import Candidates
    from cxrtool.data.neardup.confirm import confirm as confirm_pairs  # `confirm` is the sample size here
    from cxrtool.data.neardup.descriptors import whole_descriptors, window_reader
    from cxrtool.data.neardup.hashing import candidate_pairs, parse
    from cxrtool.data.neardup.neighbours import DescriptorSet, descriptor_pairs
    from cxrtool.data.neardup.options import DEFAULT_NEIGHBOURS
    from cxrtool.progress import progress_bar

    groups = np.unique(patients, return_inverse=True)[1]
    start = time.perf_counter()
    with progress_bar(None, "") as bar:
        whole = whole_descriptors(lambda i: images[i], len(fps), bar)
        t_whole = time.perf_counter() - start
        mean = whole.astype(np.float32).mean(axis=0)
        one_set = DescriptorSet(window_reader(lambda i: images[i], bar), whole, groups)
        candidates = descriptor_pairs(one_set, one_set, mean, True)
    t_desc = time.perf_counter() - start
    del whole, one_set
    skip = lambda rows, cols: groups[rows][:, None] == groups[cols][None, :]  # noqa: E731
    hashed = {(i, j) for i, j, _ in candidate_pairs(fps, limit=DEFAULT_NEIGHBOURS, skip=skip)}
    t_cand = time.perf_counter() - start
    todo = sorted(candidates | hashed)
    wanted = {(min(a, b), max(a, b)) for a, b in planted}
    rng = np.random.default_rng(0)  # a random sample of the others: todo's order is by image
    others = [p for p in todo if p not in wanted]
    pick = rng.choice(len(others), size=min(len(others), max(0, confirm - len(wanted))), replace=False)
    sample = [p for p in todo if p in wanted] + [others[k] for k in pick]
    words = parse(fps)
    t0 = time.perf_counter()
    pairs = confirm_pairs(Candidates(sorted(sample), hashed, words, words), lambda i: images[i])
    t_conf = time.perf_counter() - t0
    found = {(p.i, p.j) for p in pairs}
    rate = len(sample) / t_conf
    total = t_cand + len(todo) / rate
    line = (
        f"whole-image descriptors {t_whole:.0f} s; windows + neighbours {t_desc - t_whole:.0f} s; hash neighbours "
        f"{t_cand - t_desc:.0f} s; {len(todo):,} candidates ({len(todo) / len(fps):.2f} per image: {len(candidates):,} "
        f"by descriptor, {len(hashed):,} by hash); confirmation of a {len(sample)}-candidate sample {t_conf:.0f} s "
        f"({rate:.1f} pairs/s); extrapolated total {total:.0f} s"
    )
    return total, found, line, set(todo)


if __name__ == "__main__":
    main()
