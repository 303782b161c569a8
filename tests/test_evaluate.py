"""`cxrtool evaluate`: artifacts, numbers that match the predictions, errors, external and CV runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import cv_run_from, synthetic_cache
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import write_cache
from cxrtool.errors import CxrError
from cxrtool.evaluate.metrics import MIN_POSITIVE_PATIENTS
from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run
from cxrtool.models.checkpoint import read_card

runner = CliRunner()
ARTIFACTS = [
    "metrics.json",
    "per_label.csv",
    "per_label.md",
    "predictions.csv",
    "roc.png",
    "reliability.png",
    "shortcuts.csv",
]


@pytest.fixture
def run(trained_run, tmp_path):
    """A private copy of the trained run (evaluate writes into it and into its card)."""
    return shutil.copytree(trained_run, tmp_path / "run")


def _cfg(run, **kw):
    kw.setdefault("bootstrap", 200)
    kw.setdefault("device", "cpu")
    return EvaluateConfig(run=run, **kw)


def test_evaluate_writes_every_artifact_and_numbers_match_predictions(run, synth_data):
    metrics = evaluate_run(_cfg(run, compare="chexnet"))
    out = run / "eval"
    for name in ARTIFACTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    stored = json.loads((out / "metrics.json").read_text())
    assert set(stored["labels"]) == set(synth_data.labels)
    preds = pd.read_csv(out / "predictions.csv", dtype={"id": str, "patient": str})
    test_rows = synth_data.rows("test")
    assert list(preds["id"]) == list(synth_data.index["id"].iloc[test_rows])
    for label in synth_data.labels:
        e = stored["labels"][label]
        assert e["auroc"] == pytest.approx(roc_auc_score(preds[f"true_{label}"], preds[f"prob_{label}"]), abs=1e-5)
        assert e["positive_patients"] == preds.loc[preds[f"true_{label}"] == 1, "patient"].nunique()
        if e["positive_patients"] >= MIN_POSITIVE_PATIENTS and e["negative_patients"] >= MIN_POSITIVE_PATIENTS:
            assert e["not_estimable"] is None and e["auroc_low"] <= e["auroc"] <= e["auroc_high"]
            assert label in stored["mean"]["labels"]
        else:  # too few patients of a class: a point estimate, no interval, no published number, not in the mean
            assert e["not_estimable"] and "auroc_low" not in e and label not in stored["mean"]["labels"]
            assert stored["compare"][0]["auroc"][label] is None
        assert 0 <= e["operating_points"]["youden"]["sensitivity"] <= 1 and 0 <= e["ece"] <= 1
    assert stored["mean_auroc_low"] <= stored["mean_auroc"] <= stored["mean_auroc_high"]
    assert metrics["mean_auroc"] == stored["mean_auroc"]
    table = pd.read_csv(out / "per_label.csv")
    assert list(table["label"]) == [*synth_data.labels, "mean"]
    assert table.loc[table.label == "Cardiomegaly", "chexnet"].item() == pytest.approx(0.9248)
    assert "own patient-wise random test split" in (out / "per_label.md").read_text()
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds["chosen_on"] == "val" and thresholds["data_hash"] == synth_data.data_hash
    assert (
        stored["labels"]["Cardiomegaly"]["operating_points"]["youden"]["threshold"]
        == thresholds["labels"]["Cardiomegaly"]["youden"]
    )
    assert stored["operating_points"]["in_sample"] is False
    assert "youden_threshold" in table.columns and set(table["thresholds_chosen_on"].dropna()) == {"val"}


def test_evaluate_refuses_to_overwrite_and_never_writes_into_the_checkpoint(run):
    before = {p.name: p.read_bytes() for p in (run / "checkpoints" / "best").iterdir()}
    metrics = evaluate_run(_cfg(run, split="val", bootstrap=0, shortcuts=False))
    assert (run / "eval-val" / "metrics.json").is_file()
    assert metrics["operating_points"]["in_sample"] is True  # chosen and reported on val: said so
    assert "in-sample" in (run / "eval-val" / "per_label.md").read_text()
    assert set(pd.read_csv(run / "eval-val" / "per_label.csv")["thresholds_chosen_on"].dropna()) == {
        "val (in-sample: optimistic)"
    }
    with pytest.raises(CxrError, match="--overwrite"):
        evaluate_run(_cfg(run, split="val", bootstrap=0))
    evaluate_run(_cfg(run, bootstrap=0, shortcuts=False))  # the test split
    assert {p.name: p.read_bytes() for p in (run / "checkpoints" / "best").iterdir()} == before
    assert "thresholds" not in read_card(run)


def test_operating_points_are_chosen_on_val_and_applied_to_test(run, synth_data, monkeypatch):
    """Val and test are built so that their best thresholds differ: the test figures must use val's."""
    import cxrtool.evaluate.inputs

    rng = np.random.default_rng(0)
    targets = np.nan_to_num(synth_data.targets())
    split = synth_data.index["split"].to_numpy()
    # val: positives 0.6-0.9, negatives 0.1-0.5 (best threshold >= 0.6); test: half the positives
    # at 0.40-0.55 (below val's threshold), the rest 0.65-0.9, negatives 0.0-0.3 (test's own best: < 0.55).
    probs = np.where(targets == 1, rng.uniform(0.6, 0.9, targets.shape), rng.uniform(0.1, 0.5, targets.shape))
    test = split == "test"
    low = rng.random(targets.shape) < 0.5
    probs[test] = np.where(
        targets[test] == 1,
        np.where(low[test], rng.uniform(0.40, 0.55, targets[test].shape), rng.uniform(0.65, 0.9, targets[test].shape)),
        rng.uniform(0.0, 0.3, targets[test].shape),
    )
    monkeypatch.setattr(cxrtool.evaluate.inputs, "predict_probs", lambda model, data, rows, *a, **k: probs[rows])
    metrics = evaluate_run(_cfg(run, shortcuts=False))
    chosen = json.loads((run / "eval" / "thresholds.json").read_text())["labels"]
    val = split == "val"
    for j, label in enumerate(synth_data.labels):
        t = chosen[label]["youden"]
        assert t == pytest.approx(probs[val & (targets[:, j] == 1), j].min())  # val's perfect separation point
        point = metrics["labels"][label]["operating_points"]["youden"]
        test_pos = probs[test & (targets[:, j] == 1), j]
        assert point["threshold"] == t and point["sensitivity"] == pytest.approx((test_pos >= t).mean())
        assert (
            point["sensitivity"] < 0.9 and point["sensitivity_low"] <= point["sensitivity"] <= point["sensitivity_high"]
        )
        assert metrics["labels"][label]["youden_in_sample"]["sensitivity"] == 1.0  # the optimistic in-sample figure
        s90 = chosen[label]["sens90"]
        assert (
            (probs[val & (targets[:, j] == 1), j] >= s90).mean()
            >= 0.9
            > (probs[val & (targets[:, j] == 1), j] > s90).mean()
        )


