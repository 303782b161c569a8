"""Perceptual fingerprints of cached images, and the search for near-duplicate radiographs.

Public X-ray collections hold the same radiograph more than once: under two patient ids, as a
re-encoded JPEG, at another size, a little brighter. A byte hash misses all of these, so every
cached image gets a 256-bit perceptual hash (pHash: the signs of the 16x16 lowest DCT frequencies
of a 64x64 area downsample against their median, the brightness term left out), written as 64 hex
digits in index.csv. It survives re-encoding, resizing and intensity shifts, and finds candidate
pairs fast (the distance is the Hamming distance, 0..256).

Chest films all share one layout, so low frequencies alone can put two different patients'
images close (generated phantoms especially). Every candidate pair is therefore confirmed on the
pixels: the correlation of the two images' fine detail (the 64x64 downsample minus its blur) must
be at least `DEFAULT_MIN_CORRELATION`. Copies score above 0.98; distinct radiographs, even
lookalike phantoms, below 0.97 (measurements in docs/prepare.md).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.ndimage import gaussian_filter

HASH_SIDE = 64  # the downsample the hash and the confirmation look at
BITS_SIDE = 16  # 16 x 16 DCT coefficients -> 256 bits
FINGERPRINT_HEX = BITS_SIDE * BITS_SIDE // 4
WORDS = BITS_SIDE * BITS_SIDE // 64
DEFAULT_MAX_DISTANCE = 40  # of 256 bits: copies stay under ~16, distinct films are over ~56
DEFAULT_MIN_CORRELATION = 0.98


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
        as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape(x.shape + (8,))
        return _BYTE_COUNTS[as_bytes].sum(axis=-1, dtype=np.uint8)


def distance(a: str, b: str) -> int:
    """Hamming distance between two hex fingerprints (0..256)."""
    pa, pb = parse([a, b])
    return int(_popcount(pa ^ pb).sum())


def candidate_pairs(
    a: Sequence[str], b: Sequence[str] | None = None, max_distance: int = DEFAULT_MAX_DISTANCE, block: int = 128
) -> list[tuple[int, int, int]]:
    """Every pair (i, j, distance) with hash distance <= max_distance, exactly.

    With one set, pairs i < j within it; with two, i indexes `a` and j indexes `b`. A blocked
    all-pairs popcount: 100,000 images take about a minute, and nothing is missed.
    """
    fa = parse(a)
    same = b is None
    fb = fa if same else parse(b)
    pairs: list[tuple[int, int, int]] = []
    if len(fa) == 0 or len(fb) == 0:
        return pairs
    for start in range(0, len(fa), block):
        rows = fa[start : start + block]
        d = np.zeros((len(rows), len(fb)), dtype=np.uint16)
        for w in range(WORDS):
            d += _popcount(rows[:, None, w] ^ fb[None, :, w])
        close_i, close_j = np.nonzero(d <= max_distance)
        for i, j in zip(close_i, close_j):
            if same and j <= i + start:
                continue
            pairs.append((int(i + start), int(j), int(d[i, j])))
    return pairs


def detail(img: np.ndarray, side: int = HASH_SIDE) -> np.ndarray:
    """Unit-norm fine detail of an image (a side x side downsample minus its blur), for confirmation."""
    small = _downsample(img, side)
    residual = small - gaussian_filter(small, 2.0 * side / HASH_SIDE)
    residual -= residual.mean()
    norm = np.linalg.norm(residual)
    return (residual / norm if norm > 0 else residual).ravel()


def near_duplicates(
    fingerprints_a: Sequence[str],
    image_a: Callable[[int], np.ndarray],
    fingerprints_b: Sequence[str] | None = None,
    image_b: Callable[[int], np.ndarray] | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    side: int = HASH_SIDE,
) -> list[tuple[int, int, int]]:
    """Near-duplicate pairs (i, j, distance): close hashes, confirmed on the pixels.

    `image_a(i)` / `image_b(j)` return an image (e.g. a row of a cache's memmap); only images in
    candidate pairs are read. `side` should not exceed the smaller image side (caches of
    different sizes are compared at the smaller one).
    """
    same = fingerprints_b is None
    candidates = candidate_pairs(fingerprints_a, fingerprints_b, max_distance)
    get_b = image_a if same else image_b
    if get_b is None:
        raise ValueError("image_b is needed with fingerprints_b")
    seen_a: dict[int, np.ndarray] = {}
    seen_b: dict[int, np.ndarray] = seen_a if same else {}
    confirmed = []
    for i, j, dist in candidates:
        if i not in seen_a:
            seen_a[i] = detail(np.asarray(image_a(i)), side)
        if j not in seen_b:
            seen_b[j] = detail(np.asarray(get_b(j)), side)
        if float(seen_a[i] @ seen_b[j]) >= min_correlation:
            confirmed.append((i, j, dist))
    return confirmed
