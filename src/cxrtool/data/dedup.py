"""Near-duplicates inside `prepare`: which rows show one radiograph, and what that does to the split.

`find_pairs` lists every pair of rows under different patients that shows the same radiograph:
the same file or the same bytes ("identical file"), or a near-duplicate found and confirmed by
neardup.search.near_duplicates ("hash" or "aligned correlation"). Patients joined by these pairs
form one group and go to one split (splits.py).

With NIH's official lists a group may hold images from both lists. The official test list must
stay what it is and nothing of such a group may be trained on, so `drop_training_members` drops
the group's train_val images: they are listed in skipped.csv with the test image they duplicate,
counted in the manifest and reported. The image file is compacted in place, never copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..progress import warn
from .neardup.confirm import IDENTICAL, Pair
from .neardup.hashing import hamming, parse
from .neardup.options import SearchOptions
from .neardup.search import ImageSet, near_duplicates
from .npyfile import shrink_images
from .splits import rows_sharing_keys


def find_pairs(index: pd.DataFrame, paths: Sequence[str], pixels: np.ndarray, max_distance: int) -> list[Pair]:
    """Pairs of rows (i < j) under different patients that show one radiograph.

    `pixels` holds the images the confirmation looks at, in index order (the cache's memmap, or
    larger thumbnails for a small cache).
    """
    patients = index["patient"].astype(str).tolist()
    words = parse(index["fingerprint"].tolist())
    found: dict[tuple[int, int], Pair] = {}
    resolved = [str(Path(p).resolve()) for p in paths]
    for keys in (index["file_hash"].tolist(), resolved):
        for i, j in rows_sharing_keys(patients, keys):
            i, j = min(i, j), max(i, j)
            found.setdefault((i, j), Pair(i, j, hamming(words[i], words[j]), IDENTICAL, 1.0))
    searched = ImageSet(index["fingerprint"].tolist(), lambda i: pixels[i], groups=patients)
    for pair in near_duplicates(searched, options=SearchOptions(max_distance=max_distance)):
        found.setdefault((pair.i, pair.j), pair)
    return [found[k] for k in sorted(found)]


def compact_images(path: Path, keep: np.ndarray) -> None:
    """Keep only rows `keep` (ascending) of an .npy image file, moving rows down in place."""
    images = np.load(path, mmap_mode="r+")
    keep = np.asarray(keep, dtype=np.int64)
    dest = 0
    for start in range(0, len(keep), 1024):
        chunk = keep[start : start + 1024]
        # Every source row is at or after its destination and later chunks read later rows,
        # so no row is overwritten before it has been moved.
        if chunk[0] != dest or chunk[-1] != dest + len(chunk) - 1:
            images[dest : dest + len(chunk)] = images[chunk]
        dest += len(chunk)
    images.flush()
    del images
    shrink_images(path, len(keep))


def drop_training_members(
    images_path: Path,
    index: pd.DataFrame,
    groups: np.ndarray,
    dropped: np.ndarray,
    skipped: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Remove the `dropped` rows (train_val images of groups that reach into the test list).

    Returns the index without them, skipped.csv with them (naming a test image of the group),
    and the manifest entry that counts them.
    """
    groups = np.asarray(groups).astype(str)
    test_of: dict[str, str] = {}
    for g, row_id, split in zip(groups, index["id"], index["split"]):
        if split == "test":
            test_of.setdefault(g, row_id)
    gone = index[dropped]
    reasons = [
        f"near-duplicate group reaches the official test list (e.g. {test_of[g]}); kept out of training"
        for g in groups[dropped]
    ]
    listed = pd.DataFrame(
        {
            "source_path": gone["source_path"].to_numpy(),
            "id": gone["id"].to_numpy(),
            "patient": gone["patient"].to_numpy(),
            "reason": reasons,
        }
    )
    skipped = pd.concat([skipped, listed], ignore_index=True)
    compact_images(images_path, np.flatnonzero(~dropped))
    n_groups = len(set(groups[dropped]))
    warn(
        f"{int(dropped.sum())} train_val image(s) in {n_groups} near-duplicate group(s) that reach the official "
        f"test list were left out of training (the test list is unchanged); listed in skipped.csv"
    )
    entry = {"groups": n_groups, "dropped": int(dropped.sum()), "examples": gone["id"].astype(str).tolist()[:20]}
    return index[~dropped].reset_index(drop=True), skipped, entry
