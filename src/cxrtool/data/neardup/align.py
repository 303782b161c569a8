"""Confirming a near-duplicate candidate: align the two images, then correlate the aligned pixels.

Two copies of one radiograph may differ by a crop (a border of up to ~15% of a side), a rescale,
a re-windowing (gamma, contrast, brightness) and a re-encoding. Each image is therefore turned
into work images that none of those changes alter much: an area downsample, rank-normalised by a
contrast-limited equalisation (a monotone intensity map, i.e. a re-windowing, leaves ranks
unchanged) and band-passed (the difference of two blurs). The search runs at 64 px: the central
80% of one image, rescaled to each of `SCALES` (70-100% of the other's side), is slid over the
other (normalised cross-correlation by FFT, every position), both ways. Pairs that align at all
there (`COARSE_GATE`) are refined at 128 px in a finer band, at nearby scales and positions, and
the best correlation there is the pair's score, with the scale and offset it was found at. A
pair that falls just short of the threshold is tried once more with its template one pixel
smaller and larger (`_polish`): the sides the refinement's scales step over.

Chest films share their layout, so the fine band decides: two patients' films agree on the
coarse shape, not on rib edges, vessels and noise. Measured (docs/prepare.md): generated copies
with each change alone score 0.92 or more, distinct look-alike generated chests 0.74 or less;
at 64 px alone the two overlap, hence the 128 px score. Work is batched over pairs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import fft as sfft
from scipy.ndimage import correlate1d, gaussian_filter1d

WORK = 64  # side of the work image the search runs on
FINE = 128  # side of the image the alignment is refined and scored on
CORE = 0.8  # the central part of one image that is searched for in the other
SCALES = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)  # b's side as a fraction of a's, in steps of 0.05
DEFAULT_MIN_SCORE = 0.85
COARSE_GATE = 0.6
_COARSE_BAND = (0.6, 3.0)  # blur sigmas (pixels) whose difference is the band compared
_FINE_BAND = (0.6, 1.5)
_FINE_STEPS = (-0.5, -0.25, 0.0, 0.25, 0.5)  # in coarse scale steps
# A refined pair that scores from POLISH_FROM up to the threshold is tried again with its template
# one pixel smaller and one larger. The template's side is what a scale sets (rounded to whole
# pixels); the refinement's scales are 1.28 px of template apart at 128 px, so one side in four
# is never tried, and a copy at that side loses its fine band's agreement. Look-alikes seldom
# score this high, so few other pairs pay for it (the figures: docs/performance.md, "Near misses").
POLISH_FROM = 0.7
_RANK_CAP = 1 / 64


@dataclass(frozen=True)
class Match:
    """How image b sits in image a: b's side is `scale` of a's, its top-left at (x, y) of a's side."""

    score: float
    scale: float
    x: float
    y: float


def _rank(small: np.ndarray) -> np.ndarray:
    """Contrast-limited equalisation: each pixel's mid-rank in [0, 1], each grey level's share
    capped at `_RANK_CAP` of the pixels.

    Ranks do not change under any monotone intensity map (a re-windowing); the cap keeps a flat
    region (a black border, a saturated area) from spreading its noise over a wide range.
    """
    hist = np.bincount(small.ravel(), minlength=256).astype(np.float64)
    hist = np.minimum(hist, _RANK_CAP * small.size)
    cdf = np.cumsum(hist)
    mid = (cdf - hist / 2) / max(1.0, cdf[-1])
    return mid[small].astype(np.float32)


def _small(img: np.ndarray, side: int) -> np.ndarray:
    arr = np.ascontiguousarray(img, dtype=np.uint8)
    if arr.shape != (side, side):
        method = Image.Resampling.BOX if min(arr.shape) >= side else Image.Resampling.BILINEAR
        arr = np.asarray(Image.fromarray(arr, mode="L").resize((side, side), method), dtype=np.uint8)
    return arr


def rank_image(img: np.ndarray, side: int = WORK) -> np.ndarray:
    """The side x side contrast-limited rank image (float32 in [0, 1])."""
    return _rank(_small(img, side))


