"""What gets mapped: a seeded, stratified sample of images and its two feature spaces.

`latent` is the trained network's representation: the final convolution's output, globally
average-pooled (what the classification head sees). `pixels` is the image itself, downsampled
(32 x 32 = 1024 numbers by default) with the same resize the network input uses. Both are reduced
by PCA (50 dimensions by default) before any map, which removes noise and makes t-SNE, UMAP and
the SOM fast; the cluster scores are computed in this reduced "full" space and in each 2-D map.

Each image also gets a primary finding for colouring and scoring: its one positive label, and
"multiple" (or its first positive, by option) when several. An image with no positive label is
classed by what its source says: a Cohen image by its own finding, kept in the cache's `finding`
column (SARS, Streptococcus, Pneumocystis, ...; "No Finding" only where the finding says so;
"unknown" for `todo`), any other image "No Finding" (NIH's label file says so for an image with
none of its findings), or "unknown" when every label is NaN. Labels a source does not annotate
(NaN) count as not positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.cache import PreparedData
from ..data.labels import NO_FINDING, UNKNOWN_CLASS
from ..data.sources.covid import finding_class
from ..data.tensors import to_model_input
from ..inference import extract_features, iter_batches
from ..progress import progress_bar

MULTIPLE = "multiple"


def negative_classes(targets: np.ndarray, findings: Sequence | None = None) -> np.ndarray:
    """What each image is when none of its labels is positive (see the module docstring): its
    source's finding where `findings` gives one (Cohen's column; NaN or None for another
    source's image), 'unknown' when every label is NaN, else 'No Finding'."""
    targets = np.asarray(targets, dtype=float).reshape(len(targets), -1)
    names = np.full(len(targets), NO_FINDING, dtype=object)
    names[np.isnan(targets).all(axis=1)] = UNKNOWN_CLASS
    if findings is not None:
        for i, text in enumerate(findings):
            if isinstance(text, str):
                names[i] = finding_class(text)
    return names


def primary_findings(
    targets: np.ndarray, labels: list[str], multi_label: str = "multiple", findings: Sequence | None = None
) -> np.ndarray:
    """One class name per image: its single positive label, 'multiple'/the first, or (with no
    positive) `negative_classes`."""
    positive = np.nan_to_num(targets, nan=0.0) > 0.5
    count = positive.sum(axis=1)
    first = positive.argmax(axis=1)
    names = np.array(labels, dtype=object)[first]
    names[count == 0] = negative_classes(targets, findings)[count == 0]
    if multi_label == "multiple":
        names[count > 1] = MULTIPLE
    return names.astype(str)


def label_strings(targets: np.ndarray, labels: list[str], negatives: Sequence | None = None) -> list[str]:
    """'Effusion|Mass' per image (positives joined as in NIH's label file); for none, the image's
    entry of `negatives` (default 'No Finding')."""
    positive = np.nan_to_num(targets, nan=0.0) > 0.5
    if negatives is None:
        negatives = [NO_FINDING] * len(positive)
    return ["|".join(l for l, p in zip(labels, row) if p) or str(n) for row, n in zip(positive, negatives)]


def stratified_sample(strata: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions (sorted) of `n` items drawn so each stratum keeps its share; all when n covers them.

    Largest-remainder allocation, at least one item from every stratum, seeded shuffles inside each
    stratum: the same seed draws the same images, and rare findings are not lost to chance.
    """
    total = len(strata)
    if n <= 0 or n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    names, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    quota = counts * n / total
    take = np.maximum(np.floor(quota).astype(int), 1)
    take = np.minimum(take, counts)
    # Hand out what is left by largest remainder (or take back from the largest strata).
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    i = 0
    while take.sum() < n:
        s = order[i % len(order)]
        if take[s] < counts[s]:
            take[s] += 1
        i += 1
    while take.sum() > n:
        s = int(np.argmax(take))
        take[s] -= 1
    chosen = []
    for s in range(len(names)):
        members = np.flatnonzero(inverse == s)
        chosen.append(rng.permutation(members)[: take[s]])
    return np.sort(np.concatenate(chosen))


def latent_features(
    model: torch.nn.Module,
    data: PreparedData,
    rows: np.ndarray,
    image_size: int,
    batch_size: int,
    device: torch.device | str,
) -> np.ndarray:
    """(n, C) pooled final-convolution features of the cache rows, as float32."""
    feats = extract_features(
        model, data, rows, image_size, batch_size=batch_size, device=device, description="latent features"
    )
    return feats.astype(np.float32, copy=False)


@torch.no_grad()
def pixel_features(data: PreparedData, rows: np.ndarray, size: int = 32, batch_size: int = 256) -> np.ndarray:
    """(n, size*size) images downsampled (antialiased) to size x size, in [0, 1]."""
    out = np.empty((len(rows), size * size), dtype=np.float32)
    done = 0
    with progress_bar(len(rows), "pixel features") as bar:
        for chunk, batch in iter_batches(data, rows, batch_size):
            x = to_model_input(batch, size, "cpu")
            out[done : done + len(chunk)] = x.reshape(len(chunk), -1).numpy()
            done += len(chunk)
            bar.advance(len(chunk))
    return out


def reduce_pca(features: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, float]:
    """PCA to `dims` (capped by the sample and the feature count); returns (scores, variance kept)."""
    # lazy: sklearn.decomposition, only when PCA runs
    from sklearn.decomposition import PCA

    n, d = features.shape
    dims = int(min(dims, d, max(n - 1, 1)))
    # Randomised SVD is much faster on wide inputs and is seeded, so results repeat exactly.
    pca = PCA(n_components=dims, svd_solver="randomized" if min(n, d) > 4 * dims else "full", random_state=seed)
    scores = pca.fit_transform(features.astype(np.float64))
    kept = float(np.sum(pca.explained_variance_ratio_))
    return scores.astype(np.float32), kept
