"""Classification metrics that respect missing labels, with patient-level bootstrap intervals.

Targets are (n, L) arrays with NaN where a label is not annotated; every metric skips those
entries per label. A label whose (non-missing) targets hold only one class has no ROC AUC: it is
NaN here, and reports say "not computable" with the reason rather than crash.

Intervals come from a bootstrap that resamples *patients* with replacement and takes all of each
drawn patient's images: follow-up images of one patient look alike, so resampling images would
pretend there is more independent evidence than there is and give intervals that are too narrow.
A replicate is a vector of per-image weights (how often the image's patient was drawn); ROC AUC
and average precision are computed from weights directly, vectorised over replicates, which is
exactly the same as duplicating rows and hundreds of times faster than calling scikit-learn per
replicate. Replicates in which a label has only one class are skipped for that label and counted.

A label with fewer than MIN_POSITIVE_PATIENTS positive (or negative) patients is "not
estimable": its point AUROC is kept, labelled, but it gets no interval, no comparison with
published numbers, and no place in the mean (see `not_estimable_reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

# Replicates x images weights held in memory at once (float64): ~32 MB per chunk.
_CHUNK_CELLS = 1_000_000

# Fewest patients of each class (positive, and likewise negative) for an AUROC to be estimated.
# Why 5: a patient bootstrap over G patients of whom k are positive draws no positive at all with
# probability (1 - k/G)^G ~ e^-k: 37% of replicates at k = 1 (Hernia with one positive test image:
# 372 of 1,000 skipped, and the interval conditional on that one patient being drawn), 5% at k = 3,
# under 1% from k = 5 on, where skipping no longer shapes the interval. With one positive the
# AUROC is only the rank of that film among the negatives (Hanley-McNeil SE ~0.3); a percentile
# interval of 0.1 width around it would look certain when nothing is known.
MIN_POSITIVE_PATIENTS = 5


def label_auroc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """ROC AUC of one label, skipping NaN targets; NaN when only one class is present."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    keep = ~np.isnan(y_true)
    y, p = y_true[keep], y_prob[keep]
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p))


def per_label_auroc(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """(L,) ROC AUC per label column; NaN where not computable."""
    y_true = np.asarray(y_true)
    return np.array([label_auroc(y_true[:, j], y_prob[:, j]) for j in range(y_true.shape[1])])


def mean_auroc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean ROC AUC over the labels where it is computable (NaN when none is)."""
    values = per_label_auroc(y_true, y_prob)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def mean_and_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample SD (ddof=1) of the finite values (None and NaN are skipped).

    The mean is None when no value is finite and the SD when fewer than two are: one fold has no
    spread to report.
    """
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    mean = float(np.mean(finite)) if finite else None
    return mean, (float(np.std(finite, ddof=1)) if len(finite) > 1 else None)


@dataclass(frozen=True)
class FoldAurocs:
    """AUROC per fold and label of cross-validated predictions, and its spread over the folds.

    `auroc` is (folds, labels), NaN where a label is not computable in a fold; `fold_mean` is
    each fold's mean over its computable labels (NaN when it has none). `label_spread(j)` and
    `mean_spread()` are the mean and sample SD over the folds (see `mean_and_sd`).
    """

    folds: list[int]
    images: list[int]
    auroc: np.ndarray
    fold_mean: np.ndarray

    def label_spread(self, j: int) -> tuple[float | None, float | None]:
        return mean_and_sd(self.auroc[:, j])

    def mean_spread(self) -> tuple[float | None, float | None]:
        return mean_and_sd(self.fold_mean)


def fold_aurocs(
    y_true: np.ndarray, y_prob: np.ndarray, folds: np.ndarray, fold_ids: Iterable[int] | None = None
) -> FoldAurocs:
    """Per-fold AUROC of out-of-fold predictions; `fold_ids` (default: the folds present) in order."""
    folds = np.asarray(folds)
    ids = sorted(np.unique(folds).tolist()) if fold_ids is None else list(fold_ids)
    images, rows = [], []
    for fold in ids:
        held = folds == fold
        images.append(int(held.sum()))
        rows.append(per_label_auroc(y_true[held], y_prob[held]))
    auroc = np.array(rows, dtype=np.float64).reshape(len(ids), np.shape(y_true)[1])
    fold_mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in auroc], dtype=np.float64)
    return FoldAurocs(folds=ids, images=images, auroc=auroc, fold_mean=fold_mean)


