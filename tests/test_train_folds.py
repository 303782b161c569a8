"""`finetune --folds K`: patient-grouped folds, fold runs, out-of-fold predictions and the summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_cache

from cxrtool.errors import CxrError
from cxrtool.train import FinetuneConfig, finetune
from cxrtool.train.folds import assign_folds, carve_validation


@pytest.fixture(scope="module")
def covid(tmp_path_factory):
    return synthetic_cache(tmp_path_factory.mktemp("cv") / "data", n_patients=60, size=32, seed=7, labels=["COVID-19"])


def test_folds_are_grouped_by_patient_and_stratified():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(90).astype(str), 2)
    y = np.repeat((rng.random(90) < 0.3).astype(np.float32), 2)[:, None]
    fold = assign_folds(patients, y, 3, seed=0)
    assert set(fold) == {0, 1, 2}
    assert pd.Series(fold).groupby(patients).nunique().max() == 1  # no patient in two folds
    shares = [y[fold == f, 0].mean() for f in range(3)]
    assert max(shares) - min(shares) < 0.1
    train, val = carve_validation(np.flatnonzero(fold != 0), patients, y, 0.2, seed=1)
    assert not set(patients[train]) & set(patients[val]) and 0.1 < len(val) / (len(train) + len(val)) < 0.3
    with pytest.raises(CxrError, match="--folds"):
        assign_folds(patients[:4], y[:4], 3, seed=0)


def test_cross_validation_writes_fold_runs_oof_predictions_and_summary(tmp_path, covid, capsys):
    root = finetune(
        FinetuneConfig(
            parent="none",
            arch="tiny-cnn",
            data=covid.root,
            out=tmp_path / "cv",
            folds=3,
            epochs=2,
            image_size=32,
            workers=0,
            device="cpu",
            lr=3e-3,
        )
    )
    err = capsys.readouterr().err
    assert err.count("--select last") == 1  # every fold's validation part is small: said once
    for k in (1, 2, 3):
        fold_manifest = json.loads((root / f"fold-{k}" / "manifest.json").read_text())
        assert fold_manifest["fold"] == k and (root / f"fold-{k}" / "checkpoints" / "best" / "card.json").is_file()
    oof = pd.read_csv(root / "oof_predictions.csv", dtype={"id": str, "patient": str})
    assert list(oof.columns) == ["id", "patient", "fold", "prob_COVID-19", "true_COVID-19"]
    assert sorted(oof["id"]) == sorted(covid.index["id"])  # every image scored exactly once
    assert oof.groupby("patient")["fold"].nunique().max() == 1
    truth = covid.index.set_index("id").loc[oof["id"], "COVID-19"].to_numpy()
    assert np.array_equal(oof["true_COVID-19"].to_numpy(), truth)
    assert oof["prob_COVID-19"].between(0, 1).all()
    summary = json.loads((root / "cv_summary.json").read_text())
    assert [f["fold"] for f in summary["per_fold"]] == [1, 2, 3]
    assert sum(f["images"] for f in summary["per_fold"]) == len(covid)
    pooled = summary["pooled_oof"]["COVID-19"]
    assert pooled["low"] <= pooled["auroc"] <= pooled["high"]
    per_fold = [f["COVID-19"] for f in summary["per_fold"]]
    assert summary["fold_mean"]["COVID-19"] == pytest.approx(np.mean(per_fold))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["kind"] == "cv" and manifest["folds"] == 3 and manifest["complete"] is True
    assert (
        manifest["fold_runs"] == ["fold-1", "fold-2", "fold-3"] and manifest["oof_predictions"] == "oof_predictions.csv"
    )
    assert "pooled" in (root / "cv_summary.csv").read_text()


def test_patients_sharing_a_film_stay_in_one_fold(tmp_path):

    from cxrtool.data.cache import PreparedData, write_cache
    from cxrtool.train.folds import leakage_groups

    data = synthetic_cache(tmp_path / "data", n_patients=30, size=32, seed=3, labels=["COVID-19"])
    index = data.index
    by_patient = index.groupby("patient")["id"].first()
    a, b, c, d = by_patient.index[:4]
    # a/b: a near-duplicate pair prepare found; c/d: identical bytes filed under two patients.
    duplicates = pd.DataFrame(
        {
            "id_a": [by_patient[a]],
            "id_b": [by_patient[b]],
            "patient_a": [a],
            "patient_b": [b],
            "source_a": "s",
            "source_b": "s",
            "distance": [3],
        }
    )
    index = index.copy()
    index["file_hash"] = index["id"]
    index.loc[index["id"] == by_patient[d], "file_hash"] = by_patient[c]
    write_cache(
        data.root, np.asarray(data.images), index, data.labels, duplicates=duplicates
    )  # a cache checks its files
    data = PreparedData(data.root)
    groups = leakage_groups(data)
    patients = data.index["patient"].astype(str).to_numpy()
    assert len(set(groups[np.isin(patients, [a, b])])) == 1 and len(set(groups[np.isin(patients, [c, d])])) == 1
    assert len(set(groups)) == len(set(patients)) - 2
    for seed in range(5):
        fold = assign_folds(groups, data.targets()[:, :1], 5, seed=seed)
        assert len(set(fold[np.isin(patients, [a, b])])) == 1 and len(set(fold[np.isin(patients, [c, d])])) == 1


def _multi_label_set(seed: int, n_patients: int = 400):
    """Patients of 1-6 images, six findings from common (40%) to rare (3%) with the follow-ups of a
    patient mostly agreeing, three findings not annotated (NaN) for a fifth of the patients, and
    near-duplicate groups joining some pairs of patients."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_patients)
    owner = np.repeat(np.arange(n_patients), sizes)
    prevalence = np.array([0.4, 0.25, 0.12, 0.08, 0.05, 0.03])
    y = (rng.random((n_patients, len(prevalence))) < prevalence).astype(float)[owner]
    y = np.where(rng.random(y.shape) < 0.1, 1 - y, y)
    y[owner % 5 == 0, 3:] = np.nan
    group_of_patient = np.arange(n_patients)
    joined = rng.choice(n_patients, size=(30, 2), replace=False)
    group_of_patient[joined[:, 1]] = joined[:, 0]
    return y, group_of_patient[owner].astype(str)


