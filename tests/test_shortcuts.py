"""Shortcut baselines: a planted view shortcut is found; without it the view predicts nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_cache

from cxrtool.evaluate.shortcuts import (
    ALL_METADATA,
    available_columns,
    cross_fitted_baselines,
    fit_predict,
    shortcut_baselines,
    shortcut_warnings,
)


def _baselines(data, model_labels=None):
    fit, ev = data.rows("train"), data.rows("test")
    return shortcut_baselines(
        data.index, data.labels, fit, data.targets(fit), ev, data.targets(ev), model_labels or {}, n_boot=300, seed=0
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return synthetic_cache(
        tmp_path_factory.mktemp("sc") / "on", n_patients=160, size=16, seed=3, labels=["COVID-19"], shortcut=1.0
    )


@pytest.fixture(scope="module")
def unplanted(tmp_path_factory):
    return synthetic_cache(
        tmp_path_factory.mktemp("sc") / "off", n_patients=160, size=16, seed=3, labels=["COVID-19"], shortcut=0.0
    )


def test_planted_view_shortcut_is_found(planted):
    result = _baselines(planted)
    view = result["predictors"]["view"]["COVID-19"]
    assert result["columns"][0] == "view" and "source" not in result["columns"]  # one source: no variation
    assert view["auroc"] > 0.75 and view["auroc_low"] > 0.6
    assert view["auroc_low"] <= view["auroc"] <= view["auroc_high"]


def test_without_the_shortcut_the_view_predicts_nothing(unplanted):
    view = _baselines(unplanted)["predictors"]["view"]["COVID-19"]
    assert abs(view["auroc"] - 0.5) < 0.12
    assert view["auroc_low"] < 0.5 < view["auroc_high"]


def test_warning_when_metadata_reaches_the_models_interval(planted, unplanted):
    model = {"COVID-19": {"auroc": 0.85, "auroc_low": 0.7, "auroc_high": 0.95}}
    warned = _baselines(planted, model)["warnings"]
    assert len(warned) == 1 and "COVID-19" in warned[0] and "view" in warned[0]
    strong = {"COVID-19": {"auroc": 0.99, "auroc_low": 0.97, "auroc_high": 1.0}}
    assert _baselines(unplanted, strong)["warnings"] == []


def test_warning_logic_ignores_not_computable_labels():
    scored = {"view": {"A": {"auroc": 0.9}, "B": {"auroc": None}}}
    model = {"A": {"not_computable": "only negative images"}, "B": {"auroc_low": 0.5, "auroc_high": 0.9}}
    assert shortcut_warnings(model, scored) == []


def test_columns_without_variation_are_skipped_and_unseen_categories_do_not_crash():
    index = pd.DataFrame(
        {
            "view": ["PA", "AP", "PA", "AP", "AP Supine"],
            "sex": ["M"] * 5,
            "age": [30, 40, np.nan, 50, 60],
            "source": ["x"] * 5,
        }
    )
    assert available_columns(index, np.arange(4)) == ["view", "age"]
    probs, reasons = fit_predict(
        index.iloc[:4], np.array([[0.0], [1.0], [0.0], [1.0]]), index.iloc[4:], ["view", "age"]
    )
    assert reasons == [None] and np.isfinite(probs).all()  # 'AP Supine' was never seen in training
    probs, reasons = fit_predict(index.iloc[:4], np.zeros((4, 1)), index.iloc[4:], ["view"])
    assert "one class" in reasons[0] and np.isnan(probs).all()


def test_no_metadata_means_no_baselines():
    index = pd.DataFrame({"patient": list("abcd"), "view": [""] * 4, "source": ["s"] * 4})
    y = np.array([[0.0], [1.0], [0.0], [1.0]])
    assert shortcut_baselines(index, ["x"], np.arange(2), y[:2], np.arange(2, 4), y[2:], {}) is None


@pytest.fixture(scope="module")
def cohen_cache(tmp_path_factory, covid_root):
    from cxrtool.data.prepare import prepare_covid
    from cxrtool.data.sources.covid import PrepareCovidConfig

    return prepare_covid(PrepareCovidConfig(root=covid_root, out=tmp_path_factory.mktemp("cohen") / "covid", size=16))


def test_metadata_predicts_covid_on_the_real_cohen_set(cohen_cache):
    data = cohen_cache
    assert "COVID-19" in data.labels
    rows = np.arange(len(data))
    # Five patient-grouped folds over the whole collection: more stable than its 59-patient test split.
    patients = data.index["patient"].unique()
    fold_of = dict(zip(patients, np.random.default_rng(0).integers(0, 5, len(patients))))
    folds = data.index["patient"].map(fold_of).to_numpy()
    result = cross_fitted_baselines(data.index, data.labels, rows, folds, data.targets(rows), {}, n_boot=300, seed=0)
    assert {"view", "age"} <= set(result["columns"])
    combined = result["predictors"][ALL_METADATA]["COVID-19"]
    assert combined["auroc"] > 0.55  # metadata alone carries signal about the label here
    assert combined["auroc_low"] <= combined["auroc"] <= combined["auroc_high"]


def test_source_warning_fires_where_the_source_predicts_a_label_partly():
    """Half the positives from one collection, nearly no negatives: no 'every positive from one
    source', but the source alone predicts the label, so it is flagged (and a label it does not
    predict is not)."""
    from cxrtool.evaluate.shortcuts import SOURCE_AUROC_THRESHOLD, source_confounding

    source = np.array(["cohen"] * 60 + ["nih"] * 140)
    y = np.zeros((200, 2))
    y[:58, 0] = 1  # 58 Cohen positives, 2 Cohen negatives
    y[60:118, 0] = 1  # 58 NIH positives
    y[::3, 1] = 1  # unrelated to the source
    frame = pd.DataFrame({"source": source})
    only_source = {"A": {"auroc": 0.75}, "B": {"auroc": 0.5}}
    flagged = source_confounding(frame, y, ["A", "B"], only_source, {"B": {"auroc_low": 0.6, "auroc_high": 0.8}})
    assert only_source["A"]["auroc"] >= SOURCE_AUROC_THRESHOLD
    assert set(flagged) == {"A"}
    assert "58 of its 116 positives come from cohen, and 2 of its 84 negatives" in flagged["A"]
    assert "every positive" not in flagged["A"]
    # Below the threshold but within the model's interval: flagged too.
    near = source_confounding(
        frame, y, ["A", "B"], {"A": {"auroc": 0.65}}, {"A": {"auroc_low": 0.6, "auroc_high": 0.9}}
    )
    assert "reaches the model's interval" in near["A"]
    assert source_confounding(frame, y, ["A", "B"], {"A": {"auroc": 0.65}}, {}) == {}
