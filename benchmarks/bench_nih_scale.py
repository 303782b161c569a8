"""The whole NIH set on one machine: a cache of 112,120 images, read, bootstrapped and mapped.

NIH ChestX-ray14 has 112,120 frontal radiographs of 30,805 patients; its official test list holds
25,596 of them. This benchmark builds a cache of that size with generated content, written
straight into the cache format (`cxrtool.data.cache.write_cache`) at a small image size (32 px by
default) so that building it takes seconds, not the hours decoding NIH's PNGs would, and then
measures, each part in a process of its own so that its peak memory is its own:

- read:      one shuffled epoch over every image through `CacheDataset` and a torch DataLoader
             (the training loader's path), batches of 64, no worker processes;
- bootstrap: `cxrtool.evaluate.metrics.label_report` (what `evaluate` runs) on the 25,596-image test list,
             14 labels, 1,000 patient-bootstrap replicates, generated predictions;
- embed:     `cxrtool embed` (the library call `run_embed`) on every image, `--split all
             --max-images 0 --method all`, in pixel space: 32 x 32 images are 1,024-d vectors,
             the dimensionality of DenseNet-121's latent space. The images carry the findings as
             patterns, so the maps have structure to keep. The latent space is not used because it
             needs a forward pass per image (DenseNet-121 at 224 px runs at about 6 images/s on these
             2 cores: 5 hours for 112k); everything after the features is the same code.
- maps:      the three maps alone, as `embed` makes them on the same pixel features after PCA
             to 50 (features and PCA computed first, not timed): the shared neighbour graph,
             t-SNE, UMAP and the SOM, each timed on its own with its peak memory, and each map's
             test-split scores. The number the 5-minute budget is judged by, in a few minutes.

Each figure comes with wall seconds, CPU seconds (all threads; what the work costs even when
other programs share the cores) and the peak resident memory of that step (Linux VmHWM, reset
before each step). The load average is printed before and after each part.

    python benchmarks/bench_nih_scale.py [--images 112120] [--test 25596] [--size 32]
                                         [--parts build,read,bootstrap,embed] [--work DIR]
    python benchmarks/bench_nih_scale.py --parts build,maps    # just the three maps at 112,120 (needs build)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("CXRTOOL_QUIET", "1")

# NIH ChestX-ray14's share of each finding (Wang et al. 2017, all 112,120 images).
NIH_PREVALENCE = {
    "Atelectasis": 0.103,
    "Cardiomegaly": 0.025,
    "Effusion": 0.119,
    "Infiltration": 0.177,
    "Mass": 0.052,
    "Nodule": 0.056,
    "Pneumonia": 0.013,
    "Pneumothorax": 0.047,
    "Consolidation": 0.042,
    "Edema": 0.021,
    "Emphysema": 0.022,
    "Fibrosis": 0.015,
    "Pleural_Thickening": 0.030,
    "Hernia": 0.002,
}
NIH_IMAGES, NIH_TEST, NIH_PATIENTS = 112_120, 25_596, 30_805


# ---------------------------------------------------------------- measuring


def reset_peak() -> None:
    """Reset this process's peak resident memory (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory now: what the process held before a step (Python, torch, the inputs)."""
    return _status_mb("VmRSS") or float("nan")


class Step:
    """with Step(rows, name, what, judged): times the block (wall, CPU) and records its peak memory."""

    def __init__(self, rows: list, name: str, what: str, judged: str = ""):
        self.rows, self.name, self.what, self.judged = rows, name, what, judged

    def __enter__(self) -> Step:
        reset_peak()
        self.start_mb = rss_mb()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.rows.append(
                {
                    "step": self.name,
                    "what": self.what,
                    "wall_s": time.perf_counter() - self.wall,
                    "cpu_s": time.process_time() - self.cpu,
                    "peak_mb": peak_mb(),
                    "start_mb": self.start_mb,
                    "judged": self.judged,
                }
            )


# ---------------------------------------------------------------- the generated cache