def test_one_class_label_is_reported_not_computable(run, synth_data, tmp_path):
    index = synth_data.index.copy()
    index.loc[index["split"] == "test", "Mass"] = 0.0
    write_cache(tmp_path / "one_class", np.asarray(synth_data.images), index, synth_data.labels)
    metrics = evaluate_run(_cfg(run, data=tmp_path / "one_class", out=tmp_path / "ev"))
    mass = metrics["labels"]["Mass"]
    assert "only negative" in mass["not_computable"] and "auroc" not in mass
    assert "Mass" not in metrics["mean"]["labels"]
    row = pd.read_csv(tmp_path / "ev" / "per_label.csv").set_index("label").loc["Mass"]
    assert "only negative" in row["not_computable"] and pd.isna(row["auroc"])
    assert "NaN" not in (tmp_path / "ev" / "metrics.json").read_text()


def test_external_collection_is_scored_on_shared_labels(run, tmp_path):
    other = synthetic_cache(
        tmp_path / "ext", n_patients=40, size=32, seed=5, labels=["Cardiomegaly", "Effusion", "COVID-19"]
    )
    metrics = evaluate_run(_cfg(run, external=other.root, shortcuts=False))
    ext = metrics["external"]
    assert list(ext["labels"]) == ["Cardiomegaly", "Effusion"] and ext["images"] == len(other)
    table = pd.read_csv(run / "eval" / "external.csv")
    assert list(table["label"]) == ["Cardiomegaly", "Effusion", "mean"]
    assert table["internal_auroc"].iloc[0] == pytest.approx(metrics["labels"]["Cardiomegaly"]["auroc"])
    preds = pd.read_csv(run / "eval" / "external_predictions.csv")
    truth = other.targets()[:, other.labels.index("Cardiomegaly")]
    assert table["external_auroc"].iloc[0] == pytest.approx(roc_auc_score(truth, preds["prob_Cardiomegaly"]), abs=1e-5)


