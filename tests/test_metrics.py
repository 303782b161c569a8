"""Metrics: values equal scikit-learn's on hand-built cases; the patient bootstrap behaves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from cxrtool.evaluate.metrics import (
    bootstrap_counts,
    bootstrap_metric,
    calibration,
    label_auroc,
    label_pr_auc,
    label_report,
    not_computable_reason,
    operating_point,
    weighted_auroc,
    weighted_average_precision,
    youden_point,
)

Y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0], dtype=float)
P = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2, 0.4, 0.6, 0.05])  # ties at 0.4 across classes


def test_auroc_and_pr_auc_equal_sklearn_with_ties_and_missing_labels():
    y = Y.copy()
    y[[1, 6]] = np.nan  # not annotated: skipped
    keep = ~np.isnan(y)
    assert label_auroc(y, P) == pytest.approx(roc_auc_score(y[keep], P[keep]))
    assert label_pr_auc(y, P) == pytest.approx(average_precision_score(y[keep], P[keep]))
    assert label_auroc(Y, P) == pytest.approx(roc_auc_score(Y, P))


@pytest.mark.parametrize("seed", range(5))
def test_weighted_metrics_equal_sklearn_with_sample_weights(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(60) < 0.35).astype(float)
    p = np.round(rng.random(60), 1)  # many ties
    weights = rng.integers(0, 4, size=(4, 60)).astype(float)
    auc, ap = weighted_auroc(y, p, weights), weighted_average_precision(y, p, weights)
    for k, w in enumerate(weights):
        m = w > 0
        assert auc[k] == pytest.approx(roc_auc_score(y[m], p[m], sample_weight=w[m]), abs=1e-12)
        assert ap[k] == pytest.approx(average_precision_score(y[m], p[m], sample_weight=w[m]), abs=1e-12)


def test_weights_equal_duplicated_rows():
    w = np.array([2, 0, 1, 3, 1, 1, 0, 2, 1, 1], dtype=float)
    idx = np.repeat(np.arange(len(Y)), w.astype(int))
    assert weighted_auroc(Y, P, w[None])[0] == pytest.approx(roc_auc_score(Y[idx], P[idx]))


def test_youden_point_maximises_sensitivity_plus_specificity():
    point = youden_point(Y, P)
    fpr, tpr, _thr = roc_curve(Y, P)
    assert point["j"] == pytest.approx(np.max(tpr - fpr))
    again = operating_point(Y, P, point["threshold"])  # the same numbers when applied as p >= t
    assert again["sensitivity"] == pytest.approx(point["sensitivity"])
    assert again["specificity"] == pytest.approx(point["specificity"])


def test_expected_calibration_error_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0], dtype=float)
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55])
    cal = calibration(y, p, n_bins=10)
    # bins: 0.05 -> frac 0 (gap .05, 2 imgs); 0.95 -> 1 (gap .05, 2); 0.55 -> 0.5 (gap .05, 2)
    assert cal["ece"] == pytest.approx(0.05)
    counts = [b["count"] for b in cal["bins"]]
    assert counts[0] == 2 and counts[5] == 2 and counts[9] == 2 and sum(counts) == 6


def _patients_data(n_patients: int, images_per_patient: int, seed: int = 0, correlated: bool = True):
    """Scores that separate the classes imperfectly; a patient's images share label and score."""
    rng = np.random.default_rng(seed)
    y_pat = (rng.random(n_patients) < 0.4).astype(float)
    s_pat = y_pat * 0.8 + rng.normal(0, 0.7, n_patients)
    y = np.repeat(y_pat, images_per_patient)
    s = np.repeat(s_pat, images_per_patient)
    if not correlated:
        s = s + rng.normal(0, 1.0, len(s))
    patients = np.repeat(np.arange(n_patients), images_per_patient).astype(str)
    return y, s, patients


def test_interval_contains_estimate_and_narrows_with_more_patients():
    widths = []
    for n in (30, 300):
        y, s, pats = _patients_data(n, 2)
        rep = label_report(y[:, None], s[:, None], ["x"], pats, n_boot=500, seed=1)["labels"]["x"]
        assert rep["auroc_low"] <= rep["auroc"] <= rep["auroc_high"]
        assert rep["pr_auc_low"] <= rep["pr_auc"] <= rep["pr_auc_high"]
        widths.append(rep["auroc_high"] - rep["auroc_low"])
    assert widths[1] < widths[0] * 0.6


