"""The perceptual hash of a cached image, and each image's closest hashes.

Every cached image gets a 256-bit perceptual hash (pHash: the signs of the 16x16 lowest DCT
frequencies of a 64x64 area downsample against their median), written as 64 hex digits in
index.csv (`fingerprint`). A re-encoded, resized or re-windowed copy stays within a few bits of
its original; a crop does not (descriptors.py covers crops). `candidate_pairs` lists each
image's closest fingerprints within `max_distance` bits: a blocked all-pairs popcount for a
small base, the inverted-file index (index.py) for a large one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy.fft import dctn
from threadpoolctl import threadpool_limits

from .index import Index, IndexSettings, Skip, top_per_query

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


@functools.cache
def _byte_counts() -> np.ndarray:
    """The set bits of each byte value (for numpy < 2.0, which has no bitwise_count)."""
    return np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """The set bits of each uint64 word of x."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape((*x.shape, 8))
    return _byte_counts()[as_bytes].sum(axis=-1, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Hamming distance between two parsed fingerprints (rows of `parse`), 0..256."""
    return int(popcount(a ^ b).sum())


def distance(a: str, b: str) -> int:
    """Hamming distance between two hex fingerprints (0..256)."""
    pa, pb = parse([a, b])
    return int(popcount(pa ^ pb).sum())


def candidate_pairs(
    a: Sequence[str],
    b: Sequence[str] | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    limit: int | None = None,
    skip: Skip | None = None,
    index: IndexSettings | None = None,
    block: int = 128,
) -> list[tuple[int, int, int]]:
    """Pairs (i, j, distance) with hash distance <= max_distance.

    With one set, pairs i < j within it; with two, i indexes `a` and j indexes `b`. With `limit`,
    each i keeps only its `limit` closest j (with one set: each image keeps its `limit` closest
    others, before or after it in the list, and a pair is listed once), so look-alike sets cannot make
    the list grow with the square of their size; `skip(rows, cols)` marks (with a boolean matrix)
    pairs never to list, e.g. one patient. Up to `index.exact_limit` images in `b`: a blocked
    all-pairs popcount; beyond, with `limit`, the inverted-file index (`_indexed_pairs`).
    """
    index = index or IndexSettings()
    fa = parse(a)
    same = b is None
    fb = fa if same else parse(b)
    pairs: list[tuple[int, int, int]] = []
    if len(fa) == 0 or len(fb) == 0:
        return pairs
    if limit is not None and len(fb) > index.exact_limit:
        return _indexed_pairs(fa, fb, same, max_distance, limit, skip, index)
    for start in range(0, len(fa), block):
        rows = fa[start : start + block]
        d = np.zeros((len(rows), len(fb)), dtype=np.uint16)
        for w in range(WORDS):
            d += popcount(rows[:, None, w] ^ fb[None, :, w])
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


def signs(words: np.ndarray) -> np.ndarray:
    """(n, 256) int8 of +-1: the fingerprint's bits as a vector (dot product = 256 - 2 x distance)."""
    bits = np.unpackbits(words.astype(">u8").view(np.uint8).reshape(len(words), -1), axis=1)
    return bits.astype(np.int8) * 2 - 1


def _indexed_pairs(fa, fb, same: bool, max_distance: int, limit: int, skip, settings: IndexSettings, block: int = 4096):
    """`candidate_pairs` for a large base: each image's `limit` closest fingerprints, through the index.

    Bits as +-1 vectors make the Hamming distance a cosine (1 - 2 d / 256). With one set, every
    image's closest are kept and each pair is listed once (i < j).
    """
    with threadpool_limits(limits=1, user_api="blas"):  # small products: BLAS threads would only contend
        bits = 8 * fa.shape[1] * 8
        index = Index(signs(fb), settings, scale=1 / np.sqrt(bits))
        never = _never(same, skip)
        found: dict[tuple[int, int], int] = {}
        for start in range(0, len(fa), block):
            q = signs(fa[start : start + block]).astype(np.float32) / np.float32(np.sqrt(bits))
            ids = np.arange(start, start + len(q))
            qi, bj, sim = index.search(q, ids, limit, never)
            qi, bj, sim = top_per_query(ids[qi], bj, sim, limit)
            dist = np.rint((1 - sim) * bits / 2).astype(int)
            for i, j, d in zip(qi.tolist(), bj.tolist(), dist.tolist()):
                if d <= max_distance:
                    found[(min(i, j), max(i, j)) if same else (i, j)] = d
    return [(i, j, d) for (i, j), d in sorted(found.items())]


def _never(same: bool, skip: Skip | None) -> Skip:
    """The pairs the index never returns: an image with itself (one set), and what `skip` marks."""
    if same and skip is not None:
        return lambda q, b: (q[:, None] == b[None, :]) | skip(q, b)
    if same:
        return lambda q, b: q[:, None] == b[None, :]
    return skip or (lambda q, b: np.zeros((len(q), len(b)), bool))
