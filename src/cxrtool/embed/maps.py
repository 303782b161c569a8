"""The three 2-D maps: t-SNE, UMAP and the self-organising map, behind one call.

`make_map(method, X, cfg)` returns (n, 2) coordinates (plus, for the SOM, the trained map).
Every method is seeded (UMAP then runs on one thread), so the same seed gives the same
coordinates. Parameters that break on small samples (perplexity,
n_neighbors) are capped, and the cap is reported. UMAP's first call in a process spends several
seconds compiling numba code; that warm-up is part of its timing.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import EmbedConfig
from .som import SomResult, train_som


SMALL_FOR_THREADS = 5000
EXACT_KNN_LIMIT = 50000


def idle_cores(n: int) -> int:
    """Threads for an OpenMP loop over n points: 1 for small n, else the cores idle right now.

    Below a few thousand points a gradient step is too small to share, and OpenMP threads that
    wait for a busy core spin: on a 2-core machine running other work, two threads made t-SNE
    slower than one. The coordinates do not depend on the thread count.
    """
    cores = os.cpu_count() or 1
    if n < SMALL_FOR_THREADS or cores == 1:
        return 1
    # The load average counts this process too (it has been busy computing features): leave it out.
    others = max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
    return int(min(cores, max(1, round(cores - others))))


@dataclass
class MapResult:
    coords: np.ndarray                   # (n, 2)
    params: dict[str, Any] = field(default_factory=dict)
    som: SomResult | None = None


def tsne_map(x: np.ndarray, perplexity: float, max_iter: int, seed: int, angle: float = 0.65) -> MapResult:
    """Barnes-Hut t-SNE, PCA-initialised; perplexity capped at (n - 1) / 3 as scikit-learn requires.

    `angle` 0.65 (scikit-learn: 0.5) cut the time on 10,000 points by a fifth with the same cluster
    scores in our benchmark; set 0.5 (YAML `tsne_angle`) for the textbook setting.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(x)
    used = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    tsne = TSNE(n_components=2, perplexity=used, init="pca", learning_rate="auto", max_iter=max_iter,
                angle=angle, method="barnes_hut" if n > 50 else "exact", random_state=seed)
    threads = idle_cores(n)
    with threadpool_limits(limits=threads, user_api="openmp"):
        coords = tsne.fit_transform(np.asarray(x, dtype=np.float32))
    return MapResult(coords.astype(np.float32), {"perplexity": used, "max_iter": max_iter, "angle": angle, "threads": threads,
                                                 "kl_divergence": float(tsne.kl_divergence_)})


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), (n, k), each row starting with the point itself, as UMAP expects."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k - 1).fit(x).kneighbors()  # no X: self left out
    n = len(x)
    return (np.concatenate([np.arange(n)[:, None], idx], axis=1),
            np.concatenate([np.zeros((n, 1)), dist], axis=1).astype(np.float32))


def umap_map(x: np.ndarray, n_neighbors: int, seed: int, n_epochs: int = 200) -> MapResult:
    """UMAP (umap-learn); n_neighbors capped at n - 1; random_state makes it single-threaded, hence repeatable.

    Up to EXACT_KNN_LIMIT points the neighbour graph is computed exactly by scikit-learn and handed
    to UMAP: in 50 dimensions that takes a second for 10,000 points, and it spares the numba
    compilation of UMAP's approximate search (about 30 s of a cold start on a 2-core CPU).
    """
    with warnings.catch_warnings():
        # umap-learn warns that random_state disables parallelism: that is the point here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import umap

        n = len(x)
        x = np.asarray(x, dtype=np.float32)
        used = int(min(n_neighbors, n - 1))
        knn = exact_knn(x, used) if n <= EXACT_KNN_LIMIT and used >= 2 else None
        # Spectral initialisation needs a connected graph of some size; tiny samples start at random.
        reducer = umap.UMAP(n_components=2, n_neighbors=used, min_dist=0.1, random_state=seed, n_epochs=n_epochs,
                            init="spectral" if n > 3 * used else "random",
                            precomputed_knn=(*knn, None) if knn is not None else (None, None, None))
        coords = reducer.fit_transform(x)
    return MapResult(np.asarray(coords, dtype=np.float32), {"n_neighbors": used, "min_dist": 0.1, "n_epochs": n_epochs,
                                                            "exact_neighbours": knn is not None})


def som_map(x: np.ndarray, cfg: EmbedConfig) -> MapResult:
    """Each sample at its winning neuron (row, col), plus a seeded jitter of +-0.35 so points do not overlap.

    The jitter only spreads points inside their neuron's cell; the 2-D scores use these coordinates,
    so neighbours within one neuron are ordered at random (seeded) rather than by input order.
    """
    som = train_som(x, cfg.grid, cfg.som_epochs, cfg.som_schedule, cfg.sigma0, cfg.som_lr, cfg.seed)
    jitter = np.random.default_rng(cfg.seed + 1).uniform(-0.35, 0.35, size=(len(x), 2))
    # x = column, y = row, so the scatter looks like the U-matrix image (row 0 at the top after inverting).
    coords = np.stack([som.winners[:, 1], som.winners[:, 0]], axis=1) + jitter
    params = {"grid": list(cfg.grid), "epochs": cfg.som_epochs, "schedule": cfg.som_schedule,
              "sigma0": cfg.sigma0, "learning_rate": cfg.som_lr,
              "quantization_error": som.quantization_error, "topographic_error": som.topographic_error}
    return MapResult(coords.astype(np.float32), params, som)


def make_map(method: str, x: np.ndarray, cfg: EmbedConfig) -> MapResult:
    if method == "tsne":
        return tsne_map(x, cfg.perplexity, cfg.tsne_iter, cfg.seed, cfg.tsne_angle)
    if method == "umap":
        return umap_map(x, cfg.umap_neighbors, cfg.seed, cfg.umap_epochs)
    if method == "som":
        return som_map(x, cfg)
    raise ValueError(f"unknown map method {method!r}")
