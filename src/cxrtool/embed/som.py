"""Self-organising map (Kohonen) on MiniSom, with the report's neighbourhood schedule.

The map is a MiniSom (PCA-initialised weights, its Gaussian neighbourhood, its U-matrix), trained
by an online loop of our own: one update per image, images in a seeded random order each epoch,
t counting updates from 0 to T = epochs x images. We drive the loop ourselves because MiniSom's
`sigma_decay_function` only accepts its built-in names, while the report shrinks the
neighbourhood radius as

    sigma_t = sigma_0 * exp(-t^2 * log(4 sigma_0) / T^2)

which keeps the map wide for most of training and ends at sigma_T = 1/4 (only the winner moves).
The `minisom` schedule is MiniSom's own default, sigma_t = sigma_0 / (1 + 2t/T) (ending at
sigma_0 / 3). The learning rate decays as MiniSom's default, lr_t = lr_0 / (1 + 2t/T), in both.

Above a size threshold (`batch_from`; tens of thousands of images) the online loop, about 10
microseconds an update, becomes minutes, so `train_som` switches to the batch SOM (Kohonen's
batch map): each epoch finds every image's winner at once (one matrix product), then sets each
neuron to the neighbourhood-weighted mean of all images, with the radius of the same schedule
taken at the middle of the epoch. Same MiniSom initialisation, U-matrix and errors; the batch
map has no learning rate (each epoch moves the neurons all the way to the weighted means).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..progress import progress_bar


def paper_sigma(t: float, total: float, sigma0: float) -> float:
    """The report's radius: sigma_0 * exp(-t^2 * log(4 sigma_0) / T^2)."""
    return float(sigma0 * np.exp(-(t**2) * np.log(4.0 * sigma0) / float(total) ** 2))


def minisom_sigma(t: float, total: float, sigma0: float) -> float:
    """MiniSom's default ('asymptotic_decay'): sigma_0 / (1 + t / (T/2))."""
    return float(sigma0 / (1.0 + t / (total / 2.0)))


def asymptotic_lr(t: float, total: float, lr0: float) -> float:
    return float(lr0 / (1.0 + t / (total / 2.0)))


SCHEDULES: dict[str, Callable[[float, float, float], float]] = {"paper": paper_sigma, "minisom": minisom_sigma}


@dataclass
class SomResult:
    weights: np.ndarray  # (rows, cols, d)
    winners: np.ndarray  # (n, 2) int: each sample's winning neuron (row, col)
    umatrix: np.ndarray  # (rows, cols): mean distance to neighbouring neurons, scaled to [0, 1]
    quantization_error: float  # mean distance from a sample to its winner's weights
    topographic_error: float  # share of samples whose two best neurons are not adjacent