def nih_sized_index(n_images: int, n_test: int, seed: int = 0):
    """(index, targets): patients with 1 to ~20 images each, a test list of exactly n_test images."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    mean_per_patient = NIH_IMAGES / NIH_PATIENTS  # 3.6 images per patient, as in NIH

    def patients_for(total: int) -> np.ndarray:
        counts = []
        while total > 0:
            c = int(min(total, rng.geometric(1.0 / mean_per_patient)))
            counts.append(c)
            total -= c
        return np.array(counts)

    test_counts, rest_counts = patients_for(n_test), patients_for(n_images - n_test)
    counts = np.concatenate([test_counts, rest_counts])
    patient = np.repeat(np.arange(len(counts)), counts)
    # Of the rest, one patient in eight goes to validation (NIH's train_val list, split by patient).
    split_of_patient = np.array(
        ["test"] * len(test_counts) + list(np.where(rng.random(len(rest_counts)) < 0.125, "val", "train"))
    )
    labels = list(NIH_PREVALENCE)
    targets = (rng.random((n_images, len(labels))) < np.array(list(NIH_PREVALENCE.values()))).astype(np.float32)
    ids = np.array([f"{p:08d}_{i:03d}.png" for p, i in zip(patient, np.concatenate([np.arange(c) for c in counts]))])
    index = pd.DataFrame(
        {
            "id": ids,
            "patient": patient.astype(str),
            "view": "PA",
            "split": split_of_patient[patient],
            "source": "generated",
            "source_path": ids,
        }
    )
    for j, label in enumerate(labels):
        index[label] = targets[:, j]
    return index, targets, labels


def generated_images(targets: np.ndarray, size: int, seed: int = 0, chunk: int = 8192) -> np.ndarray:
    """(n, size, size) uint8: a chest-like gradient, one smooth pattern per finding present, noise."""
    rng = np.random.default_rng(seed + 1)
    n, k = targets.shape

    def smooth(count: int) -> np.ndarray:  # coarse 8x8 noise blown up: blobs, like lesions
        coarse = rng.normal(size=(count, 8, 8)).astype(np.float32)
        return np.kron(coarse, np.ones((size // 8, size // 8), np.float32)).reshape(count, -1)

    patterns = 22.0 * smooth(k)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = (110 + 60 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.45) ** 2) / 0.08)).astype(np.float32).ravel()
    out = np.empty((n, size, size), np.uint8)
    for start in range(0, n, chunk):
        t = targets[start : start + chunk]
        x = base + t @ patterns + 10.0 * smooth(len(t)) + rng.normal(0, 12, (len(t), size * size)).astype(np.float32)
        out[start : start + len(t)] = np.clip(x, 0, 255).reshape(len(t), size, size).astype(np.uint8)
    return out


# ---------------------------------------------------------------- the parts (each in its own process)


def part_build(args, rows: list) -> None:
    from cxrtool.data.cache import write_cache

    with Step(rows, "build", f"generate {args.images:,} images at {args.size} px + NIH-sized index, write_cache"):
        index, targets, labels = nih_sized_index(args.images, args.test, args.seed)
        images = generated_images(targets, args.size, args.seed)
        if args.cache.exists():
            shutil.rmtree(args.cache)
        write_cache(args.cache, images, index, labels, manifest={"source": "generated (bench_nih_scale)"})
    counts = index["split"].value_counts().to_dict()
    rows[-1]["what"] += f" ({index['patient'].nunique():,} patients; {counts})"


def part_read(args, rows: list) -> None:
    from torch.utils.data import DataLoader

    from cxrtool.data.cache import PreparedData
    from cxrtool.data.dataset import CacheDataset, collate_batch

    data = PreparedData(args.cache)
    loader = DataLoader(CacheDataset(data, data.rows()), batch_size=64, shuffle=True, collate_fn=collate_batch)
    seen = 0
    with Step(rows, "read", f"one shuffled epoch, {len(data):,} images, batches of 64, CacheDataset + DataLoader"):
        for images, _, _ in loader:
            seen += len(images)
    rows[-1]["judged"] = (
        f"{seen / rows[-1]['wall_s']:,.0f} images/s; cache file {(args.cache / 'images.u8.npy').stat().st_size / 2**20:,.0f} MB"
    )


def part_bootstrap(args, rows: list) -> None:
    from cxrtool.data.cache import PreparedData
    from cxrtool.evaluate.metrics import label_report

    data = PreparedData(args.cache)
    test = data.rows("test")
    y = np.nan_to_num(data.targets(test))
    rng = np.random.default_rng(args.seed)
    p = np.clip(0.3 * y + rng.random(y.shape), 0, 1)
    patients = data.index["patient"].to_numpy()[test]
    with Step(
        rows,
        "bootstrap",
        f"label_report: {len(test):,} test images of {len(set(patients)):,} patients, "
        f"{y.shape[1]} labels, 1,000 patient-bootstrap replicates",
    ):
        report = label_report(y, p, data.labels, patients, n_boot=1000, seed=0)
    mean = report["mean"]
    rows[-1]["judged"] = (
        f"time and peak; mean AUROC {mean['estimate']:.3f} [{mean.get('low', float('nan')):.3f}, {mean.get('high', float('nan')):.3f}]"
    )


def part_embed(args, rows: list) -> None:
    import cxrtool.embed.pipeline as pipeline
    from cxrtool.embed import EmbedConfig, run_embed

    out = args.work / "embed"
    if out.exists():
        shutil.rmtree(out)
    # Time and peak memory per map: wrap the pipeline's own map call (nothing else changes).
    real_make_map = pipeline.make_map
    maps: list[dict] = []

    def timed_make_map(method, x, cfg, *a, **kw):
        step_rows: list = []
        with Step(step_rows, method, ""):
            mapped = real_make_map(method, x, cfg, *a, **kw)
        maps.append({**step_rows[0], "params": mapped.params})
        return mapped

    pipeline.make_map = timed_make_map
    cfg = EmbedConfig(
        data=args.cache,
        space="pixels",
        split="all",
        max_images=0,
        method="all",
        pixel_size=args.size,
        out=out,
        seed=args.seed,
    )
    with Step(
        rows,
        "embed (whole command)",
        f"run_embed: pixel features, PCA 1024 -> 50, scores per split, "
        f"t-SNE + UMAP + SOM, CSVs and plots, {args.images:,} images",
    ):
        res = run_embed(cfg)
    scores = res["scores"]["spaces"]["pixels"]
    names = {"tsne": "t-SNE", "umap": "UMAP", "som": "SOM"}
    for m in maps:
        s = scores[m["step"]]
        p = m["params"]
        if m["step"] == "tsne":
            detail = (
                f"{p.get('gradient', 'Barnes-Hut')} gradient, perplexity {p['perplexity']:g}, {p['max_iter']} "
                f"iterations, {p.get('threads', 1)} thread(s); includes the shared neighbour graph "
                f"({p.get('neighbours', 'exact')})"
            )
        elif m["step"] == "umap":
            detail = (
                f"{p.get('neighbours', 'exact' if p['exact_neighbours'] else 'approximate')} neighbours, n_neighbors "
                f"{p['n_neighbors']}, {p['n_epochs']} epochs, {p.get('init', 'spectral')} start, seeded (one thread)"
            )
        else:
            detail = (
                f"{p.get('training', 'online')} SOM {p['grid'][0]}x{p['grid'][1]}, {p['epochs']} epochs, "
                f"{p['schedule']} schedule"
            )
        rows.append(
            {
                "step": f"  {names[m['step']]}",
                "what": detail,
                "wall_s": m["wall_s"],
                "cpu_s": m["cpu_s"],
                "peak_mb": m["peak_mb"],
                "start_mb": m["start_mb"],
                "judged": f"test k-NN {s['knn_accuracy']:.3f}, silhouette {s['silhouette']:.3f}",
            }
        )
    mapped = sum(m["wall_s"] for m in maps)
    full = scores["full"]
    rows.append(
        {
            "step": "  three maps together",
            "what": "t-SNE + UMAP + SOM",
            "wall_s": mapped,
            "cpu_s": sum(m["cpu_s"] for m in maps),
            "peak_mb": max(m["peak_mb"] for m in maps),
            "start_mb": min(m["start_mb"] for m in maps),
            "judged": f"budget 300 s; full-space test k-NN {full['knn_accuracy']:.3f} "
            f"(chance {res['scores']['knn_chance']:.3f})",
        }
    )


def part_maps(args, rows: list) -> None:
    """The shared graph and the three maps of `embed`, each timed with its peak memory (module doc)."""
    from cxrtool.data.cache import PreparedData
    from cxrtool.embed import EmbedConfig
    from cxrtool.embed.features import pixel_features, primary_findings, reduce_pca
    from cxrtool.embed.maps import LARGE_INPUT, Neighbours, graph_size, make_map
    from cxrtool.embed.scores import structure_scores

    data = PreparedData(args.cache)
    every = data.rows()
    cfg = EmbedConfig(
        data=args.cache, space="pixels", split="all", max_images=0, method="all", pixel_size=args.size, seed=args.seed
    )
    reduced, _ = reduce_pca(pixel_features(data, every, args.size, batch_size=256), cfg.pca, cfg.seed)
    classes = primary_findings(data.targets(every), data.labels, cfg.multi_label)
    test = data.index["split"].to_numpy()[every] == "test"
    patients = data.index["patient"].astype(str).to_numpy()[every][test]
    neighbours = Neighbours(cfg.seed)
    large = len(reduced) >= LARGE_INPUT
    if large:
        k = graph_size(cfg, len(reduced))
        with Step(
            rows,
            "  neighbour graph",
            f"{k} neighbours of {len(reduced):,} points in {reduced.shape[1]} dims, shared by t-SNE and UMAP",
        ):
            neighbours.get(reduced, k)
        rows[-1]["what"] += f" ({neighbours.method})"
    for method in ("tsne", "umap", "som"):
        with Step(rows, f"  {method}", ""):
            mapped = make_map(method, reduced, cfg, neighbours=neighbours)
        p = mapped.params
        rows[-1]["what"] = ", ".join(
            f"{k} {v}" for k, v in p.items() if k not in ("kl_divergence", "quantization_error", "topographic_error")
        )
        s = structure_scores(mapped.coords[test], classes[test], cfg.knn, patients, cfg.seed)
        rows[-1]["judged"] = f"test k-NN {s['knn_accuracy']:.3f}, silhouette {s['silhouette']:.3f}"
    parts = rows[-4:] if large else rows[-3:]
    rows.append(
        {
            "step": "  three maps together",
            "what": "graph + t-SNE + UMAP + SOM" if large else "t-SNE + UMAP + SOM",
            "wall_s": sum(r["wall_s"] for r in parts),
            "cpu_s": sum(r["cpu_s"] for r in parts),
            "peak_mb": max(r["peak_mb"] for r in parts),
            "start_mb": min(r["start_mb"] for r in parts),
            "judged": "budget 300 s",
        }
    )


PARTS = {"build": part_build, "read": part_read, "bootstrap": part_bootstrap, "embed": part_embed, "maps": part_maps}


# ---------------------------------------------------------------- driver


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown CPU"


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=NIH_IMAGES)
    ap.add_argument("--test", type=int, default=NIH_TEST)
    ap.add_argument("--size", type=int, default=32, help="image side in the cache (and pixels per side in embed)")
    ap.add_argument("--parts", default="build,read,bootstrap,embed")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    ap.add_argument("--results", help=argparse.SUPPRESS)  # internal: where that part writes its rows
    args = ap.parse_args()

    if args.part:
        args.cache = args.work / "cache"
        rows: list = []
        PARTS[args.part](args, rows)
        Path(args.results).write_text(json.dumps(rows))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="nih-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.images:,} images at {args.size} px, test list {args.test:,}; work folder {work}\n"
    )
    table: list = []
    try:
        for part in args.parts.split(","):
            before = load()
            results = work / f"{part}.json"
            cmd = [
                sys.executable,
                __file__,
                "--part",
                part,
                "--work",
                str(work),
                "--results",
                str(results),
                "--images",
                str(args.images),
                "--test",
                str(args.test),
                "--size",
                str(args.size),
                "--seed",
                str(args.seed),
            ]
            subprocess.run(cmd, check=True)
            for row in json.loads(results.read_text()):
                row["load"] = f"{before} -> {load()}"
                table.append(row)
                print(
                    f"{row['step']}: {row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} s CPU, peak {row['peak_mb']:,.0f} MB",
                    flush=True,
                )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        "\n| step | what | wall s | CPU s | peak memory MB (at start) | judged by | load average (1, 5, 15 min) before -> after |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for r in table:
        print(
            f"| {r['step']} | {r['what']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:,.0f} "
            f"({r.get('start_mb', float('nan')):,.0f}) | {r['judged']} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
