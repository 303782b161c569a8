"""The inverted-file index: each image's most similar vectors of a large base, without all pairs.

Up to `IndexSettings.exact_limit` base images the search's neighbours are exact (every query
against every base vector, in blocks); beyond, they come from an `Index`: k-means cells of about
`cell_size` base vectors, each query compared only with the vectors of its `probes` nearest
cells. So the candidate step grows about linearly with the number of images instead of with its
square. Both the fingerprint and the window-descriptor neighbours use it (hashing.py,
descriptors.py); the vectors are unit length and similarity is their dot product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# skip(query ids, base rows) -> a boolean matrix of the pairs never to return (e.g. one patient).
Skip = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class IndexSettings:
    """When the index is used and how finely it cuts the base.

    exact_limit: a base of up to this many images is searched exhaustively (exact top-k); a larger
    one through the index, in cells of about `cell_size` images, of which each query vector
    searches the nearest `probes`.
    """

    exact_limit: int = 20_000
    cell_size: int = 256
    probes: int = 8


def top_columns(sim: np.ndarray, k: int) -> np.ndarray:
    """(rows, k): the columns of each row's k largest values (in no particular order; ties: any).

    For the few columns wanted here, k passes of argmax beat a partition of every row.
    """
    if k >= sim.shape[1]:
        return np.tile(np.arange(sim.shape[1]), (len(sim), 1))
    if k > 8:
        return np.argpartition(-sim, k - 1, axis=1)[:, :k]
    out = np.empty((len(sim), k), dtype=np.int64)
    work = sim if k == 1 else sim.copy()
    rows = np.arange(len(sim))
    for n in range(k):
        out[:, n] = work.argmax(axis=1)
        if n + 1 < k:
            work[rows, out[:, n]] = -np.inf
    return out


def nearest_cells(x: np.ndarray, centres: np.ndarray, probes: int, block: int = 4096) -> np.ndarray:
    """(len(x), probes): the cells whose centres are most similar to each row of x (unit vectors)."""
    probes = min(probes, len(centres))
    out = np.empty((len(x), probes), dtype=np.int64)
    for start in range(0, len(x), block):
        sim = x[start : start + block].astype(np.float32) @ centres.T
        out[start : start + block] = top_columns(sim, probes)
    return out


def top_per_query(qi: np.ndarray, bj: np.ndarray, sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of (query, base, similarity) triples, each query's k most similar distinct base rows."""
    order = np.lexsort((-sim, bj, qi))
    qi, bj, sim = qi[order], bj[order], sim[order]
    first = np.ones(len(qi), dtype=bool)
    first[1:] = (qi[1:] != qi[:-1]) | (bj[1:] != bj[:-1])  # the best similarity of each (query, base)
    qi, bj, sim = qi[first], bj[first], sim[first]
    order = np.lexsort((bj, -sim, qi))
    qi, bj, sim = qi[order], bj[order], sim[order]
    start = np.searchsorted(qi, qi, side="left")
    keep = np.arange(len(qi)) - start < k
    return qi[keep], bj[keep], sim[keep]


class Index:
    """An inverted-file index over a base of vectors: k-means cells, exact similarities inside them.

    Each query vector is compared only with the base vectors of the `probes` cells nearest to it,
    so a search costs about probes x cell_size products per query instead of one per base vector.
    A near-duplicate lies much closer to its original than the look-alikes around it, and falls
    in (or next to) the same cell; what the index can miss is only a neighbour near a cell's edge
    among several cells (hence several probes). Deterministic: the cells come from a seeded
    spherical k-means on a sample of the base.
    """

    def __init__(
        self,
        base: np.ndarray,
        settings: IndexSettings,
        scale: float = 1.0,
        seed: int = 0,
        iters: int = 6,
        sample: int = 20_000,
    ):
        self.base, self.scale = base, np.float32(scale)  # base rows times `scale` are unit vectors
        self.probes = settings.probes
        cells = max(1, len(base) // settings.cell_size)
        rng = np.random.default_rng(seed)
        pts = (
            base[np.sort(rng.choice(len(base), min(sample, len(base)), replace=False))].astype(np.float32) * self.scale
        )
        centres = pts[rng.choice(len(pts), cells, replace=False)]
        for _ in range(iters):
            label = nearest_cells(pts, centres, 1)[:, 0]
            sums = np.zeros_like(centres)
            np.add.at(sums, label, pts)
            norm = np.linalg.norm(sums, axis=1, keepdims=True)
            centres = np.where(norm > 0, sums / np.maximum(norm, 1e-12), centres).astype(np.float32)
        self.centres = centres
        # A block at a time: the block's similarities to every centre are the largest array here.
        label = np.concatenate(
            [
                nearest_cells(base[s : s + 4096].astype(np.float32) * self.scale, centres, 1)[:, 0]
                for s in range(0, len(base), 4096)
            ]
        )
        self.order = np.argsort(label, kind="stable")
        self.bounds = np.searchsorted(label[self.order], np.arange(cells + 1))

    def search(self, q: np.ndarray, q_ids: np.ndarray, k: int, skip: Skip) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query row, its k most similar base rows among the probed cells.

        Returns (query row, base row, similarity) arrays; `skip(q_ids, base rows)` marks pairs
        never to return.
        """
        rows = np.repeat(np.arange(len(q)), min(self.probes, len(self.centres)))
        cells = nearest_cells(q, self.centres, self.probes).ravel()
        by_cell = np.argsort(cells, kind="stable")
        rows, cells = rows[by_cell], cells[by_cell]
        cuts = np.flatnonzero(np.diff(cells)) + 1
        out_q, out_b, out_s = [], [], []
        for part in np.split(np.arange(len(rows)), cuts):
            if len(part) == 0:
                continue
            c = cells[part[0]]
            members = self.order[self.bounds[c] : self.bounds[c + 1]]
            if len(members) == 0:
                continue
            r = rows[part]
            sim = q[r] @ (self.base[members].astype(np.float32) * self.scale).T
            sim[skip(q_ids[r], members)] = -np.inf
            top = top_columns(sim, min(k, len(members)))
            best = np.take_along_axis(sim, top, axis=1)
            ok = np.isfinite(best)
            out_q.append(np.broadcast_to(r[:, None], top.shape)[ok])
            out_b.append(members[top][ok])
            out_s.append(best[ok])
        if not out_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(out_q), np.concatenate(out_b), np.concatenate(out_s)