def test_cross_validation_run_reports_out_of_fold_predictions(trained_run, synth_data, tmp_path):
    cv, probs, truth, folds = cv_run_from(trained_run, synth_data, tmp_path / "cv-run")
    metrics = evaluate_run(EvaluateConfig(run=cv, bootstrap=200))
    assert set(metrics["cv"]["folds"]) == {"0", "1", "2"}
    label = "Cardiomegaly"
    assert metrics["labels"][label]["pooled_auroc"] == pytest.approx(roc_auc_score(truth[:, 0], probs[:, 0]))
    held = (folds == 1).to_numpy()
    assert metrics["cv"]["folds"]["1"]["auroc"][label] == pytest.approx(roc_auc_score(truth[held, 0], probs[held, 0]))
    assert metrics["shortcuts"]["fitted_on"].startswith("the other folds")
    for name in ("folds.csv", "predictions.csv", "roc.png", "per_label.csv"):
        assert (cv / "eval" / name).is_file()
    with pytest.raises(CxrError, match="--external"):
        evaluate_run(EvaluateConfig(run=cv, external=synth_data.root, overwrite=True))


def test_cli_prints_the_table_and_errors_are_one_line(run, tmp_path):
    ok = runner.invoke(app, ["evaluate", str(run), "--bootstrap", "100", "--device", "cpu", "-q", "--no-shortcuts"])
    assert ok.exit_code == 0, ok.output
    assert "AUROC" in ok.output and "Effusion" in ok.output and "mean" in ok.output
    again = runner.invoke(app, ["evaluate", str(run), "-q"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    for args, needle in (
        (["--split", "tests"], "--split"),
        (["--bootstrap", "10"], "--bootstrap"),
        (["--compare", "chexnt"], "Did you mean 'chexnet'"),
    ):
        res = runner.invoke(app, ["evaluate", str(run), *args])
        assert res.exit_code == 2 and needle in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    other = synthetic_cache(tmp_path / "other", n_patients=10, size=16, labels=["COVID-19"])
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(other.root), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "lacks the label(s)" in res.output and "Cardiomegaly" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such run directory" in res.output


def test_tta_changes_nothing_structural(run):
    metrics = evaluate_run(_cfg(run, tta=True, bootstrap=0, shortcuts=False))
    assert metrics["tta"] is True and np.isfinite(metrics["mean_auroc"])
    assert "thresholds" not in read_card(run)


def test_cv_headline_is_the_mean_of_per_fold_aurocs_with_a_t_interval_over_folds(tmp_path):
    """Three folds that each rank well but whose scores are offset from fold to fold: the pooled
    out-of-fold AUROC mixes the three calibrations and drops, the headline does not."""
    from scipy import stats

    from cxrtool.runs import write_manifest

    rng = np.random.default_rng(3)
    n, k = 90, 3
    folds = np.repeat(np.arange(k), n)
    y = (rng.random(n * k) < 0.4).astype(float)
    offset = np.array([0.0, 2.5, -2.5])[folds]  # each fold's model calibrated differently
    score = 1.6 * y + rng.normal(0, 1, n * k) + offset
    prob = 1 / (1 + np.exp(-score))
    run = tmp_path / "cv-offset"
    run.mkdir()
    patients = [f"p{i}" for i in range(n * k)]
    pd.DataFrame(
        {"id": patients, "patient": patients, "fold": folds, "prob_Effusion": prob, "true_Effusion": y}
    ).to_csv(run / "oof_predictions.csv", index=False)
    write_manifest(run, kind="cv", arch="tiny-cnn")
    metrics = evaluate_run(EvaluateConfig(run=run, bootstrap=200, shortcuts=False))

    per_fold = [roc_auc_score(y[folds == f], prob[folds == f]) for f in range(k)]
    pooled = roc_auc_score(y, prob)
    assert min(per_fold) > 0.8 and pooled < min(per_fold) - 0.1  # the case the pooled number misreads
    e = metrics["labels"]["Effusion"]
    assert e["auroc"] == pytest.approx(np.mean(per_fold)) and e["auroc_folds"] == k
    half = stats.t.ppf(0.975, k - 1) * np.std(per_fold, ddof=1) / np.sqrt(k)
    assert (e["auroc_low"], e["auroc_high"]) == pytest.approx((np.mean(per_fold) - half, np.mean(per_fold) + half))
    assert e["pooled_auroc"] == pytest.approx(pooled) and e["pooled_auroc_low"] < pooled < e["pooled_auroc_high"]
    assert "differently calibrated" in e["pooled_note"]
    assert metrics["mean_auroc"] == pytest.approx(np.mean(per_fold))  # the headline
    assert metrics["mean"]["pooled"]["estimate"] == pytest.approx(pooled)
    table = pd.read_csv(run / "eval" / "per_label.csv").set_index("label")
    assert table.loc["Effusion", "pooled_auroc"] == pytest.approx(pooled)
    assert table.loc["mean", "auroc"] == pytest.approx(np.mean(per_fold))
    md = (run / "eval" / "per_label.md").read_text()
    assert "AUROC: mean of 3 folds [95% t-interval]" in md and "pools 3 differently calibrated models" in md
