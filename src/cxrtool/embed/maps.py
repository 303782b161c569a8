"""The three 2-D maps: t-SNE, UMAP and the self-organising map, behind one call.

`make_map(method, X, cfg)` returns (n, 2) coordinates (plus, for the SOM, the trained map).
Every method is seeded (UMAP then runs on one thread), so the same seed gives the same
coordinates. Parameters that break on small samples (perplexity,
n_neighbors) are capped, and the cap is reported. UMAP's first call in a process spends several
seconds compiling numba code; that warm-up is part of its timing.

Large inputs (from `large_from` points, LARGE_INPUT by default: above the default 10,000-image
sample, so default runs take the path they always took) switch to methods that scale: t-SNE
with openTSNE's FFT-accelerated gradient (FIt-SNE) on every core, UMAP initialised from the
data's first two principal axes (its spectral initialisation alone took about 3 minutes at
112,120 points), and the batch SOM. t-SNE and UMAP share one neighbour graph (`Neighbours`),
so the search is paid once and UMAP skips its own NN-descent and that search's numba
compilation. Up to EXACT_UP_TO points the graph is exact (every pairwise distance, in blocks,
with torch's matrix product: 85 CPU seconds at 112,120 x 50, and no approximation); beyond it
the cost grows as n^2 and Annoy (approximate, seeded) takes over. At NIH's 112,120 images the
three maps together take under 5 minutes on 2 cores (docs/performance.md).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .config import EmbedConfig
from .som import SomResult, train_som

SMALL_FOR_THREADS = 5000
LARGE_INPUT = 20000  # points: from here on the scalable paths (FFT t-SNE, shared graph, UMAP PCA start, batch SOM)
EXACT_UP_TO = 150000  # points: the shared graph is exact up to here (n^2 distances), Annoy beyond


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


def all_cores() -> int:
    """The cores this process may run on: large inputs use them all, busy or not.

    At 100,000 points a gradient step is long enough that threads waiting on a busy core cost
    little next to the work they share (measured: two threads beat one at load 4 on 2 cores).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


@dataclass
class MapResult:
    coords: np.ndarray  # (n, 2)
    params: dict[str, Any] = field(default_factory=dict)
    som: SomResult | None = None


def tsne_map(x: np.ndarray, perplexity: float, max_iter: int, seed: int, angle: float = 0.65) -> MapResult:
    """Barnes-Hut t-SNE, PCA-initialised; perplexity capped at (n - 1) / 3 as scikit-learn requires.

    `angle` 0.65 (scikit-learn: 0.5) cut the time on 10,000 points by a fifth with the same cluster
    scores in our benchmark; set 0.5 (YAML `tsne_angle`) for the textbook setting.
    """
    # lazy: sklearn's t-SNE, only for this map
    from sklearn.manifold import TSNE

    n = len(x)
    used = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    tsne = TSNE(
        n_components=2,
        perplexity=used,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        angle=angle,
        method="barnes_hut" if n > 50 else "exact",
        random_state=seed,
    )
    threads = idle_cores(n)
    with threadpool_limits(limits=threads, user_api="openmp"):
        coords = tsne.fit_transform(np.asarray(x, dtype=np.float32))
    return MapResult(
        coords.astype(np.float32),
        {
            "perplexity": used,
            "max_iter": max_iter,
            "angle": angle,
            "threads": threads,
            "kl_divergence": float(tsne.kl_divergence_),
        },
    )


