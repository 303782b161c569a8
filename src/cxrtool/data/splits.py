"""Patient-level splits that cannot leak.

A split is decided per *group*, never per image: a group is a set of patient ids joined whenever
two of them share an image (the same file, the same bytes, or a near-duplicate radiograph), found
with a union-find. So a radiograph filed under two patient ids (the Cohen set has five) lands in
one split with both of its owners. NIH's official lists are honoured when present (validation is
carved out of train_val by group; a group that spans both lists loses its train_val images, so
the test list stays the official one); otherwise a seeded split by group. `check_splits` is the final
guard: it fails if a patient or an identical file is in two splits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import CxrError
from .cache import SPLITS, check_no_leak


class UnionFind:
    """Disjoint sets over hashable items (path halving, union by size)."""

    def __init__(self, items: Iterable = ()):
        self.parent: dict = {}
        self.size: dict = {}
        for item in items:
            self.add(item)

    def add(self, item) -> None:
        if item not in self.parent:
            self.parent[item] = item
            self.size[item] = 1

    def find(self, item):
        self.add(item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]


def patient_groups(patients: Sequence[str], links: Iterable[tuple[str, str]]) -> np.ndarray:
    """A group label per row: patients joined by `links` (pairs of patient ids) share a label.

    The label is the smallest patient id of the group, so it is stable across runs.
    """
    uf = UnionFind(patients)
    for a, b in links:
        uf.union(a, b)
    members: dict = {}
    for p in set(patients):
        members.setdefault(uf.find(p), []).append(p)
    name = {root: min(ps) for root, ps in members.items()}
    return np.array([name[uf.find(p)] for p in patients], dtype=object)


def rows_sharing_keys(patients: Sequence[str], keys: Sequence) -> list[tuple[int, int]]:
    """Pairs of rows (first row with the key, a later one) whose patients differ but keys match."""
    first: dict = {}
    pairs = []
    for row, (patient, key) in enumerate(zip(patients, keys)):
        if key is None or (isinstance(key, float) and np.isnan(key)) or key == "":
            continue
        if key in first and patients[first[key]] != patient:
            pairs.append((first[key], row))
        first.setdefault(key, row)
    return pairs


def links_from_shared_keys(patients: Sequence[str], keys: Sequence) -> list[tuple[str, str]]:
    """Pairs of patients whose rows share a key (a file path or a file hash)."""
    return [(patients[i], patients[j]) for i, j in rows_sharing_keys(patients, keys)]


def _assign(groups: np.ndarray, fractions: dict[str, float], seed: int) -> dict:
    """Shuffle the groups (seeded) and fill the splits in order by image count."""
    names, counts = np.unique(groups.astype(str), return_counts=True)
    order = np.random.default_rng(seed).permutation(len(names))
    total = counts.sum()
    bounds, acc = [], 0.0
    for split, frac in fractions.items():
        acc += frac
        bounds.append((split, acc * total))
    out, filled = {}, 0
    for k in order:
        # The split whose share the running count has not yet passed (the last one takes the rest).
        for split, bound in bounds:
            if filled < bound or split == bounds[-1][0]:
                out[names[k]] = split
                break
        filled += counts[k]
    return out


def random_split(groups: np.ndarray, val_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """A seeded split by group: about test_frac / val_frac of the images in test / val."""
    fractions = {"test": test_frac, "val": val_frac, "train": 1.0 - val_frac - test_frac}
    by_group = _assign(np.asarray(groups), {k: v for k, v in fractions.items() if v > 0 or k == "train"}, seed)
    return np.array([by_group[str(g)] for g in groups], dtype=object)


def official_split(
    groups: np.ndarray, in_test: np.ndarray, val_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """NIH's lists: test where listed; validation carved from train_val by group.

    A group with images on both lists (a near-duplicate across NIH patients) must not be trained
    on, and the official test list must stay what it is: its test images stay in test and its
    train_val images are dropped. Returns (split per row, "" for a dropped one; dropped mask).
    `val_frac` is a fraction of all images, as in `random_split`.
    """
    groups = np.asarray(groups).astype(str)
    in_test = np.asarray(in_test, dtype=bool)
    test_groups = set(groups[in_test])
    dropped = np.array([g in test_groups for g in groups]) & ~in_test
    split = np.where(in_test, "test", "train").astype(object)
    split[dropped] = ""
    rest = ~in_test & ~dropped
    if rest.any() and val_frac > 0:
        share = min(0.9, val_frac * len(groups) / rest.sum())
        by_group = _assign(groups[rest], {"val": share, "train": 1.0 - share}, seed)
        split[rest] = [by_group[g] for g in groups[rest]]
    return split, dropped


def check_splits(index: pd.DataFrame, where: str) -> None:
    """Fail if a patient, or an identical file (same bytes), is in two splits."""
    check_no_leak(index, where)
    if "file_hash" in index.columns:
        per_file = index.dropna(subset=["file_hash"]).groupby("file_hash")["split"].nunique()
        leaking = per_file[per_file > 1]
        if len(leaking):
            example = index.loc[index["file_hash"] == leaking.index[0], "id"].tolist()
            raise CxrError(f"{where}: {len(leaking)} identical file(s) appear in more than one split (e.g. {example})")
    unknown = set(index["split"]) - set(SPLITS)
    if unknown:
        raise CxrError(f"{where}: unknown split name(s) {sorted(unknown)}")


def unify_splits(groups: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, int]:
    """Put each group wholly into one split: where most of its images are (ties: test, then val).

    Used when caches made separately are joined (`prepare combine`): a radiograph shared by two
    sources must not sit in two splits. Returns the new splits and how many images moved.
    """
    frame = pd.DataFrame({"group": np.asarray(groups).astype(str), "split": np.asarray(split).astype(str)})
    rank = {"test": 0, "val": 1, "train": 2}
    counts = frame.groupby(["group", "split"]).size().reset_index(name="n")
    counts["rank"] = counts["split"].map(rank)
    chosen = counts.sort_values(["group", "n", "rank"], ascending=[True, False, True]).drop_duplicates("group")
    target = frame["group"].map(dict(zip(chosen["group"], chosen["split"]))).to_numpy(dtype=object)
    return target, int((target != frame["split"].to_numpy()).sum())
