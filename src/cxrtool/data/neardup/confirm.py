"""Confirming candidate pairs on their pixels: the second step of the near-duplicate search.

A fingerprint candidate whose pixels correlate as they are (align.identity_scores on the 128 px
fine images) is a "hash" match; every other candidate is aligned (align.align_pairs: a search
over crops, scales and positions) and kept when the correlation of the aligned fine detail
reaches `min_score`. The work grows with the number of candidates (two to four per image), is
done a batch of pairs at a time (only the images of the batches in flight are held) and runs on
a few threads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from ...progress import progress_bar
from ..pool import usable_cores
from .align import align_pairs, fine_images, identity_scores, work_images
from .hashing import popcount
from .options import SearchOptions

IDENTICAL, HASH, ALIGNED = "identical file", "hash", "aligned correlation"

Reader = Callable[[int], np.ndarray]  # image i of a set (e.g. a row of a cache's memmap)


class Pair(NamedTuple):
    """A confirmed near-duplicate: rows i (of a) and j (of b), how it was found and aligned.

    distance: the fingerprints' Hamming distance; score: the correlation on the aligned pixels;
    b shows `scale` of a's side, its top-left at (x, y) in fractions of a's side.
    """

    i: int
    j: int
    distance: int
    method: str
    score: float
    scale: float = 1.0
    x: float = 0.0
    y: float = 0.0


class Candidates(NamedTuple):
    """What the cheap step of the search hands to the confirmation: every pair to check, the
    ones found by fingerprint (checked first as they are), and the parsed fingerprints."""

    pairs: list[tuple[int, int]]
    hashed: set[tuple[int, int]]
    words_a: np.ndarray
    words_b: np.ndarray


def confirm(
    found: Candidates,
    image_a: Reader,
    image_b: Reader | None = None,
    options: SearchOptions | None = None,
    threads: int | None = None,
) -> list[Pair]:
    """Confirm candidate pairs on their pixels, `options.batch` pairs at a time.

    image_b None: the pairs are within image_a's set. Only the images of `threads` batches are
    held at once. Batches run on `threads` threads (default: the CPUs this process may use, at
    most 4): the work is FFTs and matrix products, which release the GIL. Each product is small,
    so BLAS runs single-threaded meanwhile: its own threads would only contend with these
    (docs/performance.md, "Near-duplicate search at scale"). The result depends on neither.
    """
    options = options or SearchOptions()
    todo, batch = found.pairs, options.batch
    one = _batch_confirmer(found, image_a, image_b, options.min_score)
    if threads is None:
        threads = min(4, usable_cores())
    chunks = [todo[start : start + batch] for start in range(0, len(todo), batch)]
    confirmed: list[Pair] = []
    with (
        progress_bar(len(todo), "confirm candidates", unit="pairs") as bar,
        threadpool_limits(limits=1, user_api="blas"),
    ):
        if threads <= 1 or len(chunks) <= 1:
            results = map(one, chunks)
        else:
            pool = ThreadPoolExecutor(max_workers=threads)
            results = pool.map(one, chunks)  # in order; `threads` batches run at once, each result a short list
        try:
            for chunk, pairs in zip(chunks, results):
                confirmed.extend(pairs)
                bar.advance(len(chunk))
        finally:
            if threads > 1 and len(chunks) > 1:
                pool.shutdown(cancel_futures=True)
    return sorted(confirmed)


def _batch_confirmer(
    found: Candidates, image_a: Reader, image_b: Reader | None, min_score: float
) -> Callable[[list[tuple[int, int]]], list[Pair]]:
    """`one(chunk)`: the confirmed pairs of one batch of candidates, its images read for it alone."""
    same = image_b is None
    get_b = image_a if same else image_b
    hashed, words_a, words_b = found.hashed, found.words_a, found.words_b

    def one(chunk: list[tuple[int, int]]) -> list[Pair]:
        out: list[Pair] = []
        rows_a = {i for i, _ in chunk} | ({j for _, j in chunk} if same else set())
        images_a = {i: np.asarray(image_a(i)) for i in sorted(rows_a)}
        images_b = images_a if same else {j: np.asarray(get_b(j)) for j in sorted({j for _, j in chunk})}
        # Work images are made a batch at a time (one filter call per batch, not per image), and
        # the fine (128 px) ones, which cost most, only for the pairs whose step needs them.
        fine_a: dict[int, np.ndarray] = {}
        fine_b = fine_a if same else {}

        def fine_of(rows: list[int], images: dict, made: dict) -> np.ndarray:
            new = sorted({r for r in rows if r not in made})
            made.update(zip(new, fine_images([images[r] for r in new])))
            return np.array([made[r] for r in rows])

        dist = [int(popcount(words_a[i] ^ words_b[j]).sum()) for i, j in chunk]
        hash_k = [k for k, p in enumerate(chunk) if p in hashed]
        plain = np.zeros(len(chunk))
        if hash_k:
            plain[hash_k] = identity_scores(
                fine_of([chunk[k][0] for k in hash_k], images_a, fine_a),
                fine_of([chunk[k][1] for k in hash_k], images_b, fine_b),
            )
        rest = []
        for k, (i, j) in enumerate(chunk):
            if (i, j) in hashed and plain[k] >= min_score:
                out.append(Pair(i, j, dist[k], HASH, round(float(plain[k]), 4)))
            else:
                rest.append(k)
        if rest:
            coarse_a: dict[int, np.ndarray] = {}
            coarse_b = coarse_a if same else {}
            for made, rows, images in (
                (coarse_a, {chunk[k][0] for k in rest}, images_a),
                (coarse_b, {chunk[k][1] for k in rest}, images_b),
            ):
                new = sorted(rows - set(made))
                made.update(zip(new, work_images([images[r] for r in new])))
            matches = align_pairs(
                np.array([coarse_a[chunk[k][0]] for k in rest]),
                np.array([coarse_b[chunk[k][1]] for k in rest]),
                fine=lambda go: (
                    fine_of([chunk[rest[g]][0] for g in go], images_a, fine_a),
                    fine_of([chunk[rest[g]][1] for g in go], images_b, fine_b),
                ),
                threshold=min_score,
            )
            for k, m in zip(rest, matches):
                if m.score >= min_score:
                    i, j = chunk[k]
                    out.append(
                        Pair(i, j, dist[k], ALIGNED, round(m.score, 4), round(m.scale, 4), round(m.x, 4), round(m.y, 4))
                    )
        return out

    return one