def not_computable_reason(y_true: np.ndarray) -> str | None:
    """Why a label's AUROC cannot be computed (None when it can)."""
    y = np.asarray(y_true, dtype=np.float64)
    y = y[~np.isnan(y)]
    if len(y) == 0:
        return "no annotated images in this split"
    if y.min() == y.max():
        return f"only {'positive' if y[0] == 1 else 'negative'} images in this split ({len(y)})"
    return None


def class_patients(y_true: np.ndarray, groups: np.ndarray | None = None) -> tuple[int, int]:
    """Patients with at least one positive, and with at least one negative, annotated image.

    `groups` names each image's patient (None: every image its own patient). A patient with
    follow-ups of both classes counts on both sides.
    """
    y = np.asarray(y_true, dtype=np.float64)
    codes = group_codes(groups, len(y))
    keep = ~np.isnan(y)
    y, codes = y[keep], codes[keep]
    return len(np.unique(codes[y == 1])), len(np.unique(codes[y == 0]))


def not_estimable_reason(
    y_true: np.ndarray, groups: np.ndarray | None = None, minimum: int = MIN_POSITIVE_PATIENTS
) -> str | None:
    """Why a computable label's AUROC is not estimable (None when it is): too few patients of a class.

    Below `minimum` positive (or negative) patients the bootstrap mostly measures whether the rare
    patients were drawn; see MIN_POSITIVE_PATIENTS.
    """
    positives, negatives = class_patients(y_true, groups)
    for count, name in ((positives, "positive"), (negatives, "negative")):
        if count < minimum:
            return f"{count} {name} patient{'' if count == 1 else 's'}, fewer than {minimum}"
    return None