@functools.cache
def _kernel(sigma: float) -> np.ndarray:
    """The weights `gaussian_filter` uses for sigma (truncated at 4 sigma), made once.

    Read off the filter's response to a unit impulse: each weight times 1 plus zeros, exactly.
    """
    impulse = np.zeros(2 * int(4.0 * sigma + 0.5) + 1)
    impulse[len(impulse) // 2] = 1.0
    return gaussian_filter1d(impulse, sigma, mode="constant")[::-1].copy()


def _blur(stack: np.ndarray, sigma: float) -> np.ndarray:
    """`gaussian_filter(image, sigma)` of each image of an (n, side, side) float32 stack, at once.

    The same passes (rows, then columns, in float32, reflected edges) as `gaussian_filter`, so
    the same numbers; one call per stack instead of two per image, and the kernel made once.
    """
    out = np.empty_like(stack)
    correlate1d(stack, _kernel(sigma), 1, out, "reflect", 0.0, 0)
    correlate1d(out, _kernel(sigma), 2, out, "reflect", 0.0, 0)
    return out


def _bands(images, side: int, band: tuple[float, float]) -> np.ndarray:
    ranks = np.array([rank_image(img, side) for img in images], dtype=np.float32).reshape(-1, side, side)
    return _blur(ranks, band[0]) - _blur(ranks, band[1])


def work_image(img: np.ndarray) -> np.ndarray:
    """The WORK x WORK rank-normalised, band-passed image the alignment search runs on (float32)."""
    return _bands([img], WORK, _COARSE_BAND)[0]


def fine_image(img: np.ndarray) -> np.ndarray:
    """The FINE x FINE image, in a finer band, that refines the alignment and gives the score."""
    return _bands([img], FINE, _FINE_BAND)[0]


def work_images(images) -> np.ndarray:
    """(n, WORK, WORK): `work_image` of each image, made together."""
    return _bands(images, WORK, _COARSE_BAND)


def fine_images(images) -> np.ndarray:
    """(n, FINE, FINE): `fine_image` of each image, made together."""
    return _bands(images, FINE, _FINE_BAND)


def resample_matrix(n_out: int, start: float, length: float, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation matrix sampling the window [start, start + length)."""
    pos = start + (np.arange(n_out) + 0.5) * length / n_out - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    frac = np.clip(pos - np.floor(pos), 0.0, 1.0)
    mat = np.zeros((n_out, n_in), dtype=np.float32)
    mat[np.arange(n_out), lo] += 1 - frac
    mat[np.arange(n_out), hi] += frac
    return mat


_CORE_START = (1 - CORE) / 2  # as a fraction of the side


def _template_matrix(side: int, scale: float) -> np.ndarray:
    """Resampling of an image's core to its size in the other image when it covers `scale` of it."""
    return resample_matrix(round(CORE * side * scale), _CORE_START * side, CORE * side, side)


def _integral(x: np.ndarray) -> np.ndarray:
    c = np.zeros((*x.shape[:-2], x.shape[-2] + 1, x.shape[-1] + 1), dtype=np.float64)
    c[..., 1:, 1:] = x.astype(np.float64).cumsum(-2).cumsum(-1)
    return c


def _box(c: np.ndarray, m: int) -> np.ndarray:
    """Sums over every m x m window, from an integral image -> (.., n-m+1, n-m+1)."""
    return c[..., m:, m:] - c[..., :-m, m:] - c[..., m:, :-m] + c[..., :-m, :-m]


def _ncc(fb, c1, c2, small: np.ndarray, mat: np.ndarray, side: int, window=None) -> np.ndarray:
    """NCC of small's resampled core at every position in big (given big's FFT and integrals).

    window (rows, cols: (n, w) positions, -1 where off the image): the NCC at just those
    positions, (n, w, w), -2 off the image. The refinement looks at a few positions around a
    predicted one, so normalising every position would be mostly wasted.
    """
    m = mat.shape[0]
    n, side_s = small.shape[0], small.shape[-1]
    half = (small.reshape(n * side_s, side_s) @ mat.T).reshape(n, side_s, m)  # two plain GEMMs
    # mat @ small[k] @ mat.T for every pair as one large product (a batched matmul would not use BLAS)
    t = (half.transpose(0, 2, 1).reshape(n * m, side_s) @ mat.T).reshape(n, m, m).transpose(0, 2, 1)
    t -= t.mean(axis=(1, 2), keepdims=True)
    t /= np.maximum(np.sqrt((t * t).sum(axis=(1, 2), keepdims=True)), 1e-9)
    ft = sfft.rfft2(t, s=(side, side))
    corr = sfft.irfft2(fb * np.conj(ft), s=(side, side))[:, : side - m + 1, : side - m + 1]
    if window is None:
        s1, s2 = _box(c1, m), _box(c2, m)
        return corr / np.sqrt(np.maximum(s2 - s1 * s1 / (m * m), 1e-6))
    rows, cols = window
    on = (rows >= 0)[:, :, None] & (cols >= 0)[:, None, :]
    k, r, c = np.arange(n)[:, None, None], np.maximum(rows, 0)[:, :, None], np.maximum(cols, 0)[:, None, :]
    # The box sums of `_box`, at these positions only, in the same order of operations.
    s1 = c1[k, r + m, c + m] - c1[k, r, c + m] - c1[k, r + m, c] + c1[k, r, c]
    s2 = c2[k, r + m, c + m] - c2[k, r, c + m] - c2[k, r + m, c] + c2[k, r, c]
    return np.where(on, corr[k, r, c] / np.sqrt(np.maximum(s2 - s1 * s1 / (m * m), 1e-6)), -2.0)


def _search(big: np.ndarray, small: np.ndarray, scales, centre=None, radius: int = 0):
    """Best NCC of small's rescaled core in big, per pair: (score, scale, row, col) arrays.

    `scales` is one list for all pairs, or one list per pair (then `centre` (rows, cols, per
    pair and scale) limits the search to `radius` pixels around a predicted position).
    """
    n, side = len(big), big.shape[-1]
    fb = sfft.rfft2(big.astype(np.float32))
    c1, c2 = _integral(big), _integral(big * big)
    best = np.full(n, -2.0)
    best_s, best_r, best_c = np.ones(n), np.zeros(n), np.zeros(n)
    per_pair = np.ndim(scales) == 2
    columns = np.asarray(scales).shape[-1]
    steps = np.arange(-radius, radius + 1)
    for q in range(columns):
        groups = (
            [(np.arange(n), float(scales[q]))]
            if not per_pair
            else [
                (np.flatnonzero(np.asarray(scales)[:, q] == s), float(s)) for s in np.unique(np.asarray(scales)[:, q])
            ]
        )
        for rows, s in groups:
            mat = _template_matrix(side, s)
            # With one list of scales every pair is in the group: no copies of the arrays then.
            these = (fb, c1, c2, small) if not per_pair else (fb[rows], c1[rows], c2[rows], small[rows])
            if centre is None:
                ncc = _ncc(*these, mat, side)
                flat = ncc.reshape(len(rows), -1)
                k = flat.argmax(axis=1)
                r_at, c_at = k // ncc.shape[2], k % ncc.shape[2]
            else:
                # The positions within `radius` of the (clipped) prediction that lie on the image,
                # in row-major order, so that the first best is the one a full scan would find.
                last = side - mat.shape[0]
                r0 = np.clip(np.round(centre[0][rows, q]).astype(int), 0, last)
                c0 = np.clip(np.round(centre[1][rows, q]).astype(int), 0, last)
                rr, cc = r0[:, None] + steps[None, :], c0[:, None] + steps[None, :]
                rr, cc = np.where((rr >= 0) & (rr <= last), rr, -1), np.where((cc >= 0) & (cc <= last), cc, -1)
                ncc = _ncc(*these, mat, side, (rr, cc))
                flat = ncc.reshape(len(rows), -1)
                k = flat.argmax(axis=1)
                r_at = rr[np.arange(len(rows)), k // len(steps)]
                c_at = cc[np.arange(len(rows)), k % len(steps)]
            score = flat[np.arange(len(rows)), k]
            better = score > best[rows]
            upd = rows[better]
            best[upd], best_s[upd] = score[better], s
            best_r[upd], best_c[upd] = r_at[better], c_at[better]
    return best, best_s, best_r, best_c


def _search_near(big, small, found, side_found: int, scales: np.ndarray, radius: int):
    """`_search` at per-pair `scales`, within `radius` pixels of where `found` (a (score, scale,
    row, col) at side `side_found`) puts each pair: the small image's top-left stays where it
    was found, and the template's moves with the scale."""
    _, s, r, c = found
    side = big.shape[-1]
    start = _CORE_START * scales
    rows = (r[:, None] / side_found - _CORE_START * s[:, None] + start) * side
    cols = (c[:, None] / side_found - _CORE_START * s[:, None] + start) * side
    return _search(big, small, scales, (rows, cols), radius)


def _refine(big_c, big_f, small_f, found):
    """Refine a coarse (score, scale, row, col) at the fine side: nearby scales, nearby positions."""
    side_c, side_f = big_c.shape[-1], big_f.shape[-1]
    steps = np.array(_FINE_STEPS) * (SCALES[1] - SCALES[0])
    fine_scales = np.round(found[1][:, None] + steps[None, :], 4)
    return _search_near(big_f, small_f, found, side_c, fine_scales, int(np.ceil(side_f / side_c)) + 1)


def _polish(big_f, small_f, found):
    """A refined (score, scale, row, col) at the fine side, tried with the template one pixel
    smaller and one larger, around the same position; the better of the two is kept."""
    side = big_f.shape[-1]
    core = CORE * side
    scales = (np.round(core * found[1])[:, None] + np.array([-1.0, 1.0])[None, :]) / core
    new = _search_near(big_f, small_f, found, side, scales, 1)
    better = new[0] > found[0]
    return tuple(np.where(better, n, o) for n, o in zip(new, found))


def align_pairs(
    a: np.ndarray,
    b: np.ndarray,
    a_fine: np.ndarray | None = None,
    b_fine: np.ndarray | None = None,
    fine: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    threshold: float = DEFAULT_MIN_SCORE,
) -> list[Match]:
    """Align each pair (a[k], b[k]) of work images both ways and return its best `Match`.

    a, b: coarse work images (WORK side) for the search over every scale and position, both
    ways; a_fine, b_fine (optional, a larger side, `fine_image`): finer work images on which the
    better way's alignment is refined and the score taken, so that fine detail decides, not the
    layout every chest film shares. Instead of them, `fine(rows)` may return (a_fine, b_fine) of
    just the pairs `rows` that pass the coarse gate, so that no other pair's are made. A refined
    pair scoring from POLISH_FROM up to `threshold` (the score a copy needs) is tried again at
    scales between the refinement's (`_polish`); a pair at or over it keeps its match as found.
    """
    a = np.asarray(a, dtype=np.float32).reshape(-1, WORK, WORK)
    b = np.asarray(b, dtype=np.float32).reshape(-1, WORK, WORK)
    n = len(a)
    if n == 0:
        return []
    ab = _search(a, b, SCALES)  # b's core found in a: b is (about) a's crop at scale s
    ba = _search(b, a, SCALES)
    use_ab = ab[0] >= ba[0]
    score, s, r, c = (np.where(use_ab, x, y) for x, y in zip(ab, ba))
    side = np.full(n, WORK)
    # Only pairs that align at all at the coarse side are refined: the refinement costs most,
    # and a pair under COARSE_GATE there is no copy (copies score 0.85 or more at 64 px).
    refine = fine is not None or (a_fine is not None and b_fine is not None)
    go = np.flatnonzero(score >= COARSE_GATE) if refine else np.array([], int)
    if len(go):
        fa, fb = fine(go) if fine is not None else (a_fine[go], b_fine[go])
        fa, fb = np.asarray(fa, dtype=np.float32), np.asarray(fb, dtype=np.float32)
        pick = use_ab[go][:, None, None]
        big_c = np.where(pick, a[go], b[go])
        big_f = np.where(pick, fa, fb)
        small_f = np.where(pick, fb, fa)
        score[go], s[go], r[go], c[go] = _refine(big_c, big_f, small_f, (score[go], s[go], r[go], c[go]))
        near = np.flatnonzero((score[go] >= POLISH_FROM) & (score[go] < threshold))
        if len(near):
            at = go[near]
            score[at], s[at], r[at], c[at] = _polish(big_f[near], small_f[near], (score[at], s[at], r[at], c[at]))
        side[go] = big_f.shape[-1]
    # The small image's top-left sits at (template top-left) - core start * s, in big's units.
    x, y = c / side - _CORE_START * s, r / side - _CORE_START * s
    out = []
    for k in range(n):
        if use_ab[k]:
            out.append(Match(float(score[k]), float(s[k]), float(x[k]), float(y[k])))
        else:  # a sits in b at scale s, offset (x, y): so b sits in a at 1/s, offset -(x, y)/s
            out.append(Match(float(score[k]), float(1.0 / s[k]), float(-x[k] / s[k]), float(-y[k] / s[k])))
    return out


def identity_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of work images as they are (no search): the check for hash candidates."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return (a * b).sum(axis=1) / np.maximum(den, 1e-12)
