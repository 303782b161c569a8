"""Paired AUROC differences: DeLong (fast, clustered) against brute force, and the patient bootstrap against DeLong."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from cxrtool.evaluate.metrics import MIN_POSITIVE_PATIENTS
from cxrtool.evaluate.paired import (
    bootstrap_p,
    delong,
    delong_mean,
    fold_difference,
    midranks,
    paired_bootstrap,
    paired_report,
    placements,
    spread,
)


def correlated(seed: int, patients: int = 300, effect: float = 0.15, labels: int = 1):
    """Two arms' scores of the same images: 1-3 images per patient, a patient effect the arms share
    and one only the second arm has (so clustering by patient matters), image noise partly shared."""
    rng = np.random.default_rng(seed)
    pat = np.repeat(np.arange(patients), rng.integers(1, 4, patients))
    y = np.empty((len(pat), labels))
    ref = np.empty_like(y)
    arm = np.empty_like(y)
    for j in range(labels):
        y[:, j] = (rng.random(patients) < 0.4)[pat]
        shared, own = rng.normal(size=patients)[pat], rng.normal(size=patients)[pat]
        e1, e2 = rng.normal(size=len(pat)), rng.normal(size=len(pat))
        ref[:, j] = 1.0 * y[:, j] + 0.8 * shared + e1
        arm[:, j] = (1.0 + effect) * y[:, j] + 0.8 * shared + 0.7 * own + 0.6 * e1 + 0.6 * e2
    return y, ref, arm, pat.astype(str)


def brute_force_variance(y, s_ref, s_arm, clusters):
    """Obuchowski's clustered variance of AUROC(arm) - AUROC(ref) from the full pair matrix, by loops."""
    y = np.asarray(y, bool)
    psi = []
    for s in (s_ref, s_arm):
        x, z = s[y], s[~y]
        psi.append((x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :]))
    n_pos, n_neg = y.sum(), (~y).sum()
    auc = [p.mean() for p in psi]
    ids = np.unique(clusters)
    cp, cn = clusters[y], clusters[~y]
    rows = []
    for i in ids:
        comp = []
        for p, a in zip(psi, auc):
            v10 = p.mean(axis=1)[cp == i].sum() - (cp == i).sum() * a
            v01 = p.mean(axis=0)[cn == i].sum() - (cn == i).sum() * a
            comp.append((v10, v01))
        rows.append(comp)
    rows = np.array(rows)  # (clusters, arm, [v10, v01])
    d10 = rows[:, 1, 0] - rows[:, 0, 0]
    d01 = rows[:, 1, 1] - rows[:, 0, 1]
    i10, i01, k = len(np.unique(cp)), len(np.unique(cn)), len(ids)
    s10 = i10 / ((i10 - 1) * n_pos) * (d10**2).sum()
    s01 = i01 / ((i01 - 1) * n_neg) * (d01**2).sum()
    s11 = k / (k - 1) * (d10 * d01).sum()
    return auc, s10 / n_pos + s01 / n_neg + 2 * s11 / (n_pos * n_neg)


def test_midranks_are_scipys_average_ranks():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 0.5, 2.0])
    assert np.allclose(midranks(x), stats.rankdata(x, method="average"))


def test_delong_on_a_case_checked_by_hand():
    # Positives 0.9, 0.4; negatives 0.5, 0.1. Pairs won: 0.9>0.5, 0.9>0.1, 0.4>0.1; lost 0.4<0.5.
    # AUROC 3/4; V10 = (1, 1/2), V01 = (1/2, 1); Var = var(V10)/2 + var(V01)/2 = 0.125/2 + 0.125/2.
    y = np.array([1, 1, 0, 0])
    auc, v10, v01 = placements(y, np.array([0.9, 0.4, 0.5, 0.1]))
    assert auc == 0.75 and list(v10) == [1.0, 0.5] and list(v01) == [0.5, 1.0]
    # Against a constant scorer (AUROC 1/2, no variance of its own) the variance is the arm's own.
    res = delong(y, np.zeros(4), np.array([0.9, 0.4, 0.5, 0.1]))
    assert res["ref_auc"] == 0.5 and res["diff"] == pytest.approx(0.25)
    assert res["se"] == pytest.approx(np.sqrt(0.125 / 2 + 0.125 / 2 - 2 * 0.0))


@pytest.mark.parametrize("clustered", [False, True])
def test_fast_delong_matches_sklearn_and_the_brute_force_variance(clustered):
    y, ref, arm, pat = correlated(1, patients=60)
    y, ref, arm = y[:, 0], np.round(ref[:, 0], 1), np.round(arm[:, 0], 1)  # rounding makes ties
    groups = pat if clustered else None
    res = delong(y, ref, arm, groups)
    assert res["ref_auc"] == pytest.approx(roc_auc_score(y, ref))
    assert res["arm_auc"] == pytest.approx(roc_auc_score(y, arm))
    clusters = pat if clustered else np.arange(len(y)).astype(str)
    auc, variance = brute_force_variance(y, ref, arm, clusters)
    assert res["diff"] == pytest.approx(auc[1] - auc[0])
    assert res["se"] ** 2 == pytest.approx(variance, rel=1e-10)
    assert res["p"] == pytest.approx(2 * stats.norm.sf(abs(res["diff"]) / res["se"]))


