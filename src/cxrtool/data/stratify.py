"""Multi-label stratified folds over groups: iterative stratification (Sechidis et al., 2011).

Cross-validation on chest X-rays has to keep a patient (and every patient sharing a film with
them) inside one fold, and should keep each finding's prevalence about equal in every fold;
stratifying on one label leaves the others to chance, and a rare finding can then end up with
no positives in a fold. Sechidis, Tsoumakas and Vlahavas ("On the stratification of multi-label
data", ECML PKDD 2011) place examples label by label, rarest label first, each into the fold that
still wants most of that label. Here the unit placed is a group, carrying all its images:

- each group counts, per label, its positive and its negative images (both classes are spread,
  so a fold's prevalence, positives over annotated images, stays near the whole set's even
  where a source leaves the label NaN: those images count in neither column);
- the column with the fewest images still unplaced goes first; its groups, largest first
  (ties in seeded random order), each go to the fold that still wants most of that column, then
  the fold that wants most images, then at random;
- groups with nothing left to place fill the folds that want most images;
- a few passes then move single groups to another fold wherever that brings the fold sizes and
  every column nearer their shares (the greedy pass cannot look ahead to later columns).

No group is ever split; a NaN target counts in neither column of its label.
"""

from __future__ import annotations

import numpy as np


def _columns(targets: np.ndarray) -> np.ndarray:
    """Per image, the quantities to spread: one positive and one negative column per label."""
    targets = np.asarray(targets, dtype=float).reshape(len(targets), -1)
    known = ~np.isnan(targets)
    positive = (np.nan_to_num(targets, nan=0.0) >= 0.5) & known
    negative = known & ~positive
    return np.concatenate([positive, negative], axis=1).astype(float)


def iterative_group_folds(targets: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) per row: every group in one fold, every label's positives spread evenly."""
    groups = np.asarray(groups).astype(str)
    if k < 2:
        raise ValueError("k must be 2 or more")
    names, row_group = np.unique(groups, return_inverse=True)
    if len(names) < k:
        raise ValueError(f"{k} folds need at least {k} groups; there are {len(names)}")
    rng = np.random.default_rng(seed)
    per_row = _columns(targets)
    counts = np.zeros((len(names), per_row.shape[1]))
    np.add.at(counts, row_group, per_row)
    sizes = np.bincount(row_group, minlength=len(names)).astype(float)

    want = np.tile(counts.sum(axis=0) / k, (k, 1))  # how much of each column each fold still wants
    want_size = np.full(k, sizes.sum() / k)
    fold_of = np.full(len(names), -1)
    tiebreak = rng.random(len(names))  # a fixed random order among equals, from the seed

    def place(g: int, column: int | None) -> None:
        by_column = want[:, column] if column is not None else np.zeros(k)
        noise = rng.random(k)
        f = int(np.lexsort((noise, want_size, by_column))[-1])  # most wanted column, then size, then chance
        fold_of[g] = f
        want[f] -= counts[g]
        want_size[f] -= sizes[g]

    while True:
        left = fold_of < 0
        remaining = counts[left].sum(axis=0)
        open_columns = np.flatnonzero(remaining > 0)
        if len(open_columns) == 0:
            break
        column = int(open_columns[np.argmin(remaining[open_columns])])
        members = np.flatnonzero(left & (counts[:, column] > 0))
        for g in members[np.lexsort((tiebreak[members], -counts[members, column]))]:
            place(int(g), column)
    rest = np.flatnonzero(fold_of < 0)
    for g in rest[np.lexsort((tiebreak[rest], -sizes[rest]))]:
        place(int(g), None)
    if len(np.unique(fold_of)) < k:  # only when a few huge groups hold every positive
        raise ValueError(f"could not give each of the {k} folds a group; use fewer folds")
    _refine(fold_of, np.column_stack([counts, sizes]), k, rng)
    return fold_of[row_group]


def _refine(fold_of: np.ndarray, counts: np.ndarray, k: int, rng: np.random.Generator, passes: int = 3) -> None:
    """Move single groups between folds while that brings every column (and the fold sizes) nearer
    their shares: the greedy pass places a column's groups before it sees the later columns, which
    can leave a fold a little large or a common label a little off.

    The objective is sum over folds and columns of (count - share)^2 / share, so a rare label's
    few positives weigh as much as a common label's many. Moving group g (counts x) from fold a to
    fold b changes it by sum_c 2 x_c (excess_bc - excess_ac + x_c) / share_c.
    """
    share = counts.sum(axis=0) / k
    scale = np.where(share > 0, 1.0 / np.maximum(share, 1e-12), 0.0)
    excess = np.stack([counts[fold_of == f].sum(axis=0) for f in range(k)]) - share
    members = np.bincount(fold_of, minlength=k)
    for _ in range(passes):
        moved = 0
        for g in rng.permutation(len(fold_of)):
            a, x = fold_of[g], counts[g]
            if members[a] == 1:
                continue  # a fold is never emptied
            delta = (2 * x * (excess - excess[a] + x) * scale).sum(axis=1)
            delta[a] = 0.0
            b = int(np.argmin(delta))
            if delta[b] < -1e-9:
                fold_of[g] = b
                excess[a] -= x
                excess[b] += x
                members[a] -= 1
                members[b] += 1
                moved += 1
        if moved == 0:
            break