def label_pr_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Precision-recall AUC (average precision) of one label; NaN when not computable."""
    y = np.asarray(y_true, dtype=np.float64)
    keep = ~np.isnan(y)
    if not_computable_reason(y) is not None:
        return float("nan")
    return float(average_precision_score(y[keep], np.asarray(y_prob, dtype=np.float64)[keep]))


# ---------------------------------------------------------------- operating point and calibration


def youden_point(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float] | None:
    """The threshold maximising sensitivity + specificity - 1 (predict positive when p >= it)."""
    y = np.asarray(y_true, dtype=np.float64)
    keep = ~np.isnan(y)
    if not_computable_reason(y) is not None:
        return None
    fpr, tpr, thresholds = roc_curve(y[keep], np.asarray(y_prob, dtype=np.float64)[keep])
    # roc_curve's first threshold is +inf (nothing positive): not a usable operating point.
    j = tpr[1:] - fpr[1:]
    best = int(np.argmax(j)) + 1
    return {
        "threshold": float(thresholds[best]),
        "sensitivity": float(tpr[best]),
        "specificity": float(1.0 - fpr[best]),
        "j": float(tpr[best] - fpr[best]),
    }


def operating_point(y_true: np.ndarray, y_prob: np.ndarray, threshold: float) -> dict[str, float] | None:
    """Sensitivity and specificity at a given threshold (positive when p >= threshold)."""
    y = np.asarray(y_true, dtype=np.float64)
    keep = ~np.isnan(y)
    if not_computable_reason(y) is not None:
        return None
    y, pred = y[keep] == 1, np.asarray(y_prob, dtype=np.float64)[keep] >= threshold
    sens, spec = float(pred[y].mean()), float((~pred[~y]).mean())
    return {"threshold": float(threshold), "sensitivity": sens, "specificity": spec, "j": sens + spec - 1}


def sensitivity_point(y_true: np.ndarray, y_prob: np.ndarray, target: float = 0.9) -> dict[str, float] | None:
    """The highest threshold whose sensitivity is at least `target` (the most specific such point)."""
    y = np.asarray(y_true, dtype=np.float64)
    keep = ~np.isnan(y)
    if not_computable_reason(y) is not None:
        return None
    fpr, tpr, thresholds = roc_curve(y[keep], np.asarray(y_prob, dtype=np.float64)[keep], drop_intermediate=False)
    # tpr rises as the threshold falls: the first point that reaches the target is the one.
    best = int(np.argmax(tpr >= target - 1e-12))
    best = max(best, 1)  # index 0 is +inf: nothing called positive
    return {
        "threshold": float(thresholds[best]),
        "sensitivity": float(tpr[best]),
        "specificity": float(1.0 - fpr[best]),
        "j": float(tpr[best] - fpr[best]),
    }


def bootstrap_operating_point(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    threshold: float,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict | None:
    """Sensitivity and specificity at a fixed threshold, each with a patient-bootstrap interval.

    The threshold is held fixed (it was chosen elsewhere); only the images are resampled, by
    patient, as for the AUROC intervals. A replicate without positives (negatives) gives no
    sensitivity (specificity) and is skipped for it.
    """
    point = operating_point(y_true, y_prob, threshold)
    if point is None:
        return None
    y = np.asarray(y_true, dtype=np.float64)
    keep = ~np.isnan(y)
    pos, pred = y[keep] == 1, np.asarray(y_prob, dtype=np.float64)[keep] >= threshold
    codes = group_codes(None if groups is None else np.asarray(groups)[keep], int(keep.sum()))
    n_units = int(codes.max()) + 1
    # Per patient: positives, true positives, negatives, true negatives; a replicate is a count vector.
    per_unit = np.stack(
        [
            np.bincount(codes, weights=w.astype(np.float64), minlength=n_units)
            for w in (pos, pos & pred, ~pos, ~pos & ~pred)
        ],
        axis=1,
    )
    sens, spec = [], []
    for counts in bootstrap_counts(n_units, n_boot, seed) if n_boot > 0 else ():
        p, tp, n, tn = (counts @ per_unit).T
        sens.append(np.where(p > 0, tp / np.maximum(p, 1e-12), np.nan))
        spec.append(np.where(n > 0, tn / np.maximum(n, 1e-12), np.nan))
    out = dict(point)
    if n_boot > 0:
        out["sensitivity_low"], out["sensitivity_high"] = percentile_interval(np.concatenate(sens), level)
        out["specificity_low"], out["specificity_high"] = percentile_interval(np.concatenate(spec), level)
    out.update(positives=int(pos.sum()), negatives=int((~pos).sum()))
    return out


def calibration(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> dict:
    """Expected calibration error over equal-width probability bins, and the reliability curve.

    ECE = sum over bins of (images in bin / images) * |mean probability - fraction positive|.
    """
    y = np.asarray(y_true, dtype=np.float64)
    keep = ~np.isnan(y)
    y, p = y[keep], np.clip(np.asarray(y_prob, dtype=np.float64)[keep], 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        if count == 0:
            bins.append({"low": edges[b], "high": edges[b + 1], "count": 0, "mean_prob": None, "frac_pos": None})
            continue
        mean_prob, frac_pos = float(p[inside].mean()), float(y[inside].mean())
        ece += count / len(y) * abs(mean_prob - frac_pos)
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "mean_prob": mean_prob,
                "frac_pos": frac_pos,
            }
        )
    return {"ece": float(ece) if len(y) else float("nan"), "bins": bins}


# ---------------------------------------------------------------- weighted metrics over replicates


def _tie_group_sums(
    y: np.ndarray, p: np.ndarray, codes: np.ndarray, counts: np.ndarray, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per group of equal scores (sorted), (G, B) for B replicates.

    `counts` (B, P) says how often each unit (patient) was drawn; image i belongs to unit
    codes[i]. The sums are M.T @ counts.T with M (P, G) the sparse count of positive (negative)
    images of each unit in each score group, so no (B, n) per-image weight matrix is built.
    Groups run along axis 0 so that the cumulative sums below walk contiguous rows.
    """
    order = np.argsort(-p if descending else p, kind="mergesort")
    ps = p[order]
    group = np.cumsum(np.r_[True, ps[1:] != ps[:-1]]) - 1  # tie groups of equal scores
    n_groups, n_units = int(group[-1]) + 1, counts.shape[1]
    ys, cs = y[order].astype(np.float64), codes[order]
    m_pos = csr_matrix((ys, (group, cs)), shape=(n_groups, n_units))
    m_neg = csr_matrix((1.0 - ys, (group, cs)), shape=(n_groups, n_units))
    counts_t = np.ascontiguousarray(counts.T)
    return np.ascontiguousarray(m_pos @ counts_t), np.ascontiguousarray(m_neg @ counts_t)


