"""Numbers for "how structured is this space": silhouette, k-NN accuracy, class centroid distances.

- silhouette (by primary finding, Euclidean; on a seeded sample of at most 5,000 points, since it
  costs n^2): from -1 to 1, higher when images of one finding sit together and apart from others.
- k-NN accuracy (k = 5, leave-one-out): the share of images whose finding is the majority among
  their k nearest neighbours. Neighbours from the same patient are skipped: follow-up images of
  one patient look alike and share findings, so counting them would reward remembering patients
  rather than grouping diseases. `knn_chance` (the most common finding's share) is the floor.
- centroid distances: the distance between the mean feature vectors of every pair of findings
  (an image counts for each finding it has; one with none for its class from features.py, e.g.
  "No Finding" or a Cohen finding such as SARS), in units of the mean distance of an image to
  the overall centroid, so spaces of different scale compare.

Images of class "unknown" (nobody has said what they show) are mapped but left out of every
score: as a class of their own they would reward or punish grouping by nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.labels import NO_FINDING, UNKNOWN_CLASS

SILHOUETTE_SAMPLE = 5000


def knn_accuracy(
    x: np.ndarray, classes: np.ndarray, k: int = 5, groups: np.ndarray | None = None, extra: int = 50
) -> float:
    """Leave-one-out k-NN accuracy, skipping neighbours in the same group (patient).

    Ties between classes go to the class of the nearer neighbours (votes weighted by a tiny
    rank term). Images whose every candidate is in their own group are left out of the mean.
    """
    # lazy: sklearn.neighbors, only when this score is computed
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    if n < 2:
        return float("nan")
    names, code = np.unique(classes, return_inverse=True)
    want = min(n - 1, k + (extra if groups is not None else 0))
    # kneighbors() without X leaves each point out of its own neighbour list.
    _, idx = NearestNeighbors(n_neighbors=want).fit(x).kneighbors()
    if groups is not None:
        groups = np.asarray(groups)
        keep = groups[idx] != groups[:, None]
    else:
        keep = np.ones_like(idx, dtype=bool)
    # The first k kept neighbours of each row.
    rank = np.cumsum(keep, axis=1)
    use = keep & (rank <= k)
    votes = np.zeros((n, len(names)))
    weight = use * (1.0 + 1e-3 * (want - np.arange(want)))[None, :]
    np.add.at(votes, (np.repeat(np.arange(n), want), code[idx].ravel()), weight.ravel())
    scored = use.any(axis=1)
    if not scored.any():
        return float("nan")
    return float((votes.argmax(axis=1) == code)[scored].mean())


def silhouette(x: np.ndarray, classes: np.ndarray, seed: int = 0) -> float:
    """Silhouette by class on at most SILHOUETTE_SAMPLE points (seeded); NaN with fewer than 2 classes."""
    # lazy: sklearn.metrics, only when this score is computed
    from sklearn.metrics import silhouette_score

    n_classes = len(np.unique(classes))
    if n_classes < 2 or n_classes >= len(x):
        return float("nan")
    sample = SILHOUETTE_SAMPLE if len(x) > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(x, classes, sample_size=sample, random_state=seed))


def chance_accuracy(classes: np.ndarray) -> float:
    """The share of the most common class: what a k-NN that ignores the features would get."""
    classes = np.asarray(classes)
    classes = classes[classes != UNKNOWN_CLASS]
    if len(classes) == 0:
        return float("nan")
    _, counts = np.unique(classes, return_counts=True)
    return float(counts.max() / counts.sum())


def structure_scores(
    x: np.ndarray, classes: np.ndarray, k: int, groups: np.ndarray | None, seed: int
) -> dict[str, float]:
    known = np.asarray(classes) != UNKNOWN_CLASS
    if not known.all():
        x, classes = x[known], np.asarray(classes)[known]
        groups = None if groups is None else np.asarray(groups)[known]
    return {"silhouette": silhouette(x, classes, seed), "knn_accuracy": knn_accuracy(x, classes, k, groups)}


def centroid_distances(
    features: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    min_images: int = 1,
    negatives: np.ndarray | None = None,
) -> pd.DataFrame:
    """Square table (findings x findings) of centroid distances, relative to the mean spread.

    Rows and columns are the findings with at least `min_images` positive images, plus the
    classes of the images with no positive label (`negatives`, one name per image: "No Finding"
    by default, a Cohen finding such as SARS; "unknown" is left out); a finding's centroid is the
    mean of every image that has it.
    """
    x = np.asarray(features, dtype=np.float64)
    positive = np.nan_to_num(targets, nan=0.0) > 0.5
    members = {label: positive[:, i] for i, label in enumerate(labels)}
    none = ~positive.any(axis=1)
    negatives = np.full(len(x), NO_FINDING, dtype=object) if negatives is None else np.asarray(negatives, dtype=object)
    for name in dict.fromkeys(negatives[none]):
        if name != UNKNOWN_CLASS:
            member = none & (negatives == name)
            members[name] = members[name] | member if name in members else member
    members = {name: m for name, m in members.items() if m.sum() >= min_images}
    centre = x.mean(axis=0)
    spread = float(np.linalg.norm(x - centre, axis=1).mean()) or 1.0
    names = list(members)
    cents = np.stack([x[members[n]].mean(axis=0) for n in names]) if names else np.zeros((0, x.shape[1]))
    dist = np.linalg.norm(cents[:, None, :] - cents[None, :, :], axis=-1) / spread
    table = pd.DataFrame(dist, index=names, columns=names)
    table.index.name = "finding"
    table.insert(0, "images", [int(members[n].sum()) for n in names])
    return table


def nearest_findings(table: pd.DataFrame, finding: str, n: int = 3) -> list[tuple[str, float]]:
    """The `n` findings whose centroids lie nearest `finding`'s (excluding itself)."""
    if finding not in table.index:
        return []
    row = table.loc[finding].drop(labels=["images", finding])
    return [(name, float(d)) for name, d in row.sort_values().head(n).items()]