class Neighbours:
    """The k-nearest-neighbour graph of one large input, built once and shared by maps.

    Exact up to EXACT_UP_TO points (`exact_neighbours`), else Annoy (openTSNE's copy, 50 trees,
    seeded); each row lists a point's nearest other points, nearest first. A map that needs fewer
    neighbours takes the first columns.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._key: tuple | None = None
        self._graph: tuple[np.ndarray, np.ndarray] | None = None
        self.method = ""

    def get(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances), (n, k), self excluded."""
        # The same points in another dtype or copy are the same graph: key on shape and a content sample.
        key = (x.shape, float(np.asarray(x[:: max(1, len(x) // 997)], dtype=np.float64).sum()))
        if self._graph is None or self._key != key or self._graph[0].shape[1] < k:
            if len(x) <= EXACT_UP_TO:
                self._graph, self.method = exact_neighbours(x, k), "exact"
            else:
                # lazy: openTSNE, only for this map
                from openTSNE.nearest_neighbors import Annoy

                data = np.ascontiguousarray(x, dtype=np.float64)
                self._graph = Annoy(data, k, metric="euclidean", n_jobs=all_cores(), random_state=self.seed).build()
                self.method = "approximate (Annoy)"
            self._key = key
        idx, dist = self._graph
        return idx[:, :k], dist[:, :k]


def exact_neighbours(x: np.ndarray, k: int, block_mb: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), (n, k): each point's k nearest other points, nearest first, exactly.

    Squared distances of a block of rows to every point come from one float32 matrix product
    (torch, on every core), the k smallest from `topk`; the distances of the chosen pairs are
    then recomputed in float64 and each row re-sorted by them, so rounding in the product can
    only swap near-ties, never report a wrong distance. Points identical to another are each
    other's neighbours at distance 0; a point is never its own neighbour. Memory: one block of
    `block_mb`.
    """
    n = len(x)
    k = int(min(k, n - 1))
    centred = np.asarray(x, dtype=np.float32) - np.asarray(x, dtype=np.float64).mean(axis=0).astype(np.float32)
    data = torch.from_numpy(np.ascontiguousarray(centred))
    sq = (data * data).sum(dim=1)
    rows = int(max(1, min(n, block_mb * 2**20 // (4 * n))))
    idx = np.empty((n, k), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            # ||a||^2 is the same along a row, so ||b||^2 - 2 a.b orders the row as the distance does.
            d2 = torch.addmm(sq[None, :], data[start:stop], data.T, beta=1.0, alpha=-2.0)
            d2[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")  # not its own neighbour
            idx[start:stop] = torch.topk(d2, k, dim=1, largest=False, sorted=True).indices.numpy()
    x64 = np.asarray(x, dtype=np.float64)
    dist = np.empty((n, k))
    step = max(1, 2**24 // max(1, k * x64.shape[1]))
    for start in range(0, n, step):
        part = slice(start, start + step)
        dist[part] = np.sqrt(((x64[part, None, :] - x64[idx[part]]) ** 2).sum(axis=2))
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


def graph_size(cfg: EmbedConfig, n: int) -> int:
    """Neighbours the shared graph needs: t-SNE's 3 x perplexity and UMAP's n_neighbors."""
    return int(min(n - 1, max(3 * cfg.perplexity, cfg.umap_neighbors)))


def fft_tsne_map(
    x: np.ndarray, perplexity: float, max_iter: int, seed: int, neighbours: Neighbours | None = None
) -> MapResult:
    """openTSNE with the FFT-interpolated gradient: O(n) per iteration where Barnes-Hut is O(n log n)
    with a large constant; affinities from the shared graph, PCA-initialised, on every core (the
    coordinates do not depend on the thread count).

    `max_iter` counts the 250 early-exaggeration steps as scikit-learn does, so `--tsne-iter 500`
    means the same schedule on both paths.
    """
    # lazy: openTSNE, only for this map
    from openTSNE import TSNE as OpenTSNE
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = len(x)
    used = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    early = min(250, max_iter // 2)
    threads = all_cores()
    neighbours = neighbours or Neighbours(seed)
    idx, dist = neighbours.get(x, int(min(n - 1, 3 * used)))
    x = np.asarray(x, dtype=np.float64)
    affinities = PerplexityBasedNN(
        perplexity=used, knn_index=PrecomputedNeighbors(idx, dist), n_jobs=threads, random_state=seed
    )
    tsne = OpenTSNE(
        n_components=2,
        n_iter=max_iter - early,
        early_exaggeration_iter=early,
        negative_gradient_method="fft",
        learning_rate="auto",
        n_jobs=threads,
        random_state=seed,
    )
    embedding = tsne.fit(x, affinities=affinities, initialization="pca")
    return MapResult(
        np.asarray(embedding, dtype=np.float32),
        {
            "perplexity": used,
            "max_iter": max_iter,
            "gradient": "fft (openTSNE)",
            "neighbours": neighbours.method,
            "threads": threads,
            "kl_divergence": float(embedding.kl_divergence),
        },
    )


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), (n, k), each row starting with the point itself, as UMAP expects."""
    # lazy: sklearn.neighbors, only for exact neighbours
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k - 1).fit(x).kneighbors()  # no X: self left out
    return _with_self(idx, dist)


def _with_self(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prepend each point itself (distance 0) to its neighbour list, as UMAP's precomputed_knn expects."""
    n = len(idx)
    return (
        np.concatenate([np.arange(n)[:, None], idx], axis=1),
        np.concatenate([np.zeros((n, 1)), dist], axis=1).astype(np.float32),
    )


def umap_map(
    x: np.ndarray,
    n_neighbors: int,
    seed: int,
    n_epochs: int = 200,
    large_from: int = LARGE_INPUT,
    neighbours: Neighbours | None = None,
) -> MapResult:
    """UMAP (umap-learn); n_neighbors capped at n - 1; random_state makes it single-threaded, hence repeatable.

    Below `large_from` points the neighbour graph is computed exactly by scikit-learn and handed
    to UMAP: in 50 dimensions that takes a second for 10,000 points, and it spares the numba
    compilation of UMAP's approximate search (about 30 s of a cold start on a 2-core CPU). From
    there on the shared graph (`Neighbours`) is used, and the layout starts from the first two
    principal axes instead of the graph's spectral embedding: ARPACK's eigensolver on a
    112,120-point graph took about 180 s (more than the 200 epochs after it), the PCA start well
    under a second, with the same cluster scores (docs/performance.md).
    """
    with warnings.catch_warnings():
        # umap-learn warns that random_state disables parallelism: that is the point here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # lazy: umap, slow to import, only for this map
        import umap

        n = len(x)
        x = np.asarray(x, dtype=np.float32)
        used = int(min(n_neighbors, n - 1))
        large = n >= large_from
        knn, graph = None, "umap's own"
        if used >= 2:
            if large:
                neighbours = neighbours or Neighbours(seed)
                knn = _with_self(*neighbours.get(x, used - 1))
                graph = f"{neighbours.method} (shared)"
            else:
                knn, graph = exact_knn(x, used), "exact"
        # Spectral initialisation needs a connected graph of some size; tiny samples start at random.
        init = "pca" if large else "spectral" if n > 3 * used else "random"
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=used,
            min_dist=0.1,
            random_state=seed,
            n_epochs=n_epochs,
            init=init,
            precomputed_knn=(*knn, None) if knn is not None else (None, None, None),
        )
        coords = reducer.fit_transform(x)
    params = {"n_neighbors": used, "min_dist": 0.1, "n_epochs": n_epochs, "exact_neighbours": graph.startswith("exact")}
    if large:  # small inputs keep the parameters they always reported
        params.update({"neighbours": graph, "init": init})
    return MapResult(np.asarray(coords, dtype=np.float32), params)


def som_map(x: np.ndarray, cfg: EmbedConfig, large_from: int = LARGE_INPUT) -> MapResult:
    """Each sample at its winning neuron (row, col), plus a seeded jitter of +-0.35 so points do not overlap.

    The jitter only spreads points inside their neuron's cell; the 2-D scores use these coordinates,
    so neighbours within one neuron are ordered at random (seeded) rather than by input order.
    """
    som = train_som(
        x, cfg.grid, cfg.som_epochs, cfg.som_schedule, cfg.sigma0, cfg.som_lr, cfg.seed, batch_from=large_from
    )
    jitter = np.random.default_rng(cfg.seed + 1).uniform(-0.35, 0.35, size=(len(x), 2))
    # x = column, y = row, so the scatter looks like the U-matrix image (row 0 at the top after inverting).
    coords = np.stack([som.winners[:, 1], som.winners[:, 0]], axis=1) + jitter
    params = {
        "grid": list(cfg.grid),
        "epochs": cfg.som_epochs,
        "schedule": cfg.som_schedule,
        "sigma0": cfg.sigma0,
        "learning_rate": cfg.som_lr,
        "quantization_error": som.quantization_error,
        "topographic_error": som.topographic_error,
        "training": "batch" if len(x) >= large_from else "online",
    }
    return MapResult(coords.astype(np.float32), params, som)


def make_map(
    method: str, x: np.ndarray, cfg: EmbedConfig, large_from: int = LARGE_INPUT, neighbours: Neighbours | None = None
) -> MapResult:
    """(n, 2) coordinates by `method`; from `large_from` points on, the scalable path (module doc).

    Pass the same `neighbours` for every method of one input to build its neighbour graph once.
    """
    if neighbours is not None and len(x) >= large_from and method in ("tsne", "umap"):
        neighbours.get(x, graph_size(cfg, len(x)))  # the largest graph first; each map takes its columns
    if method == "tsne":
        if len(x) >= large_from:
            return fft_tsne_map(x, cfg.perplexity, cfg.tsne_iter, cfg.seed, neighbours)
        return tsne_map(x, cfg.perplexity, cfg.tsne_iter, cfg.seed, cfg.tsne_angle)
    if method == "umap":
        return umap_map(x, cfg.umap_neighbors, cfg.seed, cfg.umap_epochs, large_from, neighbours)
    if method == "som":
        return som_map(x, cfg, large_from)
    raise ValueError(f"unknown map method {method!r}")