def _auroc_counts(y, p, codes, counts) -> np.ndarray:
    pos, neg = _tie_group_sums(y, p, codes, counts, descending=False)
    neg_below = np.cumsum(neg, axis=0)
    neg_below -= 0.5 * neg  # negatives strictly below, plus half of the tied ones
    num = (pos * neg_below).sum(axis=0)
    den = pos.sum(axis=0) * neg.sum(axis=0)
    out = np.full(len(counts), np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _average_precision_counts(y, p, codes, counts) -> np.ndarray:
    tp, fp = _tie_group_sums(y, p, codes, counts, descending=True)
    tp_cum = np.cumsum(tp, axis=0)
    seen = np.cumsum(fp, axis=0)
    seen += tp_cum
    precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=seen > 0)
    total_pos, total_neg = tp.sum(axis=0), fp.sum(axis=0)
    out = np.full(len(counts), np.nan)
    ok = (total_pos > 0) & (total_neg > 0)
    out[ok] = (tp * precision).sum(axis=0)[ok] / total_pos[ok]
    return out


def weighted_auroc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of `weights` (B, n) over images with 0/1 targets `y` and scores `p`.

    Mann-Whitney with ties counted one half (as scikit-learn's trapezoid); a row with no
    positive or no negative weight is NaN.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return _auroc_counts(np.asarray(y), np.asarray(p, dtype=np.float64), np.arange(len(y)), weights)


def weighted_average_precision(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's definition) for each row of `weights` (B, n)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return _average_precision_counts(np.asarray(y), np.asarray(p, dtype=np.float64), np.arange(len(y)), weights)


# ---------------------------------------------------------------- the patient bootstrap


def group_codes(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Integer code per image of its resampling unit (patient); each image its own unit if None."""
    if groups is None:
        return np.arange(n)
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes.ravel()


def bootstrap_counts(n_units: int, n_boot: int, seed: int = 0, n_images: int | None = None) -> Iterator[np.ndarray]:
    """Chunks of (b, n_units) draw counts: how often each patient was drawn in a replicate.

    Drawing G patients with replacement from G is a multinomial count per patient; every image of
    a drawn patient then enters with its patient's count.
    """
    rng = np.random.default_rng(seed)
    # Chunks bound the (images x replicates) arrays the metrics build.
    chunk = max(1, min(n_boot, _CHUNK_CELLS // max(n_images or n_units, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=b).astype(np.float64)
        done += b


def bootstrap_weights(groups: np.ndarray | None, n: int, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Chunks of (b, n) per-image weights (the count of the image's patient in each replicate)."""
    codes = group_codes(groups, n)
    for counts in bootstrap_counts(int(codes.max()) + 1 if n else 0, n_boot, seed):
        yield counts[:, codes]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_metric(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    y_score: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Any metric(y_true, y_score) -> float with a patient-bootstrap percentile interval.

    Rows of each drawn patient are taken as often as the patient is drawn; replicates where the
    metric is NaN (e.g. one class only) are skipped and counted.
    """
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    estimate = float(metric(y_true, y_score))
    values, skipped = [], 0
    for weights in bootstrap_weights(groups, len(y_true), n_boot, seed):
        for w in weights.astype(int):
            idx = np.repeat(np.arange(len(y_true)), w)
            value = float(metric(y_true[idx], y_score[idx])) if len(idx) else float("nan")
            if np.isfinite(value):
                values.append(value)
            else:
                skipped += 1
    low, high = percentile_interval(np.array(values), level)
    return {"estimate": estimate, "low": low, "high": high, "replicates": n_boot, "skipped": skipped}


def bootstrap_label_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Replicate values (n_boot, L) of ROC AUC and average precision, NaN where not computable.

    All labels share the same replicates (the same patients drawn), so a mean over labels can be
    taken within each replicate.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    n, n_labels = y_true.shape
    auroc = np.full((n_boot, n_labels), np.nan)
    ap = np.full((n_boot, n_labels), np.nan)
    codes = group_codes(groups, n)
    row = 0
    for counts in bootstrap_counts(int(codes.max()) + 1, n_boot, seed, n_images=n):
        b = len(counts)
        for j in range(n_labels):
            if not_computable_reason(y_true[:, j]) is not None:
                continue
            keep = ~np.isnan(y_true[:, j])
            args = (y_true[keep, j], y_prob[keep, j], codes[keep], counts)
            auroc[row : row + b, j] = _auroc_counts(*args)
            ap[row : row + b, j] = _average_precision_counts(*args)
        row += b
    return {"auroc": auroc, "ap": ap}


def label_report(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    labels: list[str],
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
) -> dict:
    """Everything evaluate reports per label, plus the mean ROC AUC with its interval.

    Returns {"labels": {label: {...}}, "mean": {...}}. A label that is not computable has
    `not_computable` set to the reason and no numbers. A computable label with too few patients of
    a class (`not_estimable_reason`) has `not_estimable` set: its point AUROC and PR AUC and the
    count of skipped replicates are kept, but no interval, and it is left out of the mean
    (`mean["left_out"]` says why). Every entry counts its positive and negative patients. The
    mean's interval takes, in each replicate, the mean over the labels in it; a replicate in which
    one of them has a single class is skipped (and counted) rather than averaged over fewer labels.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    boot = bootstrap_label_metrics(y_true, y_prob, groups, n_boot, seed) if n_boot > 0 else None
    per_label: dict[str, dict] = {}
    estimable: list[int] = []
    left_out: dict[str, str] = {}
    for j, label in enumerate(labels):
        y = y_true[:, j]
        annotated = y[~np.isnan(y)]
        positive_patients, negative_patients = class_patients(y, groups)
        entry: dict = {
            "n": len(annotated),
            "positives": int((annotated == 1).sum()),
            "negatives": int((annotated == 0).sum()),
            "positive_patients": positive_patients,
            "negative_patients": negative_patients,
            "not_computable": not_computable_reason(y),
        }
        if entry["not_computable"] is None:
            entry["not_estimable"] = not_estimable_reason(y, groups)
            entry["auroc"] = label_auroc(y, y_prob[:, j])
            entry["pr_auc"] = label_pr_auc(y, y_prob[:, j])
            entry["prevalence"] = float(annotated.mean())
            if boot is not None:
                entry["skipped_replicates"] = int(np.isnan(boot["auroc"][:, j]).sum())
                if entry["not_estimable"] is None:
                    entry["auroc_low"], entry["auroc_high"] = percentile_interval(boot["auroc"][:, j], level)
                    entry["pr_auc_low"], entry["pr_auc_high"] = percentile_interval(boot["ap"][:, j], level)
            if entry["not_estimable"] is None:
                estimable.append(j)
            else:
                left_out[label] = f"not estimable: {entry['not_estimable']}"
            # Chosen on the very split it is scored on: an optimistic, in-sample figure (the honest
            # operating points are chosen on validation; see cxrtool.evaluate.thresholds).
            entry["youden_in_sample"] = {
                **youden_point(y, y_prob[:, j]),
                "note": "chosen on this split: in-sample, optimistic",
            }
            entry["calibration"] = calibration(y, y_prob[:, j], n_bins)
            entry["ece"] = entry["calibration"]["ece"]
        per_label[label] = entry
    mean: dict = {"labels": [labels[j] for j in estimable], "left_out": left_out}
    if estimable:
        mean["estimate"] = float(np.mean([per_label[labels[j]]["auroc"] for j in estimable]))
        if boot is not None:
            reps = boot["auroc"][:, estimable]
            complete = np.isfinite(reps).all(axis=1)
            mean["low"], mean["high"] = percentile_interval(reps[complete].mean(axis=1), level)
            mean["skipped_replicates"] = int((~complete).sum())
    else:
        mean["estimate"] = float("nan")
        mean["not_computable"] = (
            f"no label has {MIN_POSITIVE_PATIENTS} or more patients of each class in this split"
            if left_out
            else "no label has both classes in this split"
        )
    return {"labels": per_label, "mean": mean}
