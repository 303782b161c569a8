"""Classification metrics that respect missing labels.

Targets are (n, L) arrays with NaN where a label is not annotated; every metric skips those
entries per label. A label whose (non-missing) targets hold only one class has no ROC AUC: it is
NaN here, and reports say "not computable" with the reason rather than crash.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


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


def not_computable_reason(y_true: np.ndarray) -> str | None:
    """Why a label's AUROC cannot be computed (None when it can)."""
    y = np.asarray(y_true, dtype=np.float64)
    y = y[~np.isnan(y)]
    if len(y) == 0:
        return "no annotated images in this split"
    if y.min() == y.max():
        return f"only {'positive' if y[0] == 1 else 'negative'} images in this split ({len(y)})"
    return None