def _worst_prevalence_gap(y: np.ndarray, fold: np.ndarray) -> float:
    """The largest distance, over labels and folds, between a fold's prevalence and the whole set's."""
    gaps = []
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        overall = y[known, j].mean()
        gaps += [abs(y[known & (fold == f), j].mean() - overall) for f in np.unique(fold)]
    return max(gaps)


def _first_label_folds(groups: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The folds cxrtool cut before: StratifiedGroupKFold on the first label only."""
    from sklearn.model_selection import StratifiedGroupKFold

    key = np.where(np.isnan(y[:, 0]), 2, (y[:, 0] >= 0.5).astype(int))
    fold = np.full(len(y), -1)
    for f, (_, held) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, key, groups)):
        fold[held] = f
    return fold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_label_keeps_its_prevalence_in_every_fold(seed):
    y, groups = _multi_label_set(seed)
    fold = assign_folds(groups, y, 5, seed=seed)
    assert set(fold) == set(range(5))
    assert pd.Series(fold).groupby(groups).nunique().max() == 1  # a group never splits across folds
    assert _worst_prevalence_gap(y, fold) < 0.025  # every label, every fold: within 2.5 points
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() < 0.1 * len(y) / 5
    # Stratifying by the first label alone leaves the others to chance: the same check fails.
    assert _worst_prevalence_gap(y, _first_label_folds(groups, y, 5, seed)) >= 0.025


def test_validation_part_is_stratified_on_every_label_too():
    y, groups = _multi_label_set(3)
    train, val = carve_validation(np.arange(len(y)), groups, y, 0.2, seed=0)
    assert not set(groups[train]) & set(groups[val])
    fold = np.where(np.isin(np.arange(len(y)), val), 1, 0)
    assert _worst_prevalence_gap(y, fold) < 0.025 and 0.15 < len(val) / len(y) < 0.25
