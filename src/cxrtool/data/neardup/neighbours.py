"""Each image's nearest whole images by window descriptor: the crop-robust candidates.

For each query image, the `neighbours` whole images of a base most similar to any of its windows
(descriptors.py) become candidates, when at least `min_similarity` similar. Up to
`index.exact_limit` base images the neighbours are exact (blocks of queries against chunks of
the base, a running top-k per query); beyond, they come from the inverted-file index (index.py).

Memory: only the base's whole-image descriptors are held (and, for the index, once more
normalised in float16: 128 bytes per image, plus its cell lists, 8 bytes per image); the
queries' window descriptors are recomputed a block at a time. Nothing holds N x N numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..pool import usable_cores
from .descriptors import normalise, window_grid
from .index import Index, top_per_query
from .options import SearchOptions


@dataclass(frozen=True)
class DescriptorSet:
    """One set of images as the descriptor neighbours see it.

    windows(start, stop): the window descriptors of images start..stop-1, (m, windows, 64);
    whole: (n, 64) whole-image descriptors; groups: (n,) codes, images of one group (e.g. one
    patient) never paired.
    """

    windows: Callable[[int, int], np.ndarray]
    whole: np.ndarray
    groups: np.ndarray


def descriptor_pairs(
    queries: DescriptorSet,
    base: DescriptorSet,
    mean: np.ndarray,
    same: bool,
    options: SearchOptions | None = None,
    memory: int = 1 << 26,
) -> set[tuple[int, int]]:
    """Candidate pairs (query i, base j): for each query image, the `options.neighbours` whole
    images of `base` most similar to any of its windows (at least `options.min_similarity`).

    `mean`: the mean whole-image descriptor the similarities are taken around (descriptors.normalise).
    same: queries and base are one set, and each pair is listed once as (i < j). Pairs within one
    group are never candidates; blocks keep the similarity matrix under `memory` bytes.
    """
    options = options or SearchOptions()
    found: set[tuple[int, int]] = set()
    n_queries = len(queries.groups)
    q_groups, b_groups = np.asarray(queries.groups), np.asarray(base.groups)
    if n_queries == 0 or len(base.whole) == 0:
        return found
    if len(base.whole) > options.index.exact_limit:
        return _indexed_pairs(queries, base, mean, same, options)
    db = normalise(base.whole, mean)
    k = min(options.neighbours, len(db))
    # Blocks of queries x chunks of the base: each product is a large matrix multiply, and a
    # running top-k per query replaces the full row of similarities.
    per_pair = 4 * len(window_grid())
    chunk = min(len(db), 4096)
    rows = max(1, min(1024, memory // (per_pair * chunk)))
    for start in range(0, n_queries, rows):
        stop = min(n_queries, start + rows)
        q = normalise(queries.windows(start, stop), mean)  # (m, windows, 64)
        flat = q.reshape(-1, q.shape[-1])
        best = np.full((stop - start, k), -np.inf, dtype=np.float32)
        best_j = np.zeros((stop - start, k), dtype=np.int64)
        for c0 in range(0, len(db), chunk):
            c1 = min(len(db), c0 + chunk)
            sim = (flat @ db[c0:c1].T).reshape(stop - start, q.shape[1], c1 - c0).max(axis=1)
            sim[q_groups[start:stop, None] == b_groups[None, c0:c1]] = -np.inf
            both = np.concatenate([best, sim], axis=1)
            cols = np.concatenate([best_j, np.broadcast_to(np.arange(c0, c1), sim.shape)], axis=1)
            top = (
                np.argpartition(-both, k - 1, axis=1)[:, :k]
                if both.shape[1] > k
                else np.tile(np.arange(k), (len(both), 1))
            )
            best, best_j = np.take_along_axis(both, top, axis=1), np.take_along_axis(cols, top, axis=1)
        qi, col = np.nonzero(best >= options.min_similarity)
        for i, j in zip(qi + start, best_j[qi, col]):
            found.add((min(int(i), int(j)), max(int(i), int(j))) if same else (int(i), int(j)))
    return found


def _indexed_pairs(
    queries: DescriptorSet, base: DescriptorSet, mean: np.ndarray, same: bool, options: SearchOptions
) -> set[tuple[int, int]]:
    """`descriptor_pairs` for a large base, through the index: every window of a query probes the
    cells nearest to it, and the query keeps the `neighbours` best whole images found in them.

    Holds the base's descriptors once more, normalised, in float16 (128 bytes per image), the
    index's cell lists (8 bytes per image) and one block of queries' windows per thread.
    """
    db = normalise(base.whole, mean).astype(np.float16)
    with threadpool_limits(limits=1, user_api="blas"):  # small products: BLAS threads would only contend
        index = Index(db, options.index)
        return _search_blocks(index, queries, base, mean, same, options)


def _search_blocks(
    index: Index, queries: DescriptorSet, base: DescriptorSet, mean: np.ndarray, same: bool, options: SearchOptions
) -> set[tuple[int, int]]:
    """The body of `_indexed_pairs`: blocks of query images through the index, each block about
    40,000 window vectors.

    Blocks run on a thread per usable core (at most 4): their window descriptors and index
    probes are matrix products and sorts that release the GIL, and BLAS itself runs on one
    thread here. The pairs found do not depend on the order blocks finish in.
    """
    q_groups, b_groups = np.asarray(queries.groups), np.asarray(base.groups)
    n_queries, neighbours = len(q_groups), options.neighbours
    block = 40_000 // len(window_grid())  # query images per block
    never = lambda q, b: q_groups[q][:, None] == b_groups[b][None, :]  # noqa: E731

    def one(start: int) -> list[tuple[int, int]]:
        stop = min(n_queries, start + block)
        q = normalise(queries.windows(start, stop), mean)  # (m, windows, 64)
        owner = np.repeat(np.arange(start, stop), q.shape[1])
        qi, bj, sim = index.search(q.reshape(-1, q.shape[-1]), owner, neighbours, never)
        qi, bj, sim = top_per_query(owner[qi], bj, sim, neighbours)
        keep = sim >= options.min_similarity
        return [(min(i, j), max(i, j)) if same else (i, j) for i, j in zip(qi[keep].tolist(), bj[keep].tolist())]

    starts = range(0, n_queries, block)
    threads = min(4, usable_cores(), len(starts))
    if threads <= 1:
        return {pair for start in starts for pair in one(start)}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return {pair for found in pool.map(one, starts) for pair in found}