def best_units(
    weights: np.ndarray, data: np.ndarray, chunk: int = 4096, second: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(first, second) best neuron index (flat) and the distance to the first, for every sample.

    With `second=False` only the winners are found (the batch map's inner step): (first, None, None).
    """
    flat = weights.reshape(-1, weights.shape[-1]).astype(np.float64)
    w2 = (flat**2).sum(axis=1)
    if not second:
        # ||x||^2 is the same for every neuron of a sample, so the winner needs only w2 - 2 x.w.
        return (
            np.concatenate(
                [
                    np.argmin(w2 - 2 * data[s : s + chunk].astype(np.float64) @ flat.T, axis=1)
                    for s in range(0, len(data), chunk)
                ]
            ),
            None,
            None,
        )
    first, second_, dist = [], [], []
    for start in range(0, len(data), chunk):
        x = data[start : start + chunk].astype(np.float64)
        d2 = np.maximum((x**2).sum(axis=1, keepdims=True) - 2 * x @ flat.T + w2, 0.0)
        two = np.argpartition(d2, 1, axis=1)[:, :2] if d2.shape[1] > 1 else np.zeros((len(x), 2), int)
        # argpartition does not order the two; sort them by distance.
        rows = np.arange(len(x))[:, None]
        two = np.take_along_axis(two, np.argsort(d2[rows, two], axis=1), axis=1)
        first.append(two[:, 0])
        second_.append(two[:, 1])
        dist.append(np.sqrt(d2[np.arange(len(x)), two[:, 0]]))
    return np.concatenate(first), np.concatenate(second_), np.concatenate(dist)


BATCH_FROM = 20000  # images; below it the online loop (the report's method) runs, as it always has


def train_som(
    data: np.ndarray,
    grid: tuple[int, int],
    epochs: int,
    schedule: str = "paper",
    sigma0: float | None = None,
    lr0: float = 0.5,
    seed: int = 0,
    batch_from: int = BATCH_FROM,
) -> SomResult:
    """Train a rows x cols SOM on `data` (n, d) and map every sample to its winning neuron.

    Online updates below `batch_from` samples, the batch map from there on (see the module doc).
    """
    # lazy: minisom, only for the SOM map
    from minisom import MiniSom

    rows, cols = grid
    n, dims = data.shape
    sigma0 = float(sigma0 if sigma0 is not None else max(grid) / 2.0)
    sigma_at = SCHEDULES[schedule]
    data = np.asarray(data, dtype=np.float64)
    som = MiniSom(rows, cols, dims, sigma=sigma0, learning_rate=lr0, neighborhood_function="gaussian", random_seed=seed)
    if n >= 2 and dims >= 2:
        som.pca_weights_init(data)  # spans the first two principal axes: a sensible, seeded start
    else:
        som.random_weights_init(data)
    weights = som.get_weights()  # MiniSom's own array: updated in place below
    flat = weights.reshape(rows * cols, dims)
    gi, gj = np.divmod(np.arange(rows * cols), cols)
    if n >= batch_from:
        _batch_epochs(data, flat, gi, gj, epochs, lambda t, total: sigma_at(t, total, sigma0))
    else:
        _online_epochs(data, flat, gi, gj, epochs, lambda t, total: sigma_at(t, total, sigma0), lr0, seed)
    return _result(som, weights, data, cols)


def _batch_epochs(
    data: np.ndarray,
    flat: np.ndarray,
    gi: np.ndarray,
    gj: np.ndarray,
    epochs: int,
    sigma_at: Callable[[float, float], float],
) -> None:
    """Kohonen's batch map, in place on `flat` (neurons x d): winners of all samples, then weighted means."""
    # lazy: scipy.sparse, only for the SOM map
    from scipy.sparse import csr_matrix

    n, units = len(data), len(flat)
    grid_d2 = (gi[:, None] - gi[None, :]) ** 2 + (gj[:, None] - gj[None, :]) ** 2
    total = epochs * n
    with progress_bar(epochs, "SOM (batch)", unit="epochs") as bar:
        for epoch in range(epochs):
            first, _, _ = best_units(flat, data, second=False)
            # Per neuron: the sum of its samples and their count (one sparse product, no Python loop).
            members = csr_matrix((np.ones(n), (first, np.arange(n))), shape=(units, n))
            sums = np.asarray(members @ data)
            counts = np.bincount(first, minlength=units).astype(np.float64)
            sigma = sigma_at((epoch + 0.5) * n, total)
            h = np.exp(-grid_d2 / (2.0 * sigma * sigma))
            num, den = h @ sums, h @ counts
            # A neuron with no sample anywhere in its neighbourhood (tiny radius) keeps its weights.
            alive = den > 1e-12
            flat[alive] = num[alive] / den[alive, None]
            bar.advance(1)


def _online_epochs(
    data: np.ndarray,
    flat: np.ndarray,
    gi: np.ndarray,
    gj: np.ndarray,
    epochs: int,
    sigma_at: Callable[[float, float], float],
    lr0: float,
    seed: int,
) -> None:
    """One update per sample, samples in a seeded random order each epoch, in place on `flat`."""
    n = len(data)
    rng = np.random.default_rng(seed)
    total = epochs * n
    t = 0
    with progress_bar(total, "SOM", unit="updates") as bar:
        for _ in range(epochs):
            for idx in rng.permutation(n):
                x = data[idx]
                win = int(np.argmin(((flat - x) ** 2).sum(axis=1)))
                sigma = sigma_at(t, total)
                # MiniSom's Gaussian neighbourhood, on the flat grid (the same numbers, less overhead).
                g = np.exp(-((gi - gi[win]) ** 2 + (gj - gj[win]) ** 2) / (2.0 * sigma * sigma))
                flat += (asymptotic_lr(t, total, lr0) * g)[:, None] * (x - flat)
                t += 1
                if t % 1000 == 0:
                    bar.advance(1000)
        bar.advance(t % 1000)


def _result(som, weights: np.ndarray, data: np.ndarray, cols: int) -> SomResult:
    n = len(data)
    first, second, dist = best_units(weights, data)
    fi, fj = np.divmod(first, cols)
    si, sj = np.divmod(second, cols)
    adjacent = np.maximum(np.abs(fi - si), np.abs(fj - sj)) <= 1
    return SomResult(
        weights=weights.copy(),
        winners=np.stack([fi, fj], axis=1),
        umatrix=som.distance_map(scaling="mean"),
        quantization_error=float(dist.mean()) if n else float("nan"),
        topographic_error=float(1.0 - adjacent.mean()) if n else float("nan"),
    )


def neuron_share(winners: np.ndarray, grid: tuple[int, int], mask: np.ndarray) -> np.ndarray:
    """(rows, cols) share of each neuron's samples where `mask` holds; NaN for empty neurons."""
    rows, cols = grid
    flat = winners[:, 0] * cols + winners[:, 1]
    hits = np.bincount(flat, minlength=rows * cols).astype(float)
    pos = np.bincount(flat, weights=mask.astype(float), minlength=rows * cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(hits > 0, pos / np.maximum(hits, 1), np.nan)
    return share.reshape(rows, cols)


def neuron_majority(winners: np.ndarray, grid: tuple[int, int], classes: np.ndarray, names: list[str]) -> np.ndarray:
    """(rows, cols) index into `names` of each neuron's most common class; -1 for empty neurons."""
    rows, cols = grid
    flat = winners[:, 0] * cols + winners[:, 1]
    position = {name: i for i, name in enumerate(names)}
    code = np.array([position[c] for c in classes], dtype=int)
    counts = np.zeros((rows * cols, max(len(names), 1)))
    np.add.at(counts, (flat, code), 1)
    major = counts.argmax(axis=1)
    major[counts.sum(axis=1) == 0] = -1
    return major.reshape(rows, cols)