def test_patient_bootstrap_is_wider_than_image_bootstrap_for_correlated_images():
    y, s, pats = _patients_data(40, 6)
    by_patient = label_report(y[:, None], s[:, None], ["x"], pats, n_boot=500, seed=0)["labels"]["x"]
    by_image = label_report(y[:, None], s[:, None], ["x"], None, n_boot=500, seed=0)["labels"]["x"]
    assert by_patient["auroc"] == by_image["auroc"]
    wide = by_patient["auroc_high"] - by_patient["auroc_low"]
    narrow = by_image["auroc_high"] - by_image["auroc_low"]
    assert wide > 1.5 * narrow  # six copies per patient: the image bootstrap overstates the evidence


def test_generic_bootstrap_matches_the_vectorised_one():
    y, s, pats = _patients_data(25, 3, seed=3)
    generic = bootstrap_metric(roc_auc_score, y, s, pats, n_boot=200, seed=5)
    fast = label_report(y[:, None], s[:, None], ["x"], pats, n_boot=200, seed=5)["labels"]["x"]
    assert generic["estimate"] == pytest.approx(fast["auroc"])
    assert generic["low"] == pytest.approx(fast["auroc_low"])
    assert generic["high"] == pytest.approx(fast["auroc_high"])
    assert generic["skipped"] == fast["skipped_replicates"]


def test_bootstrap_is_seeded():
    y, s, pats = _patients_data(30, 2)
    a = label_report(y[:, None], s[:, None], ["x"], pats, n_boot=200, seed=7)["labels"]["x"]
    b = label_report(y[:, None], s[:, None], ["x"], pats, n_boot=200, seed=7)["labels"]["x"]
    c = label_report(y[:, None], s[:, None], ["x"], pats, n_boot=200, seed=8)["labels"]["x"]
    assert (a["auroc_low"], a["auroc_high"]) == (b["auroc_low"], b["auroc_high"])
    assert (a["auroc_low"], a["auroc_high"]) != (c["auroc_low"], c["auroc_high"])


def test_counts_draw_every_patient_total_times():
    counts = np.concatenate(list(bootstrap_counts(7, 50, seed=0)))
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()


def test_one_class_label_is_not_computable_with_the_reason():
    y = np.stack([Y, np.zeros_like(Y), np.full_like(Y, np.nan)], axis=1)
    p = np.stack([P, P, P], axis=1)
    rep = label_report(y, p, ["a", "all negative", "unannotated"], np.arange(len(Y)).astype(str), n_boot=100)
    assert rep["labels"]["all negative"]["not_computable"] == not_computable_reason(y[:, 1])
    assert "only negative" in rep["labels"]["all negative"]["not_computable"]
    assert "no annotated" in rep["labels"]["unannotated"]["not_computable"]
    assert "auroc" not in rep["labels"]["all negative"]  # no silent NaN
    assert rep["mean"]["labels"] == ["a"]
    assert rep["mean"]["estimate"] == pytest.approx(roc_auc_score(Y, P))


def test_replicates_with_one_class_are_skipped_and_counted():
    y = np.zeros(40)
    y[[3, 17, 21, 30, 35, 38]] = 1  # six positive patients among forty: estimable, a few replicates draw none
    y = np.r_[y, y]  # two images per patient
    s = np.linspace(0, 1, 80)
    pats = np.r_[np.arange(40), np.arange(40)].astype(str)
    rep = label_report(y[:, None], s[:, None], ["rare"], pats, n_boot=2000, seed=0)
    entry = rep["labels"]["rare"]
    assert entry["positive_patients"] == 6 and entry["negative_patients"] == 34 and entry["positives"] == 12
    assert entry["not_estimable"] is None
    assert 0 < entry["skipped_replicates"] < 40  # about (34/40)^40 = 0.15% of replicates
    assert rep["mean"]["skipped_replicates"] == entry["skipped_replicates"]
    assert np.isfinite([entry["auroc_low"], entry["auroc_high"]]).all()


