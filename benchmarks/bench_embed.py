"""Time each embedding method on 10,000 generated 1024-d feature vectors (the budget: < 60 s each).

The vectors are clustered like a latent space: eight findings, each a Gaussian blob around its
own centre in a 64-d subspace, embedded in 1024 dimensions with isotropic noise. Every step runs
with `cxrtool embed`'s defaults (PCA to 50, t-SNE 500 Barnes-Hut iterations at angle 0.65, UMAP 15
neighbours for 200 epochs, a 10x10 SOM for 10 epochs with the report's schedule), as the
command would run them. UMAP compiles numba code on its first call in a process (what a user of
`cxrtool embed` waits for), so it is timed twice: cold (compile + fit) and warm (fit only).
Prints a markdown table; the load average is printed too, since other work on the machine
slows every figure down.

    python benchmarks/bench_embed.py [--n 10000] [--dims 1024] [--methods som,tsne,umap]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from machine import cpu_name

os.environ.setdefault("CXRTOOL_QUIET", "1")


def generated_features(n: int, dims: int, classes: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dims, 64)))[0]  # a 64-d subspace of R^dims
    centres = rng.normal(scale=0.4, size=(classes, 64))  # overlapping clusters: the scores are not all 1
    labels = rng.integers(0, classes, size=n)
    x = (centres[labels] + rng.normal(size=(n, 64))) @ basis.T + 0.3 * rng.normal(size=(n, dims))
    return x.astype(np.float32), np.array([f"class{c}" for c in labels])


class Clock:
    """Wall and CPU seconds (all threads) since the last lap: CPU time shows the work done even
    when other programs share the cores and stretch the wall time."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        spent = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--methods", default="som,tsne,umap")
    args = parser.parse_args()

    from cxrtool.embed.config import EmbedConfig
    from cxrtool.embed.features import reduce_pca
    from cxrtool.embed.maps import make_map
    from cxrtool.embed.scores import structure_scores

    cfg = EmbedConfig(method=args.methods)
    x, classes = generated_features(args.n, args.dims)
    rows: list[tuple[str, str, float, float, str]] = []
    clock = Clock()

    reduced, kept = reduce_pca(x, cfg.pca, cfg.seed)
    rows.append(("PCA", f"{args.dims} -> {reduced.shape[1]} dims (variance kept {kept:.2f})", *clock.lap(), ""))
    full = structure_scores(reduced, classes, cfg.knn, None, cfg.seed)
    rows.append(
        (
            "scores, full space",
            "silhouette (5,000 sample) + 5-NN leave-one-out",
            *clock.lap(),
            f"k-NN {full['knn_accuracy']:.3f}",
        )
    )

    settings = {
        "som": f"{cfg.grid[0]}x{cfg.grid[1]}, {cfg.som_epochs} epochs, {cfg.som_schedule} schedule",
        "tsne": f"Barnes-Hut (angle {cfg.tsne_angle:g}), perplexity {cfg.perplexity:g}, {cfg.tsne_iter} iterations",
        "umap": f"n_neighbors {cfg.umap_neighbors}, {cfg.umap_epochs} epochs, exact neighbours, seeded (one thread)",
    }
    for method in cfg.methods:
        for attempt in ("cold", "warm") if method == "umap" else ("",):
            clock.lap()
            mapped = make_map(method, reduced, cfg)
            wall, cpu = clock.lap()
            s = structure_scores(mapped.coords, classes, cfg.knn, None, cfg.seed)
            name = {"som": "SOM", "tsne": "t-SNE", "umap": "UMAP"}[method] + (f" ({attempt})" if attempt else "")
            setting = settings[method] + (
                f", {mapped.params['threads']} thread(s)" if "threads" in mapped.params else ""
            )
            rows.append((name, setting, wall, cpu, f"k-NN {s['knn_accuracy']:.3f}"))

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"embedding {args.n:,} generated {args.dims}-d vectors; {cpu_name()}, {os.cpu_count()} cores, "
        f"load average {load}\n"
    )
    print("| step | settings | seconds | CPU seconds | 2-D k-NN accuracy |")
    print("| --- | --- | ---: | ---: | --- |")
    for name, setting, wall, cpu, note in rows:
        print(f"| {name} | {setting} | {wall:.1f} | {cpu:.1f} | {note} |")


if __name__ == "__main__":
    main()
