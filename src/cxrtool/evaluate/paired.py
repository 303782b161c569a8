"""Two models scored on the same patients: the AUROC difference, its interval and its p-value.

Three ways to put an uncertainty on "arm B's AUROC minus arm A's", all paired (both arms'
scores of one image enter together, so the large share of the variance that the two models
have in common cancels):

- `paired_bootstrap`: patients are resampled with replacement and the *same* draw scores both
  arms; the 95% interval is the percentile interval of the replicate differences, and the
  two-sided p-value inverts it (twice the smaller share of replicates on either side of 0, with
  the usual +1 so that it is never 0). Replicates in which a label has one class are skipped and
  counted.
- `delong`: DeLong, DeLong & Clarke-Pearson (1988) for correlated ROC curves, computed the fast
  way of Sun & Xu (2014): placement values from three mid-rank passes, O(n log n). Images are
  clustered by patient as in Obuchowski (1997): each patient's placement values are summed
  before the variance is taken, so a patient's follow-up films do not count as independent
  evidence; with one image per patient this is exactly DeLong's variance. For a mean over several
  labels the between-label covariances use the same per-patient sums with the factor K/(K-1)
  (K patients); within a label Obuchowski's own factors are kept.
- `fold_difference`: for two cross-validated arms on the same folds, the per-fold difference,
  its mean over folds and a t-interval (K-1 degrees of freedom) and paired t-test over folds.

A label is compared only when it has at least MIN_POSITIVE_PATIENTS (evaluate/metrics.py) positive
and as many negative patients; below that its difference is "not estimable" (an interval from two
or three patients is a statement about those patients, not about the model). `spread` summarises training runs
that differ only in their seed (mean, SD, min, max).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .metrics import (
    MIN_POSITIVE_PATIENTS,
    bootstrap_counts,
    class_patients,
    group_codes,
    not_estimable_reason,
    percentile_interval,
    weighted_auroc,
)

LEVEL = 0.95


# ---------------------------------------------------------------- DeLong (Sun & Xu; Obuchowski)


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x` with ties given the mean of their ranks, in O(n log n)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[True, xs[1:] != xs[:-1]] if n else np.zeros(0, bool)
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], n] - 1
    group = np.cumsum(starts) - 1
    out = np.empty(n)
    out[order] = ((first + last) / 2.0 + 1.0)[group]
    return out


def placements(y: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and the placement values (Sun & Xu's V10 of each positive, V01 of each negative).

    V10 of a positive is the share of negatives scored below it (ties count one half), V01 of a
    negative the share of positives scored above it; both average to the AUROC.
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tz = midranks(score)
    v10 = (tz[y] - midranks(score[y])) / n_neg
    v01 = 1.0 - (tz[~y] - midranks(score[~y])) / n_pos
    return float(v10.mean()), v10, v01


def delong_components(y: np.ndarray, score: np.ndarray, clusters: np.ndarray) -> dict:
    """Per-patient components of one AUROC's variance (Obuchowski 1997, clustered DeLong).

    a_i = (sum of patient i's V10 - m_i A) / N and b_i = (sum of its V01 - n_i A) / M, where m_i
    and n_i are the patient's positive and negative images and N, M all positives and negatives;
    Var(A) = f10 sum a^2 + f01 sum b^2 + 2 f11 sum a b, with f10 = I10/(I10-1) over the I10
    patients holding a positive, f01 likewise, f11 = K/(K-1) over all K patients.
    """
    y = np.asarray(y).astype(bool)
    k = int(clusters.max()) + 1
    auc, v10, v01 = placements(y, score)
    m = np.bincount(clusters[y], minlength=k).astype(np.float64)
    n = np.bincount(clusters[~y], minlength=k).astype(np.float64)
    a = (np.bincount(clusters[y], weights=v10, minlength=k) - m * auc) / y.sum()
    b = (np.bincount(clusters[~y], weights=v01, minlength=k) - n * auc) / (~y).sum()
    i10, i01, present = int((m > 0).sum()), int((n > 0).sum()), int(((m + n) > 0).sum())
    factors = (i10 / max(i10 - 1, 1), i01 / max(i01 - 1, 1), present / max(present - 1, 1))
    return {"auc": auc, "a": a, "b": b, "factors": factors}


def component_variance(a: np.ndarray, b: np.ndarray, factors: tuple[float, float, float]) -> float:
    f10, f01, f11 = factors
    return float(f10 * (a @ a) + f01 * (b @ b) + 2.0 * f11 * (a @ b))


def normal_test(diff: float, variance: float, level: float = LEVEL) -> dict:
    """Wald interval and two-sided p-value for a difference with the given variance."""
    se = float(np.sqrt(max(variance, 0.0)))
    z_level = float(stats.norm.ppf(0.5 + level / 2.0))
    if se == 0.0:
        return {"diff": diff, "se": 0.0, "low": diff, "high": diff, "z": 0.0, "p": 1.0 if diff == 0 else 0.0}
    z = diff / se
    return {
        "diff": diff,
        "se": se,
        "low": diff - z_level * se,
        "high": diff + z_level * se,
        "z": z,
        "p": float(2.0 * stats.norm.sf(abs(z))),
    }


def delong(y: np.ndarray, score_ref: np.ndarray, score_arm: np.ndarray, groups: np.ndarray | None = None) -> dict:
    """DeLong's test of AUROC(arm) - AUROC(ref) on the same images (clustered by `groups`)."""
    y = np.asarray(y)
    codes = group_codes(groups, len(y))
    ref = delong_components(y, score_ref, codes)
    arm = delong_components(y, score_arm, codes)
    variance = component_variance(arm["a"] - ref["a"], arm["b"] - ref["b"], ref["factors"])
    return {"ref_auc": ref["auc"], "arm_auc": arm["auc"], **normal_test(arm["auc"] - ref["auc"], variance)}


def delong_mean(
    targets: np.ndarray, probs_ref: np.ndarray, probs_arm: np.ndarray, groups: np.ndarray | None, columns: list[int]
) -> dict:
    """DeLong's test of the difference in mean AUROC over the label `columns` (NaN targets skipped)."""
    codes_all = group_codes(groups, len(targets))
    k = int(codes_all.max()) + 1  # every patient; one without images of a label adds 0 to its sums
    parts = []
    for j in columns:
        keep = ~np.isnan(targets[:, j])
        codes = codes_all[keep]
        ref = delong_components(targets[keep, j], probs_ref[keep, j], codes)
        arm = delong_components(targets[keep, j], probs_arm[keep, j], codes)
        a = np.zeros(k)
        b = np.zeros(k)
        a[: len(arm["a"])] = arm["a"] - ref["a"]
        b[: len(arm["b"])] = arm["b"] - ref["b"]
        parts.append((arm["auc"] - ref["auc"], a, b, ref["factors"]))
    n = len(parts)
    variance = sum(component_variance(a, b, f) for _, a, b, f in parts)
    influence = [a + b for _, a, b, _ in parts]
    for p in range(n):
        for q in range(p + 1, n):
            variance += 2.0 * k / max(k - 1, 1) * float(influence[p] @ influence[q])
    return normal_test(float(np.mean([d for d, *_ in parts])), variance / n**2)


# ---------------------------------------------------------------- the paired patient bootstrap


def bootstrap_p(replicates: np.ndarray) -> float:
    """Two-sided p-value of 'no difference' from bootstrap replicates of a difference (percentile inversion)."""
    reps = replicates[np.isfinite(replicates)]
    if len(reps) == 0:
        return float("nan")
    below = (np.sum(reps <= 0) + 1) / (len(reps) + 1)
    above = (np.sum(reps >= 0) + 1) / (len(reps) + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def paired_bootstrap(
    targets: np.ndarray,
    probs_ref: np.ndarray,
    probs_arm: np.ndarray,
    groups: np.ndarray | None,
    columns: list[int],
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """(n_boot, len(columns)) replicate differences AUROC(arm) - AUROC(ref), one patient draw per
    replicate for both arms and every label; NaN where a label drew one class only."""
    targets = np.asarray(targets, dtype=np.float64)
    codes = group_codes(groups, len(targets))
    out = np.full((n_boot, len(columns)), np.nan)
    row = 0
    for counts in bootstrap_counts(int(codes.max()) + 1, n_boot, seed, n_images=len(targets)):
        weights = counts[:, codes]
        for c, j in enumerate(columns):
            keep = ~np.isnan(targets[:, j])
            y, w = targets[keep, j], weights[:, keep]
            out[row : row + len(counts), c] = weighted_auroc(y, probs_arm[keep, j], w) - weighted_auroc(
                y, probs_ref[keep, j], w
            )
        row += len(counts)
    return out


def bootstrap_summary(replicates: np.ndarray, level: float = LEVEL) -> dict:
    low, high = percentile_interval(replicates, level)
    return {
        "low": low,
        "high": high,
        "p": bootstrap_p(replicates),
        "replicates": len(replicates),
        "skipped_replicates": int((~np.isfinite(replicates)).sum()),
    }


# ---------------------------------------------------------------- what can be compared


def patient_counts(y: np.ndarray, patients: np.ndarray) -> tuple[int, int]:
    """Patients with a positive image and patients with a negative image of one label (NaN skipped)."""
    return class_patients(y, np.asarray(patients).astype(str))


def not_estimable(y: np.ndarray, patients: np.ndarray, minimum: int = MIN_POSITIVE_PATIENTS) -> str | None:
    """Why a label's paired difference is not estimable on these images (None when it is): the
    same rule as a single AUROC's (evaluate/metrics.py), so a label is compared exactly where
    each arm's own AUROC has an interval."""
    why = not_estimable_reason(y, np.asarray(patients).astype(str), minimum)
    return f"not estimable: {why}" if why else None


def paired_report(
    targets: np.ndarray,
    probs_ref: np.ndarray,
    probs_arm: np.ndarray,
    patients: np.ndarray,
    labels: list[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Per label and for the mean over the estimable labels: both AUROCs, the paired difference
    with its bootstrap interval and p-value, and DeLong's (clustered by patient) beside it."""
    targets = np.asarray(targets, dtype=np.float64)
    out: dict = {"labels": {}, "mean": {}}
    estimable = []
    for j, label in enumerate(labels):
        pos, neg = patient_counts(targets[:, j], patients)
        entry: dict = {"positive_patients": pos, "negative_patients": neg}
        why = not_estimable(targets[:, j], patients)
        if why:
            entry["not_estimable"] = why
        else:
            estimable.append(j)
        out["labels"][label] = entry
    if not estimable:
        out["mean"]["not_estimable"] = "no label has enough positive and negative patients"
        return out
    reps = paired_bootstrap(targets, probs_ref, probs_arm, patients, estimable, n_boot, seed)
    for c, j in enumerate(estimable):
        keep = ~np.isnan(targets[:, j])
        test = delong(targets[keep, j], probs_ref[keep, j], probs_arm[keep, j], np.asarray(patients)[keep])
        out["labels"][labels[j]].update(_entry(test, reps[:, c]))
    mean_reps = reps.mean(axis=1)  # NaN where a label drew one class: skipped and counted, not averaged over fewer
    test = delong_mean(targets, probs_ref, probs_arm, patients, estimable)
    refs = [out["labels"][labels[j]]["ref_auroc"] for j in estimable]
    arms = [out["labels"][labels[j]]["arm_auroc"] for j in estimable]
    out["mean"] = {
        "labels": [labels[j] for j in estimable],
        **_entry(test, mean_reps),
        "ref_auroc": float(np.mean(refs)),
        "arm_auroc": float(np.mean(arms)),
    }
    return out


def _entry(test: dict, replicates: np.ndarray) -> dict:
    return {
        "ref_auroc": test.get("ref_auc", np.nan),
        "arm_auroc": test.get("arm_auc", np.nan),
        "diff": test["diff"],
        **bootstrap_summary(replicates),
        "delong_low": test["low"],
        "delong_high": test["high"],
        "delong_se": test["se"],
        "delong_p": test["p"],
    }


# ---------------------------------------------------------------- folds and seeds


def fold_difference(ref: np.ndarray, arm: np.ndarray, level: float = LEVEL) -> dict:
    """Mean over folds of AUROC(arm) - AUROC(ref) per fold, a t-interval and a paired t-test over folds."""
    d = np.asarray(arm, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    d = d[np.isfinite(d)]
    out: dict = {"folds": len(d)}
    if len(d) == 0:
        return {**out, "not_estimable": "no fold where both arms have an AUROC"}
    out["diff"] = float(d.mean())
    if len(d) < 2:
        return out
    sd = float(d.std(ddof=1))
    se = sd / np.sqrt(len(d))
    t = float(stats.t.ppf(0.5 + level / 2.0, len(d) - 1))
    out.update(sd=sd, low=out["diff"] - t * se, high=out["diff"] + t * se)
    out["p"] = 1.0 if se == 0 and out["diff"] == 0 else float(2.0 * stats.t.sf(abs(out["diff"]) / se, len(d) - 1))
    return out


def spread(values) -> dict:
    """Mean, sample SD, min and max of the finite values (of runs that differ only in their seed)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0}
    return {
        "n": len(v),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
    }