def test_a_label_with_one_positive_patient_is_not_estimable():
    """Hernia with one positive test image: the point AUROC is kept and labelled, but no interval,
    no published number beside it, no place in the mean; the skipped replicates are shown."""
    from cxrtool.evaluate.metrics import MIN_POSITIVE_PATIENTS
    from cxrtool.evaluate.tables import compare_entries, main_table, per_label_frame

    rng = np.random.default_rng(0)
    n = 120
    y = np.zeros((n, 2))
    y[:, 0] = rng.random(n) < 0.3
    y[7, 1] = 1  # one positive patient
    p = rng.random((n, 2)) + 0.5 * y
    pats = (np.arange(n) // 2).astype(str)  # two images per patient; patient 3 holds the positive
    rep = label_report(y, p, ["Cardiomegaly", "Hernia"], pats, n_boot=1000, seed=0)
    hernia = rep["labels"]["Hernia"]
    assert MIN_POSITIVE_PATIENTS > 1
    assert hernia["positive_patients"] == 1 and "1 positive patient" in hernia["not_estimable"]
    assert hernia["auroc"] == pytest.approx(roc_auc_score(y[:, 1], p[:, 1]))
    assert "auroc_low" not in hernia and "pr_auc_low" not in hernia
    # Drawing 60 patients from 60, the one positive is missed in about (59/60)^60 = 36% of replicates.
    assert 300 < hernia["skipped_replicates"] < 430
    assert rep["mean"]["labels"] == ["Cardiomegaly"] and "Hernia" in rep["mean"]["left_out"]
    assert rep["mean"]["estimate"] == pytest.approx(rep["labels"]["Cardiomegaly"]["auroc"])

    metrics = {
        "labels": rep["labels"],
        "mean": rep["mean"],
        "bootstrap": {"replicates": 1000, "unit": "patient", "seed": 0},
        "compare": compare_entries("chexnet", rep["labels"]),
    }
    assert metrics["compare"][0]["auroc"]["Hernia"] is None  # no published number beside it
    assert metrics["compare"][0]["auroc"]["Cardiomegaly"] == pytest.approx(0.9248)
    columns, rows = main_table(metrics)
    cells = dict(zip(columns, rows[1]))
    assert cells["AUROC [95% CI]"].startswith("not estimable (1 positive patient")
    assert f"{hernia['skipped_replicates']} of 1,000 replicates skipped" in cells["AUROC [95% CI]"]
    assert "[" not in cells["AUROC [95% CI]"] and cells["CheXNet 2017 AUROC"] == ""
    assert cells["patients + / - (images)"] == "1 / 60 (120)"
    frame = per_label_frame(metrics).set_index("label")
    assert pd.isna(frame.loc["Hernia", "auroc_low"]) and pd.isna(frame.loc["Hernia", "chexnet"])
    assert frame.loc["Hernia", "skipped_replicates"] == hernia["skipped_replicates"]
    assert "Hernia left out" in frame.loc["mean", "not_estimable"]


def test_mean_interval_is_taken_within_replicates():
    y, s, pats = _patients_data(60, 2, seed=2)
    y2, s2, _ = _patients_data(60, 2, seed=9)
    rep = label_report(np.stack([y, y2], 1), np.stack([s, s2], 1), ["a", "b"], pats, n_boot=300, seed=0)
    mean = rep["mean"]
    assert mean["estimate"] == pytest.approx((rep["labels"]["a"]["auroc"] + rep["labels"]["b"]["auroc"]) / 2)
    assert mean["low"] <= mean["estimate"] <= mean["high"]
    # Averaging two labels cancels part of their noise: narrower than either label alone.
    assert mean["high"] - mean["low"] < max(
        rep["labels"][k]["auroc_high"] - rep["labels"][k]["auroc_low"] for k in "ab"
    )


def test_operating_point_interval_is_the_patient_bootstrap_of_sensitivity_and_specificity():
    from cxrtool.evaluate.metrics import bootstrap_metric, bootstrap_operating_point, sensitivity_point

    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(float)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    groups = rng.integers(0, 90, 300)
    point = sensitivity_point(y, p, 0.9)
    assert (p[y == 1] >= point["threshold"]).mean() >= 0.9 > (p[y == 1] > point["threshold"]).mean()
    t = point["threshold"]
    got = bootstrap_operating_point(y, p, t, groups, n_boot=200, seed=1)
    sens = bootstrap_metric(
        lambda yy, pp: (pp[yy == 1] >= t).mean() if (yy == 1).any() else np.nan, y, p, groups, 200, 1
    )
    spec = bootstrap_metric(
        lambda yy, pp: (pp[yy == 0] < t).mean() if (yy == 0).any() else np.nan, y, p, groups, 200, 1
    )
    assert got["sensitivity"] == pytest.approx(sens["estimate"]) and got["specificity"] == pytest.approx(
        spec["estimate"]
    )
    assert (got["sensitivity_low"], got["sensitivity_high"]) == pytest.approx((sens["low"], sens["high"]))
    assert (got["specificity_low"], got["specificity_high"]) == pytest.approx((spec["low"], spec["high"]))
