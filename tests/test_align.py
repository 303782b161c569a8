"""The confirmation's shortcuts give the numbers of the plain computation they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft as sfft
from scipy.ndimage import gaussian_filter

from cxrtool.data.imageio import preprocess
from cxrtool.data.neardup import align as A
from cxrtool.data.sources.synthetic import SyntheticConfig, generate_arrays


@pytest.fixture(scope="module")
def films():
    images, _, _ = generate_arrays(SyntheticConfig(n_patients=8, size=256, seed=5, max_followups=1))
    cached = [preprocess(im, 128)[0] for im in images]
    h, w = images[0].shape
    crop = preprocess(images[0][int(0.1 * h) : h - int(0.05 * h), int(0.12 * w) :], 128)[0]
    gamma = preprocess((255 * (images[1] / 255.0) ** 1.5).astype(np.uint8), 128)[0]
    # Copies (a crop, a re-windowing) and look-alikes (other patients), and an odd-sized image.
    return [*cached, crop, gamma, images[2][:200, :180]]


def test_batched_work_images_are_the_filtered_rank_images(films):
    for side, band, batched in ((A.WORK, A._COARSE_BAND, A.work_images), (A.FINE, A._FINE_BAND, A.fine_images)):
        plain = [
            gaussian_filter(A.rank_image(im, side), band[0]) - gaussian_filter(A.rank_image(im, side), band[1])
            for im in films
        ]
        assert np.array_equal(batched(films), np.array(plain))
    assert np.array_equal(A.work_image(films[0]), A.work_images(films[:1])[0])
    assert np.array_equal(A.fine_image(films[0]), A.fine_images(films[:1])[0])


def _full_scan_search(big, small, scales, centre, radius):
    """The refinement as a scan of every position, the ones outside the window set to -2."""
    n, side = len(big), big.shape[-1]
    fb = sfft.rfft2(big.astype(np.float32))
    c1, c2 = A._integral(big), A._integral(big * big)
    best = np.full(n, -2.0)
    out = np.zeros((n, 3))
    for k in range(n):
        for q in range(scales.shape[1]):
            mat = A._template_matrix(side, float(scales[k, q]))
            ncc = A._ncc(fb[k : k + 1], c1[k : k + 1], c2[k : k + 1], small[k : k + 1], mat, side)[0]
            r0 = np.clip(np.round(centre[0][k, q]).astype(int), 0, ncc.shape[0] - 1)
            c0 = np.clip(np.round(centre[1][k, q]).astype(int), 0, ncc.shape[1] - 1)
            rr, cc = np.arange(ncc.shape[0]), np.arange(ncc.shape[1])
            keep = (np.abs(rr[:, None] - r0) <= radius) & (np.abs(cc[None, :] - c0) <= radius)
            ncc = np.where(keep, ncc, -2.0)
            at = ncc.argmax()
            if ncc.flat[at] > best[k]:
                best[k] = ncc.flat[at]
                out[k] = scales[k, q], at // ncc.shape[1], at % ncc.shape[1]
    return best, out


def test_the_windowed_refinement_finds_what_a_full_scan_finds(films):
    i, j = np.triu_indices(len(films), 1)
    coarse, fine = A.work_images(films), A.fine_images(films)
    found = A._search(coarse[i], coarse[j], A.SCALES)
    steps = np.array(A._FINE_STEPS) * (A.SCALES[1] - A.SCALES[0])
    scales = np.round(found[1][:, None] + steps[None, :], 4)
    # Predicted positions near and beyond the edges too, so the window is clipped there.
    rng = np.random.default_rng(0)
    centre = (rng.uniform(-4, 60, scales.shape), rng.uniform(-4, 60, scales.shape))
    score, s, r, c = A._search(fine[i], fine[j], scales, centre, 3)
    want, where = _full_scan_search(fine[i], fine[j], scales, centre, 3)
    # Pair by pair, the products and FFTs round differently in the last float32 bit.
    np.testing.assert_allclose(score, want, rtol=0, atol=1e-6)
    assert np.array_equal(np.stack([s, r, c], 1), where)


def test_fine_images_made_on_demand_give_the_same_matches_and_only_for_pairs_past_the_gate(films):
    i, j = np.triu_indices(len(films), 1)
    coarse, fine = A.work_images(films), A.fine_images(films)
    asked = []

    def on_demand(rows):
        asked.append(np.asarray(rows))
        return fine[i[rows]], fine[j[rows]]

    given = A.align_pairs(coarse[i], coarse[j], fine[i], fine[j])
    assert A.align_pairs(coarse[i], coarse[j], fine=on_demand) == given
    coarse_only = A.align_pairs(coarse[i], coarse[j])
    assert asked[0].tolist() == [k for k, m in enumerate(coarse_only) if m.score >= A.COARSE_GATE]
    n = len(films) - 3  # the originals, then a crop of the first, a re-windowing of the second
    assert max(given[k].score for k in range(len(i)) if j[k] < n) < A.DEFAULT_MIN_SCORE
    assert {(i[k], j[k]) for k, m in enumerate(given) if m.score >= A.DEFAULT_MIN_SCORE} >= {(0, n), (1, n + 1)}


def test_a_near_miss_is_polished_with_the_template_sides_the_refinement_skips():
    """A copy whose template side falls between two refinement scales (at 128 px they are 1.28 px
    of template apart) is found by `_polish`: the match moves to the true scale and scores higher."""
    from PIL import Image

    images, _, _ = generate_arrays(SyntheticConfig(n_patients=2, size=256, seed=5, max_followups=1))
    core = A.CORE * A.FINE
    true_scale = 80 / core  # 0.78125: the refinement around 0.8 tries sides 79 and 81 px, not 80
    side = 256 * true_scale
    box = (20.0, 14.0, 20.0 + side, 14.0 + side)  # the copy: this part of the film, resized to 128
    copy = np.asarray(Image.fromarray(images[0]).resize((128, 128), Image.Resampling.BOX, box=box))
    original = preprocess(images[0], 128)[0]
    work = (A.work_images([original]), A.work_images([copy]), A.fine_images([original]), A.fine_images([copy]))
    plain = A.align_pairs(*work, threshold=0.0)[0]  # nothing is under the threshold: no polish
    polished = A.align_pairs(*work, threshold=1.01)[0]
    assert round(plain.scale * core) != 80
    assert polished.scale == pytest.approx(true_scale, abs=1e-9)
    assert polished.score > plain.score
    assert polished.x == pytest.approx(20 / 256, abs=1.5 / 128) and polished.y == pytest.approx(14 / 256, abs=1.5 / 128)
