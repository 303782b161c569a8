"""Perceptual fingerprints of cached images, and the search for near-duplicate radiographs.

Public X-ray collections hold the same radiograph more than once: under two patient ids, as a
re-encoded JPEG, at another size, re-windowed, cropped a little differently. A byte hash misses
all of these. The search works in two steps, so that it never compares all pairs of pixels:

1. Candidates, cheaply. Every cached image gets a 256-bit perceptual hash (pHash: the signs of
   the 16x16 lowest DCT frequencies of a 64x64 area downsample against their median), written as
   64 hex digits in index.csv; each image's closest fingerprints within `max_distance` bits are
   candidates. A hash does not survive a crop, and it also pairs look-alike films of different
   patients, so each image also gets crop-robust window descriptors (the low frequencies of its
   whole view and of 75 windows of 92.5% to 70% of its side, on a rank image that windowing
   does not change), and the whole images most similar to one of its windows are candidates too.
2. Confirmation on the pixels (align.py): a hash candidate whose pixels correlate as they are is a
   "hash" match; every other candidate is aligned (a search over crops, scales and positions) and
   kept when the correlation of the aligned fine detail reaches `DEFAULT_MIN_SCORE`.

Scale: up to `EXACT_LIMIT` images the neighbours are exact (every window against every whole
image, every fingerprint against every other, in blocks); beyond, they come from an
inverted-file index (`_Index`: k-means cells of about `CELL_SIZE` images, each query searching
the `PROBES` nearest cells), so the candidate step grows about linearly with the number of
images instead of with its square. The confirmation grows with the number of candidates (two to
four per image) and runs on a few threads.

Memory: only whole-image descriptors (128 bytes per image, twice over a large set: as computed
and normalised for the index) and the index's cell lists (8 bytes per image) are held; window
descriptors are recomputed a block of queries at a time, and pixels are read back from the
cache's memmap, one batch of candidates per thread at a time. Nothing holds N x N numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image
from scipy.fft import dctn
from threadpoolctl import threadpool_limits

from ..progress import progress_bar
from .align import DEFAULT_MIN_SCORE, WORK, align_pairs, fine_images, identity_scores, rank_image, work_images
from .pool import usable_cores

HASH_SIDE = 64  # the downsample the hash looks at
BITS_SIDE = 16  # 16 x 16 DCT coefficients -> 256 bits
FINGERPRINT_HEX = BITS_SIDE * BITS_SIDE // 4
WORDS = BITS_SIDE * BITS_SIDE // 64
DEFAULT_MAX_DISTANCE = 40  # of 256 bits: copies stay under ~16, distinct films are over ~56


def _downsample(img: np.ndarray, side: int = HASH_SIDE) -> np.ndarray:
    """Area-average downsample to side x side (robust to the filter a copy was resized with)."""
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), mode="L")
    return np.asarray(im.resize((side, side), Image.Resampling.BOX), dtype=np.float64)


def fingerprint(img: np.ndarray) -> str:
    """The 64-hex-digit perceptual hash of a 2-D uint8 image."""
    coeffs = dctn(_downsample(img), norm="ortho")[:BITS_SIDE, :BITS_SIDE].ravel()
    ac = coeffs[1:]  # the DC term only measures overall brightness
    bits = np.concatenate([[False], ac > np.median(ac)])
    return np.packbits(bits).tobytes().hex()


def parse(fingerprints: Sequence[str]) -> np.ndarray:
    """Hex fingerprints -> (n, 4) uint64 words; a malformed one raises ValueError naming it."""
    out = np.zeros((len(fingerprints), WORDS), dtype=np.uint64)
    for i, fp in enumerate(fingerprints):
        text = str(fp).strip()
        if len(text) != FINGERPRINT_HEX:
            raise ValueError(f"not a fingerprint: {text!r}")
        out[i] = np.frombuffer(bytes.fromhex(text), dtype=">u8").astype(np.uint64)
    return out


if hasattr(np, "bitwise_count"):

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)
else:  # numpy < 2.0
    _BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape((*x.shape, 8))
        return _BYTE_COUNTS[as_bytes].sum(axis=-1, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Hamming distance between two parsed fingerprints (rows of `parse`), 0..256."""
    return int(_popcount(a ^ b).sum())


