"""The near-duplicate search: cheap candidates for every image, then each confirmed on its pixels.

`near_duplicates(a, b=None, options)` searches one set of images (`ImageSet`: fingerprints, a
reader of image i, groups never paired) for pairs within it, or two sets for pairs across them.
`find_candidates` is its first step: each image's closest fingerprints (hashing.py) and its
nearest whole images by window descriptor (neighbours.py), no pixel compared; confirm.py is the
second. Every setting travels in one `SearchOptions` (options.py).

Images are read through the sets' readers (e.g. rows of a cache's memmap): once for their
descriptors and again only while a batch of candidates that holds them is confirmed, so memory
stays bounded (descriptors: 128 bytes per image). Images of 128 px or more give the confirmation
its full detail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...progress import progress_bar
from .confirm import Candidates, Pair, confirm
from .descriptors import whole_descriptors, window_reader
from .hashing import candidate_pairs, parse
from .neighbours import DescriptorSet, descriptor_pairs
from .options import SearchOptions


@dataclass(frozen=True)
class ImageSet:
    """One set of images to search: their hex fingerprints (index.csv's `fingerprint`), `image(i)`
    returning image i (a 2-D uint8 array), and optionally a group per image (e.g. its patient):
    images of one group are never paired."""

    fingerprints: Sequence[str]
    image: Callable[[int], np.ndarray]
    groups: Sequence | None = None


def _group_codes(a: ImageSet, b: ImageSet | None, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer group codes of a's and b's images; an image without a group is its own."""
    ga = np.arange(n_a) if a.groups is None else pd.factorize(pd.Series([str(g) for g in a.groups]))[0]
    if b is None:
        return ga, ga
    if a.groups is not None and b.groups is not None:
        codes = pd.factorize(pd.Series([str(g) for g in list(a.groups) + list(b.groups)]))[0]
        return codes[:n_a], codes[n_a:]
    return ga, ga.max(initial=-1) + 1 + np.arange(n_b)


def find_candidates(a: ImageSet, b: ImageSet | None = None, options: SearchOptions | None = None) -> Candidates:
    """The candidate step of `near_duplicates` (its arguments, the same meaning): each image's
    closest fingerprints and its nearest whole images by window descriptor, no pixel compared."""
    options = options or SearchOptions()
    same = b is None
    get_b = a.image if same else b.image
    words_a = parse(a.fingerprints)
    words_b = words_a if same else parse(b.fingerprints)
    n_a, n_b = len(words_a), len(words_b)
    # Images of one group (given or not) are never compared; an image never with itself.
    ga, gb = _group_codes(a, b, n_a, n_b)
    with progress_bar(2 * (n_a + (0 if same else n_b)), "near-duplicate search", unit="images") as bar:
        whole_a = whole_descriptors(a.image, n_a, bar)
        whole_b = whole_a if same else whole_descriptors(get_b, n_b, bar)
        both = whole_a if same else np.concatenate([whole_a, whole_b])
        mean = both.astype(np.float32).mean(axis=0) if len(both) else np.zeros(whole_a.shape[1], np.float32)
        set_a = DescriptorSet(window_reader(a.image, bar), whole_a, ga)
        set_b = set_a if same else DescriptorSet(window_reader(get_b, bar), whole_b, gb)
        candidates = descriptor_pairs(set_a, set_b, mean, same, options)
        if not same:  # b's windows against a's whole images too: either copy may be the cropped one
            candidates |= {(i, j) for j, i in descriptor_pairs(set_b, set_a, mean, False, options)}
    del whole_a, whole_b, both, set_a, set_b
    skip = lambda rows, cols: ga[rows][:, None] == gb[cols][None, :]  # noqa: E731
    hashed = {
        (i, j)
        for i, j, _ in candidate_pairs(
            a.fingerprints,
            None if same else b.fingerprints,
            options.max_distance,
            limit=options.neighbours,
            skip=skip,
            index=options.index,
        )
    }
    return Candidates(sorted(candidates | hashed), hashed, words_a, words_b)


def near_duplicates(a: ImageSet, b: ImageSet | None = None, options: SearchOptions | None = None) -> list[Pair]:
    """Near-duplicate pairs (i of a, j of b; with one set, i < j within it), sorted.

    Candidates (`find_candidates`) are pairs with close fingerprints (<= options.max_distance
    bits) and each image's nearest neighbours by window descriptors (crop-robust). A fingerprint
    candidate whose pixels already correlate as they are (score >= options.min_score) is a "hash"
    match; every other candidate is aligned (align.py) and kept when the aligned score reaches
    options.min_score (confirm.py).
    """
    options = options or SearchOptions()
    found = find_candidates(a, b, options)
    return confirm(found, a.image, None if b is None else b.image, options)