def test_one_image_per_patient_clustered_delong_is_plain_delong():
    y, ref, arm, _ = correlated(2, patients=80)
    a = delong(y[:, 0], ref[:, 0], arm[:, 0], None)
    b = delong(y[:, 0], ref[:, 0], arm[:, 0], np.array([f"p{i}" for i in range(len(y))]))
    assert a["se"] == pytest.approx(b["se"], rel=1e-12)


# Tolerances for bootstrap against DeLong, on 300 generated patients (about 600 images) and
# B = 2000 replicates. The Monte Carlo SD of a bootstrap SE is about SE / sqrt(2B) = 1.6% of it;
# the bootstrap (plug-in) and DeLong (n-1 factors) differ by O(1/n), under 1% here; the rest is
# the skew of a finite-sample AUROC difference, a few per cent. So: SEs within 10%, interval ends
# within 0.25 SE, p-values within 0.3 on the normal-quantile scale (a p near 0.1 has a Monte Carlo
# SD of about 0.03 on that scale).
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_bootstrap_agrees_with_clustered_delong(seed):
    y, ref, arm, pat = correlated(seed, effect=0.12)
    reps = paired_bootstrap(y, ref, arm, pat, [0], n_boot=2000, seed=seed)[:, 0]
    test = delong(y[:, 0], ref[:, 0], arm[:, 0], pat)
    se_boot = np.std(reps, ddof=1)
    assert se_boot == pytest.approx(test["se"], rel=0.10)
    low, high = np.quantile(reps, [0.025, 0.975])
    assert abs(low - test["low"]) < 0.25 * test["se"] and abs(high - test["high"]) < 0.25 * test["se"]
    z_boot, z_delong = stats.norm.isf(bootstrap_p(reps) / 2), stats.norm.isf(test["p"] / 2)
    assert abs(z_boot - z_delong) < 0.3, (bootstrap_p(reps), test["p"])
    # Clustering matters here (a patient effect only one arm has): image-level DeLong is too narrow.
    assert delong(y[:, 0], ref[:, 0], arm[:, 0], None)["se"] < 0.95 * se_boot


def test_mean_over_labels_agrees_with_the_bootstrap_of_the_mean():
    y, ref, arm, pat = correlated(5, labels=3, effect=0.1)
    reps = paired_bootstrap(y, ref, arm, pat, [0, 1, 2], n_boot=2000, seed=1).mean(axis=1)
    test = delong_mean(y, ref, arm, pat, [0, 1, 2])
    assert test["diff"] == pytest.approx(
        np.mean([roc_auc_score(y[:, j], arm[:, j]) - roc_auc_score(y[:, j], ref[:, j]) for j in range(3)])
    )
    assert np.std(reps, ddof=1) == pytest.approx(test["se"], rel=0.10)


def test_report_skips_labels_with_too_few_positive_patients_and_counts_skipped_replicates():
    y, ref, arm, pat = correlated(4, labels=2, patients=120)
    # Label 1: positives only among the first few patients.
    few = MIN_POSITIVE_PATIENTS - 1
    y[:, 1] = (pat.astype(int) < few).astype(float)
    rep = paired_report(y, ref, arm, pat, ["A", "B"], n_boot=300, seed=0)
    assert rep["labels"]["B"]["positive_patients"] == few
    assert "not estimable" in rep["labels"]["B"]["not_estimable"] and "diff" not in rep["labels"]["B"]
    assert rep["mean"]["labels"] == ["A"] and rep["mean"]["diff"] == pytest.approx(rep["labels"]["A"]["diff"])
    assert rep["mean"]["arm_auroc"] == pytest.approx(rep["labels"]["A"]["arm_auroc"])
    a = rep["labels"]["A"]
    assert a["low"] < a["diff"] < a["high"] and 0 <= a["p"] <= 1 and a["skipped_replicates"] == 0
    # Exactly MIN_POSITIVE_PATIENTS positive patients: estimable, and replicates drawing none are counted.
    y[:, 1] = (pat.astype(int) < MIN_POSITIVE_PATIENTS).astype(float)
    rep = paired_report(y, ref, arm, pat, ["A", "B"], n_boot=400, seed=0)
    b = rep["labels"]["B"]
    assert "not_estimable" not in b
    assert b["skipped_replicates"] == int((~np.isfinite(paired_bootstrap(y, ref, arm, pat, [1], 400, 0))).sum())


def test_same_scores_have_no_difference():
    y, ref, _, pat = correlated(6, patients=50)
    res = delong(y[:, 0], ref[:, 0], ref[:, 0], pat)
    assert res["diff"] == 0 and res["p"] == 1.0
    assert bootstrap_p(paired_bootstrap(y, ref, ref, pat, [0], 100, 0)[:, 0]) == 1.0


def test_fold_difference_is_a_paired_t_over_folds():
    ref, arm = np.array([0.80, 0.70, 0.75, 0.72]), np.array([0.85, 0.71, 0.80, 0.78])
    res = fold_difference(ref, arm)
    d = arm - ref
    assert res["diff"] == pytest.approx(d.mean()) and res["folds"] == 4
    low, high = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    assert res["p"] == pytest.approx(stats.ttest_rel(arm, ref).pvalue)
    assert "low" not in fold_difference([0.8], [0.9]) and fold_difference([np.nan], [0.9])["not_estimable"]


def test_spread_over_seeds():
    s = spread([0.7, 0.8, None, 0.9])
    assert s == {"n": 3, "mean": pytest.approx(0.8), "sd": pytest.approx(0.1), "min": 0.7, "max": 0.9}
    assert spread([0.7])["sd"] is None and spread([])["n"] == 0