def distance(a: str, b: str) -> int:
    """Hamming distance between two hex fingerprints (0..256)."""
    pa, pb = parse([a, b])
    return int(_popcount(pa ^ pb).sum())


def candidate_pairs(
    a: Sequence[str],
    b: Sequence[str] | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    block: int = 128,
    limit: int | None = None,
    skip=None,
) -> list[tuple[int, int, int]]:
    """Pairs (i, j, distance) with hash distance <= max_distance.

    With one set, pairs i < j within it; with two, i indexes `a` and j indexes `b`. With `limit`,
    each i keeps only its `limit` closest j (with one set: each image keeps its `limit` closest
    others, before or after it in the list, and a pair is listed once), so look-alike sets cannot make
    the list grow with the square of their size; `skip(rows, cols)` marks (with a boolean matrix)
    pairs never to list, e.g. one patient. Up to `EXACT_LIMIT` images in `b`: a blocked
    all-pairs popcount; beyond, with `limit`, an index (`_indexed_hash_pairs`).
    """
    fa = parse(a)
    same = b is None
    fb = fa if same else parse(b)
    pairs: list[tuple[int, int, int]] = []
    if len(fa) == 0 or len(fb) == 0:
        return pairs
    if limit is not None and len(fb) > EXACT_LIMIT:
        return _indexed_hash_pairs(fa, fb, same, max_distance, limit, skip)
    for start in range(0, len(fa), block):
        rows = fa[start : start + block]
        d = np.zeros((len(rows), len(fb)), dtype=np.uint16)
        for w in range(WORDS):
            d += _popcount(rows[:, None, w] ^ fb[None, :, w])
        far = np.uint16(max_distance + 1)
        if same:  # never an image with itself; with a limit, the closest on either side of i
            ahead = np.arange(len(rows))[:, None] + start
            d[
                (ahead == np.arange(len(fb))[None, :]) if limit is not None else (ahead >= np.arange(len(fb))[None, :])
            ] = far
        if skip is not None:
            d[skip(np.arange(start, start + len(rows)), np.arange(len(fb)))] = far
        if limit is not None and limit < d.shape[1]:
            keep = np.argpartition(d, limit - 1, axis=1)[:, :limit]
            mask = np.zeros(d.shape, dtype=bool)
            np.put_along_axis(mask, keep, True, axis=1)
            d[~mask] = far
        close_i, close_j = np.nonzero(d <= max_distance)
        pairs.extend((int(i + start), int(j), int(d[i, j])) for i, j in zip(close_i, close_j))
    if same and limit is not None:  # i's closest and j's closest: each pair once, as (i < j)
        pairs = sorted({(min(i, j), max(i, j), dist) for i, j, dist in pairs})
    return pairs


# ---------------------------------------------------------------- the index for large sets

EXACT_LIMIT = 20_000  # a base of up to this many images is searched exhaustively (exact top-k) ...
CELL_SIZE = 256  # ... a larger one through an inverted-file index: cells of about this many images,
PROBES = 8  # ... of which each query vector searches the nearest few


def _nearest_cells(x: np.ndarray, centres: np.ndarray, probes: int, block: int = 4096) -> np.ndarray:
    """(len(x), probes): the cells whose centres are most similar to each row of x (unit vectors)."""
    probes = min(probes, len(centres))
    out = np.empty((len(x), probes), dtype=np.int64)
    for start in range(0, len(x), block):
        sim = x[start : start + block].astype(np.float32) @ centres.T
        out[start : start + block] = _top_columns(sim, probes)
    return out


def _top_columns(sim: np.ndarray, k: int) -> np.ndarray:
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


