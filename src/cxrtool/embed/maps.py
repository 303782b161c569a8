"""The three 2-D maps: t-SNE, UMAP and the self-organising map, behind one call.

`make_map(method, X, cfg)` returns (n, 2) coordinates (plus, for the SOM, the trained map).
Every method is seeded and single-threaded where threads would reorder floating-point sums, so
the same seed gives the same coordinates. Parameters that break on small samples (perplexity,
n_neighbors) are capped, and the cap is reported. UMAP's first call in a process spends several
seconds compiling numba code; that warm-up is part of its timing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import EmbedConfig
from .som import SomResult, train_som


SMALL_FOR_THREADS = 5000


@dataclass
class MapResult:
    coords: np.ndarray                   # (n, 2)
    params: dict[str, Any] = field(default_factory=dict)
    som: SomResult | None = None


def tsne_map(x: np.ndarray, perplexity: float, max_iter: int, seed: int) -> MapResult:
    """Barnes-Hut t-SNE, PCA-initialised; perplexity capped at (n - 1) / 3 as scikit-learn requires."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(x)
    used = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    tsne = TSNE(n_components=2, perplexity=used, init="pca", learning_rate="auto", max_iter=max_iter,
                method="barnes_hut" if n > 50 else "exact", random_state=seed)
    # Below a few thousand points each gradient step is too small to share between threads:
    # the OpenMP hand-offs then cost more than they save (5x slower on a busy 2-core machine).
    with threadpool_limits(limits=1 if n < SMALL_FOR_THREADS else None, user_api="openmp"):
        coords = tsne.fit_transform(np.asarray(x, dtype=np.float32))
    return MapResult(coords.astype(np.float32), {"perplexity": used, "max_iter": max_iter,
                                                 "kl_divergence": float(tsne.kl_divergence_)})


def umap_map(x: np.ndarray, n_neighbors: int, seed: int, n_epochs: int = 200) -> MapResult:
    """UMAP (umap-learn); n_neighbors capped at n - 1; random_state makes it single-threaded, hence repeatable."""
    with warnings.catch_warnings():
        # umap-learn warns that random_state disables parallelism: that is the point here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import umap

        n = len(x)
        used = int(min(n_neighbors, n - 1))
        # Spectral initialisation needs a connected graph of some size; tiny samples start at random.
        reducer = umap.UMAP(n_components=2, n_neighbors=used, min_dist=0.1, random_state=seed, n_epochs=n_epochs,
                            init="spectral" if n > 3 * used else "random")
        coords = reducer.fit_transform(np.asarray(x, dtype=np.float32))
    return MapResult(np.asarray(coords, dtype=np.float32), {"n_neighbors": used, "min_dist": 0.1, "n_epochs": n_epochs})


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
        return tsne_map(x, cfg.perplexity, cfg.tsne_iter, cfg.seed)
    if method == "umap":
        return umap_map(x, cfg.umap_neighbors, cfg.seed, cfg.umap_epochs)
    if method == "som":
        return som_map(x, cfg)
    raise ValueError(f"unknown map method {method!r}")
