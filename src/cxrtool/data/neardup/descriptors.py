"""Crop-robust window descriptors: the low frequencies of an image's whole view and of 84 windows.

A hash does not survive a crop, and it also pairs look-alike films of different patients. So each
image is also described by the low frequencies of its whole view and of windows of 92.5% to 70%
of its side (`window_grid`), on a rank image that windowing does not change (align.rank_image):
a copy that shows only part of the film matches the original's window that shows the same part.
neighbours.py finds, for each image, the whole images most similar to one of its windows.

The matrices that make a batch of descriptors two matrix products per window are built on first
use and kept (`window_matrices`, `_projections`), not at import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from .align import WORK, rank_image

DESC_SIDE = 16  # a window is averaged down to 16 x 16 ...
DESC_KEEP = 8  # ... and described by its 8 x 8 lowest DCT frequencies (64 numbers, DC zeroed)
# A crop of up to 15% per border leaves a view of 70% to 100% of the side, anywhere the borders
# put it. Windows at four sides, each at evenly spaced positions 3.75% to 7.5% of the side apart:
# a copy's view then lies close enough to one of them that its descriptor still matches (how this
# grid was chosen over coarser and finer ones: docs/performance.md, "Crops among the candidates").
WINDOW_SIDES = (0.925, 0.85, 0.775, 0.7)
WINDOW_POSITIONS = (3, 5, 5, 5)  # per side, along each axis


@functools.cache
def window_grid() -> tuple[tuple[float, float, float], ...]:
    """(side, x, y) fractions: the whole image, then for each of WINDOW_SIDES a square grid of
    positions spread evenly from one border to the other."""
    out = [(1.0, 0.0, 0.0)]
    for side, steps in zip(WINDOW_SIDES, WINDOW_POSITIONS):
        at = [round(float(v), 6) for v in np.linspace(0.0, 1.0 - side, steps)]
        out += [(side, x, y) for x in at for y in at]
    return tuple(out)


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


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared by every caller of a cached function
    return a


@functools.cache
def window_matrices() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per window of `window_grid`: (columns, rows) area matrices, each (DESC_SIDE, WORK)."""
    return tuple(
        (
            _read_only(area_matrix(DESC_SIDE, WORK * x, WORK * w, WORK)),
            _read_only(area_matrix(DESC_SIDE, WORK * y, WORK * w, WORK)),
        )
        for w, x, y in window_grid()
    )


def dct_matrix(n: int, keep: int) -> np.ndarray:
    """The first `keep` rows of the orthonormal DCT-II matrix of size n (what dctn(norm="ortho") applies)."""
    k, x = np.arange(keep)[:, None], np.arange(n)[None, :]
    mat = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    mat[0] /= np.sqrt(2.0)
    return mat


@functools.cache
def _projections() -> tuple[np.ndarray, np.ndarray]:
    """(left, right), each (windows, DESC_KEEP, WORK) float32.

    Each window's descriptor is one linear map of the rank image: DCT(rows @ ranks @ cols.T) =
    L @ ranks @ R.T with L = D @ rows and R = D @ cols, so a batch of images takes two matrix
    products per window.
    """
    dct = dct_matrix(DESC_SIDE, DESC_KEEP)
    left = np.stack([dct @ rows for _, rows in window_matrices()]).astype(np.float32)
    right = np.stack([dct @ cols for cols, _ in window_matrices()]).astype(np.float32)
    return _read_only(left), _read_only(right)


def descriptor_batch(images: Sequence[np.ndarray], windows: int | None = None) -> np.ndarray:
    """(n, windows, 64) float32: `descriptors` of several images at once (the same numbers, batched).

    windows: the first this many of `window_grid` (default: all of them).
    """
    if windows is None:
        windows = len(window_grid())
    if len(images) == 0:
        return np.zeros((0, windows, DESC_KEEP * DESC_KEEP), dtype=np.float32)
    left, right = _projections()
    ranks = np.stack([rank_image(np.asarray(img)) for img in images])
    n, k = len(ranks), DESC_KEEP
    # One large product over the columns for every window at once, then one per window over the rows.
    cols = (ranks.reshape(n * WORK, WORK) @ right[:windows].reshape(-1, WORK).T).reshape(n, WORK, windows, k)
    out = np.empty((windows, k, n, k), dtype=np.float32)
    for w in range(windows):
        out[w] = (left[w] @ cols[:, :, w, :].transpose(1, 0, 2).reshape(WORK, n * k)).reshape(k, n, k)
    out = out.transpose(2, 0, 1, 3).reshape(n, windows, k * k)
    out[:, :, 0] = 0.0  # the mean rank is the same for every image
    return np.ascontiguousarray(out, dtype=np.float32)


def descriptors(img: np.ndarray, windows: int | None = None) -> np.ndarray:
    """(windows, 64) float32: a low-frequency descriptor of each of the first `windows` windows.

    Computed on the contrast-limited rank image (so windowing does not change it): the 8 x 8
    lowest DCT frequencies of the window averaged down to 16 x 16. A copy that shows only part
    of the film matches the original's window that shows the same part.
    """
    return descriptor_batch([img], windows)[0]


def normalise(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Remove what every chest film shares (the mean descriptor), then scale to unit length."""
    x = x.astype(np.float32) - mean
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def whole_descriptors(image: Callable[[int], np.ndarray], n: int, bar, block: int = 512) -> np.ndarray:
    """(n, 64) float16 whole-image descriptors: the only per-image data the search holds."""
    out = np.empty((n, DESC_KEEP * DESC_KEEP), dtype=np.float16)
    for start in range(0, n, block):
        stop = min(n, start + block)
        out[start:stop] = descriptor_batch([image(i) for i in range(start, stop)], 1)[:, 0]
        bar.advance(stop - start)
    return out


def window_reader(image: Callable[[int], np.ndarray], bar, block: int = 128) -> Callable[[int, int], np.ndarray]:
    """`read(start, stop)`: the window descriptors of images start..stop-1, made `block` at a time
    (they are recomputed where needed instead of held: 85 x 64 numbers per image)."""

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