class _Index:
    """An inverted-file index over a base of vectors: k-means cells, exact similarities inside them.

    Each query vector is compared only with the base vectors of the `PROBES` cells nearest to it,
    so a search costs about PROBES x CELL_SIZE products per query instead of one per base vector.
    A near-duplicate lies much closer to its original than the look-alikes around it, and falls
    in (or next to) the same cell; what the index can miss is only a neighbour near a cell's edge
    among several cells (hence several probes). Deterministic: the cells come from a seeded
    spherical k-means on a sample of the base.
    """

    def __init__(self, base: np.ndarray, scale: float = 1.0, seed: int = 0, iters: int = 6, sample: int = 20_000):
        self.base, self.scale = base, np.float32(scale)  # base rows times `scale` are unit vectors
        cells = max(1, len(base) // CELL_SIZE)
        rng = np.random.default_rng(seed)
        pts = (
            base[np.sort(rng.choice(len(base), min(sample, len(base)), replace=False))].astype(np.float32) * self.scale
        )
        centres = pts[rng.choice(len(pts), cells, replace=False)]
        for _ in range(iters):
            label = _nearest_cells(pts, centres, 1)[:, 0]
            sums = np.zeros_like(centres)
            np.add.at(sums, label, pts)
            norm = np.linalg.norm(sums, axis=1, keepdims=True)
            centres = np.where(norm > 0, sums / np.maximum(norm, 1e-12), centres).astype(np.float32)
        self.centres = centres
        # A block at a time: the block's similarities to every centre are the largest array here.
        label = np.concatenate(
            [
                _nearest_cells(base[s : s + 4096].astype(np.float32) * self.scale, centres, 1)[:, 0]
                for s in range(0, len(base), 4096)
            ]
        )
        self.order = np.argsort(label, kind="stable")
        self.bounds = np.searchsorted(label[self.order], np.arange(cells + 1))

    def search(self, q: np.ndarray, q_ids: np.ndarray, k: int, skip) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query row, its k most similar base rows among the probed cells.

        Returns (query row, base row, similarity) arrays; `skip(q_ids, base rows)` marks pairs
        never to return (a boolean matrix), e.g. one patient.
        """
        rows = np.repeat(np.arange(len(q)), min(PROBES, len(self.centres)))
        cells = _nearest_cells(q, self.centres, PROBES).ravel()
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
            top = _top_columns(sim, min(k, len(members)))
            best = np.take_along_axis(sim, top, axis=1)
            ok = np.isfinite(best)
            out_q.append(np.broadcast_to(r[:, None], top.shape)[ok])
            out_b.append(members[top][ok])
            out_s.append(best[ok])
        if not out_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(out_q), np.concatenate(out_b), np.concatenate(out_s)


def _top_per_query(
    qi: np.ndarray, bj: np.ndarray, sim: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _signs(words: np.ndarray) -> np.ndarray:
    """(n, 256) int8 of +-1: the fingerprint's bits as a vector (dot product = 256 - 2 x distance)."""
    bits = np.unpackbits(words.astype(">u8").view(np.uint8).reshape(len(words), -1), axis=1)
    return bits.astype(np.int8) * 2 - 1


def _indexed_hash_pairs(fa, fb, same: bool, max_distance: int, limit: int, skip, block: int = 4096):
    """`candidate_pairs` for a large base: each image's `limit` closest fingerprints, through _Index.

    Bits as +-1 vectors make the Hamming distance a cosine (1 - 2 d / 256). With one set, every
    image's closest are kept and each pair is listed once (i < j).
    """
    with threadpool_limits(limits=1, user_api="blas"):  # small products: BLAS threads would only contend
        return _hash_blocks(fa, fb, same, max_distance, limit, skip, block)


def _hash_blocks(fa, fb, same, max_distance, limit, skip, block):
    """The body of `_indexed_hash_pairs` (query blocks of `block` fingerprints)."""
    bits = 8 * fa.shape[1] * 8
    index = _Index(_signs(fb), scale=1 / np.sqrt(bits))
    never = (
        (lambda q, b: (q[:, None] == b[None, :]) | skip(q, b))
        if same and skip is not None
        else (
            (lambda q, b: q[:, None] == b[None, :]) if same else skip or (lambda q, b: np.zeros((len(q), len(b)), bool))
        )
    )
    found: dict[tuple[int, int], int] = {}
    for start in range(0, len(fa), block):
        q = _signs(fa[start : start + block]).astype(np.float32) / np.float32(np.sqrt(bits))
        ids = np.arange(start, start + len(q))
        qi, bj, sim = index.search(q, ids, limit, never)
        qi, bj, sim = _top_per_query(ids[qi], bj, sim, limit)
        dist = np.rint((1 - sim) * bits / 2).astype(int)
        for i, j, d in zip(qi.tolist(), bj.tolist(), dist.tolist()):
            if d <= max_distance:
                found[(min(i, j), max(i, j)) if same else (i, j)] = d
    return [(i, j, d) for (i, j), d in sorted(found.items())]


# ---------------------------------------------------------------- crop-robust descriptors

DESC_SIDE = 16  # a window is averaged down to 16 x 16 ...
DESC_KEEP = 8  # ... and described by its 8 x 8 lowest DCT frequencies (64 numbers, DC zeroed)
# A crop of up to 15% per border leaves a view of 70% to 100% of the side, anywhere the borders
# put it. Windows at four sides, each at evenly spaced positions 3.75% to 7.5% of the side apart:
# a copy's view then lies close enough to one of them that its descriptor still matches. On real
# films with planted crops (the NIH sample and the Cohen set, 1,857 images, 60 crops), the grid
# of 19 windows (sides 85% and 70%, 3 x 3 positions) made 48 and 53 of 60 crops candidates; this
# one 60 and 59 (docs/performance.md, "Crops among the candidates").
WINDOW_SIDES = (0.925, 0.85, 0.775, 0.7)
WINDOW_POSITIONS = (3, 5, 5, 5)  # per side, along each axis


def _windows() -> list[tuple[float, float, float]]:
    """(side, x, y) fractions: the whole image, then for each of WINDOW_SIDES a square grid of
    positions spread evenly from one border to the other."""
    out = [(1.0, 0.0, 0.0)]
    for side, steps in zip(WINDOW_SIDES, WINDOW_POSITIONS):
        at = [round(float(v), 6) for v in np.linspace(0.0, 1.0 - side, steps)]
        out += [(side, x, y) for x in at for y in at]
    return out


def area_matrix(n_out: int, start: float, length: float, n_in: int) -> np.ndarray:
    """(n_out, n_in) float32: each output cell the mean of the input pixels it covers, by overlap.

    An area average, not a point sample: a window a fraction of a pixel off gives nearly the
    same numbers, which is what lets a copy's view match a window it does not sit on exactly.
    """
    edges = start + np.arange(n_out + 1) * (length / n_out)
    pixels = np.arange(n_in)
    lo, hi = edges[:-1, None], edges[1:, None]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0.0, None)
    return (overlap / np.maximum(overlap.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


WINDOWS = _windows()
DEFAULT_NEIGHBOURS = 2  # per image, the most similar images (by any window) that become candidates ...
DEFAULT_MIN_SIMILARITY = 0.8  # ... when their descriptors are at least this similar (cosine)
_MATRICES = [
    (area_matrix(DESC_SIDE, WORK * x, WORK * w, WORK), area_matrix(DESC_SIDE, WORK * y, WORK * w, WORK))
    for w, x, y in WINDOWS
]


def _dct_matrix(n: int, keep: int) -> np.ndarray:
    """The first `keep` rows of the orthonormal DCT-II matrix of size n (what dctn(norm="ortho") applies)."""
    k, x = np.arange(keep)[:, None], np.arange(n)[None, :]
    mat = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    mat[0] /= np.sqrt(2.0)
    return mat


_DCT = _dct_matrix(DESC_SIDE, DESC_KEEP)
# Each window's descriptor is one linear map of the rank image: DCT(rows @ ranks @ cols.T) = L @ ranks @ R.T
# with L = D @ rows and R = D @ cols, so a batch of images takes two matrix products per window.
_LEFT = np.stack([_DCT @ rows for _, rows in _MATRICES]).astype(np.float32)  # (windows, 8, WORK)
_RIGHT = np.stack([_DCT @ cols for cols, _ in _MATRICES]).astype(np.float32)


def descriptor_batch(images: Sequence[np.ndarray], windows: int = len(WINDOWS)) -> np.ndarray:
    """(n, windows, 64) float32: `descriptors` of several images at once (the same numbers, batched)."""
    if len(images) == 0:
        return np.zeros((0, windows, DESC_KEEP * DESC_KEEP), dtype=np.float32)
    ranks = np.stack([rank_image(np.asarray(img)) for img in images])
    n, k = len(ranks), DESC_KEEP
    # One large product over the columns for every window at once, then one per window over the rows.
    cols = (ranks.reshape(n * WORK, WORK) @ _RIGHT[:windows].reshape(-1, WORK).T).reshape(n, WORK, windows, k)
    out = np.empty((windows, k, n, k), dtype=np.float32)
    for w in range(windows):
        out[w] = (_LEFT[w] @ cols[:, :, w, :].transpose(1, 0, 2).reshape(WORK, n * k)).reshape(k, n, k)
    out = out.transpose(2, 0, 1, 3).reshape(n, windows, k * k)
    out[:, :, 0] = 0.0  # the mean rank is the same for every image
    return np.ascontiguousarray(out, dtype=np.float32)


def descriptors(img: np.ndarray, windows: int = len(WINDOWS)) -> np.ndarray:
    """(windows, 64) float32: a low-frequency descriptor of each of the first `windows` WINDOWS.

    Computed on the contrast-limited rank image (so windowing does not change it): the 8 x 8
    lowest DCT frequencies of the window averaged down to 16 x 16. A copy that shows only part
    of the film matches the original's window that shows the same part.
    """
    return descriptor_batch([img], windows)[0]


def _normalise(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Remove what every chest film shares (the mean descriptor), then scale to unit length."""
    x = x.astype(np.float32) - mean
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def descriptor_pairs(
    windows: Callable[[int, int], np.ndarray],
    n_queries: int,
    base: np.ndarray,
    mean: np.ndarray,
    q_groups: np.ndarray,
    b_groups: np.ndarray,
    same: bool,
    neighbours: int = DEFAULT_NEIGHBOURS,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    memory: int = 1 << 26,
) -> set[tuple[int, int]]:
    """Candidate pairs (query i, base j): for each query image, the `neighbours` whole images of
    `base` most similar to any of its windows (at least `min_similarity`).

    `windows(start, stop)` gives the queries' window descriptors a block at a time, so only the
    base's whole-image descriptors (n x 64) are held. Pairs within one group (e.g. one patient)
    are never candidates; blocks keep the similarity matrix under `memory` bytes.
    """
    found: set[tuple[int, int]] = set()
    if n_queries == 0 or len(base) == 0:
        return found
    q_groups, b_groups = np.asarray(q_groups), np.asarray(b_groups)
    if len(base) > EXACT_LIMIT:
        return _indexed_descriptor_pairs(
            windows, n_queries, base, mean, q_groups, b_groups, same, neighbours, min_similarity
        )
    db = _normalise(base, mean)
    k = min(neighbours, len(db))
    # Blocks of queries x chunks of the base: each product is a large matrix multiply, and a
    # running top-k per query replaces the full row of similarities.
    per_pair = 4 * len(WINDOWS)
    chunk = min(len(db), 4096)
    rows = max(1, min(1024, memory // (per_pair * chunk)))
    for start in range(0, n_queries, rows):
        stop = min(n_queries, start + rows)
        q = _normalise(windows(start, stop), mean)  # (m, windows, 64)
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
        qi, col = np.nonzero(best >= min_similarity)
        for i, j in zip(qi + start, best_j[qi, col]):
            found.add((min(int(i), int(j)), max(int(i), int(j))) if same else (int(i), int(j)))
    return found


def _indexed_descriptor_pairs(
    windows,
    n_queries: int,
    base: np.ndarray,
    mean: np.ndarray,
    q_groups: np.ndarray,
    b_groups: np.ndarray,
    same: bool,
    neighbours: int,
    min_similarity: float,
    block: int = 40_000 // len(WINDOWS),  # query images per block: about 40,000 window vectors
) -> set[tuple[int, int]]:
    """`descriptor_pairs` for a large base, through _Index: every window of a query probes the
    cells nearest to it, and the query keeps the `neighbours` best whole images found in them.

    Holds the base's descriptors once more, normalised, in float16 (128 bytes per image), the
    index's cell lists (8 bytes per image) and one block of queries' windows per thread.
    """
    db = _normalise(base, mean).astype(np.float16)
    with threadpool_limits(limits=1, user_api="blas"):  # small products: BLAS threads would only contend
        index = _Index(db)
        return _search_blocks(
            index, windows, n_queries, mean, q_groups, b_groups, same, neighbours, min_similarity, block
        )


def _search_blocks(index, windows, n_queries, mean, q_groups, b_groups, same, neighbours, min_similarity, block):
    """The body of `_indexed_descriptor_pairs`: blocks of `block` query images through the index.

    Blocks run on a thread per usable core (at most 4): their window descriptors and index
    probes are matrix products and sorts that release the GIL, and BLAS itself runs on one
    thread here. The pairs found do not depend on the order blocks finish in.
    """
    never = lambda q, b: q_groups[q][:, None] == b_groups[b][None, :]  # noqa: E731

    def one(start: int) -> list[tuple[int, int]]:
        stop = min(n_queries, start + block)
        q = _normalise(windows(start, stop), mean)  # (m, windows, 64)
        owner = np.repeat(np.arange(start, stop), q.shape[1])
        qi, bj, sim = index.search(q.reshape(-1, q.shape[-1]), owner, neighbours, never)
        qi, bj, sim = _top_per_query(owner[qi], bj, sim, neighbours)
        keep = sim >= min_similarity
        return [(min(i, j), max(i, j)) if same else (i, j) for i, j in zip(qi[keep].tolist(), bj[keep].tolist())]

    starts = range(0, n_queries, block)
    threads = min(4, usable_cores(), len(starts))
    if threads <= 1:
        return {pair for start in starts for pair in one(start)}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return {pair for found in pool.map(one, starts) for pair in found}


# ---------------------------------------------------------------- the search


IDENTICAL, HASH, ALIGNED = "identical file", "hash", "aligned correlation"


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


def _whole(image: Callable[[int], np.ndarray], n: int, bar, block: int = 512) -> np.ndarray:
    """(n, 64) float16 whole-image descriptors: the only per-image data the search holds."""
    out = np.empty((n, DESC_KEEP * DESC_KEEP), dtype=np.float16)
    for start in range(0, n, block):
        stop = min(n, start + block)
        out[start:stop] = descriptor_batch([image(i) for i in range(start, stop)], 1)[:, 0]
        bar.advance(stop - start)
    return out


def _window_reader(image: Callable[[int], np.ndarray], bar, block: int = 128) -> Callable[[int, int], np.ndarray]:
    def read(start: int, stop: int) -> np.ndarray:
        out = (
            np.concatenate(
                [
                    descriptor_batch([image(i) for i in range(s, min(stop, s + block))])
                    for s in range(start, stop, block)
                ]
            )
            if stop > start
            else descriptor_batch([])
        )
        bar.advance(stop - start)
        return out

    return read


class Candidates(NamedTuple):
    """What the cheap step of the search hands to the confirmation: every pair to check, the
    ones found by fingerprint (checked first as they are), and the parsed fingerprints."""

    pairs: list[tuple[int, int]]
    hashed: set[tuple[int, int]]
    words_a: np.ndarray
    words_b: np.ndarray


def find_candidates(
    fingerprints_a: Sequence[str],
    image_a: Callable[[int], np.ndarray],
    fingerprints_b: Sequence[str] | None = None,
    image_b: Callable[[int], np.ndarray] | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    groups_a: Sequence | None = None,
    groups_b: Sequence | None = None,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> Candidates:
    """The candidate step of `near_duplicates` (its arguments, the same meaning): each image's
    closest fingerprints and its nearest whole images by window descriptor, no pixel compared."""
    same = fingerprints_b is None
    get_b = image_a if same else image_b
    if get_b is None:
        raise ValueError("image_b is needed with fingerprints_b")
    words_a = parse(fingerprints_a)
    words_b = words_a if same else parse(fingerprints_b)
    n_a, n_b = len(words_a), len(words_b)
    # Group codes: images of one group (given or not) are never compared; an image never with itself.
    ga = np.arange(n_a) if groups_a is None else pd.factorize(pd.Series([str(g) for g in groups_a]))[0]
    if same:
        gb = ga
    elif groups_a is not None and groups_b is not None:
        codes = pd.factorize(pd.Series([str(g) for g in list(groups_a) + list(groups_b)]))[0]
        ga, gb = codes[:n_a], codes[n_a:]
    else:
        gb = ga.max(initial=-1) + 1 + np.arange(n_b)
    with progress_bar(2 * (n_a + (0 if same else n_b)), "near-duplicate search", unit="images") as bar:
        whole_a = _whole(image_a, n_a, bar)
        whole_b = whole_a if same else _whole(get_b, n_b, bar)
        both = whole_a if same else np.concatenate([whole_a, whole_b])
        mean = both.astype(np.float32).mean(axis=0) if len(both) else np.zeros(whole_a.shape[1], np.float32)
        candidates = descriptor_pairs(_window_reader(image_a, bar), n_a, whole_b, mean, ga, gb, same, neighbours)
        if not same:  # b's windows against a's whole images too: either copy may be the cropped one
            candidates |= {
                (i, j)
                for j, i in descriptor_pairs(_window_reader(get_b, bar), n_b, whole_a, mean, gb, ga, False, neighbours)
            }
    del whole_a, whole_b, both
    skip = lambda rows, cols: ga[rows][:, None] == gb[cols][None, :]  # noqa: E731
    hashed = {
        (i, j) for i, j, _ in candidate_pairs(fingerprints_a, fingerprints_b, max_distance, limit=neighbours, skip=skip)
    }
    return Candidates(sorted(candidates | hashed), hashed, words_a, words_b)


def near_duplicates(
    fingerprints_a: Sequence[str],
    image_a: Callable[[int], np.ndarray],
    fingerprints_b: Sequence[str] | None = None,
    image_b: Callable[[int], np.ndarray] | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_score: float = DEFAULT_MIN_SCORE,
    groups_a: Sequence | None = None,
    groups_b: Sequence | None = None,
    neighbours: int = DEFAULT_NEIGHBOURS,
    batch: int = 64,
) -> list[Pair]:
    """Near-duplicate pairs: cheap candidates, each confirmed on its aligned pixels.

    Candidates (`find_candidates`) are pairs with close fingerprints (<= max_distance bits) and
    each image's nearest neighbours by window descriptors (crop-robust). A fingerprint candidate
    whose pixels already correlate as they are (score >= min_score) is a "hash" match; every
    other candidate is aligned (align.py) and kept when the aligned score reaches min_score.

    `image_a(i)` / `image_b(j)` return an image (e.g. a row of a cache's memmap): each is read
    once for its descriptors and again only while a batch of candidates that holds it is
    confirmed, so memory stays bounded (descriptors: 128 bytes per image). Images of 128 px or
    more give the confirmation its full detail. Pairs within one of `groups_a` / `groups_b`
    (e.g. one patient) are not searched.
    """
    found = find_candidates(
        fingerprints_a, image_a, fingerprints_b, image_b, max_distance, groups_a, groups_b, neighbours
    )
    same = fingerprints_b is None
    return confirm(
        found.pairs, found.hashed, image_a, None if same else image_b, found.words_a, found.words_b, min_score, batch
    )


def confirm(
    todo: list[tuple[int, int]],
    hashed: set,
    image_a: Callable[[int], np.ndarray],
    image_b: Callable[[int], np.ndarray] | None,
    words_a: np.ndarray,
    words_b: np.ndarray,
    min_score: float = DEFAULT_MIN_SCORE,
    batch: int = 64,
    threads: int | None = None,
) -> list[Pair]:
    """Confirm candidate pairs on their pixels, a batch at a time (see `near_duplicates`).

    image_b None: the pairs are within image_a's set. Only the images of `threads` batches are
    held at once. Batches run on `threads` threads (default: the CPUs this process may use, at
    most 4): the work is FFTs and matrix products, which release the GIL. Each product is small,
    so BLAS runs single-threaded meanwhile: its own threads would only contend with these (on
    a busy 2-core machine they made the confirmation 1.6x slower). The result depends on neither.
    """
    same = image_b is None
    get_b = image_a if same else image_b

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

        dist = [int(_popcount(words_a[i] ^ words_b[j]).sum()) for i, j in chunk]
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
            for chunk, found in zip(chunks, results):
                confirmed.extend(found)
                bar.advance(len(chunk))
        finally:
            if threads > 1 and len(chunks) > 1:
                pool.shutdown(cancel_futures=True)
    return sorted(confirmed)
