"""`prepare combine`: a class-balanced set from several caches, splits and boxes kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_cache
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData, check_no_leak, write_cache
from cxrtool.data.combine import select_balanced
from cxrtool.data.labels import NIH_LABELS
from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS

runner = CliRunner()


def test_select_balanced_caps_each_class_and_skips_unknown_labels():
    rng = np.random.default_rng(0)
    targets = np.zeros((300, 3))
    targets[:200, 0] = 1
    targets[150:180, 1] = 1
    targets[250:, 2] = np.nan  # not annotated
    targets[290:, 2] = 1
    rows = select_balanced(targets, 20, rng)
    chosen = np.nan_to_num(targets[rows])
    assert chosen[:, 1].sum() == 20 and chosen[:, 2].sum() == 10  # rare class: all 10 it has
    assert 20 <= chosen[:, 0].sum() <= 40  # images positive for two classes count for both
    assert len(set(rows)) == len(rows)


def test_combine_unions_labels_keeps_splits_and_carries_boxes(tmp_path):
    nih = synthetic_cache(tmp_path / "nih", n_patients=40, size=32, seed=1)
    covid = synthetic_cache(tmp_path / "covid", n_patients=40, size=32, seed=2, labels=["COVID-19"])
    combine = ["prepare", "combine", str(nih.root), str(covid.root), "--out", str(tmp_path / "mix")]
    combine += ["--per-class", "8", "--seed", "1"]
    res = runner.invoke(app, [*combine, "-q"])
    assert res.exit_code == 0, res.output
    mix = PreparedData(tmp_path / "mix")
    assert mix.labels == [*PRETRAIN_FINDINGS, "COVID-19"]  # NIH order, then COVID-19
    index = mix.index
    assert set(index["source"]) == {"nih", "covid"}
    from_covid = index["source"] == "covid"
    assert index.loc[from_covid, PRETRAIN_FINDINGS].isna().all().all()  # not annotated there
    assert index.loc[~from_covid, "COVID-19"].isna().all()
    for label in mix.labels:
        assert (index[label] == 1).sum() >= 8
    # Each image keeps its source's split; patients are namespaced by source.
    for source, data in (("nih", nih), ("covid", covid)):
        part = index[index["source"] == source]
        original = data.index.set_index("id")
        ids = part["id"].str.split("/", n=1).str[1]
        assert (original.loc[ids, "split"].to_numpy() == part["split"].to_numpy()).all()
        assert part["patient"].str.startswith(source + ":").all()
        assert np.array_equal(
            mix.images[np.flatnonzero(index["id"] == part["id"].iloc[0])[0]],
            data.images[np.flatnonzero(data.index["id"] == ids.iloc[0])[0]],
        )
    check_no_leak(index)
    boxes = mix.boxes()
    assert len(boxes) and boxes["id"].isin(set(index["id"])).all()
    expected = nih.boxes().assign(id=lambda b: "nih/" + b["id"])
    assert len(boxes[boxes["id"].str.startswith("nih/")]) == int(expected["id"].isin(set(index["id"])).sum())
    again = runner.invoke(app, combine)  # not quiet: it says the set is ready
    assert again.exit_code == 0 and "ready" in again.output


def test_combine_refuses_caches_of_different_sizes(tmp_path):
    a = synthetic_cache(tmp_path / "a", n_patients=10, size=32)
    b = synthetic_cache(tmp_path / "b", n_patients=10, size=48)
    res = runner.invoke(app, ["prepare", "combine", str(a.root), str(b.root), "--out", str(tmp_path / "mix"), "-q"])
    assert res.exit_code == 2 and "different image sizes" in res.output and "--size" in res.output


# ---------------------------------------------------------------- the 15-class set: NIH + Cohen

COHEN_POSITIVE = ["COVID-19", "Pneumonia/Viral/COVID-19", "COVID-19, ARDS"]
COHEN_NEGATIVE = ["Streptococcus", "Pneumonia/Bacterial/Klebsiella", "No Finding", "ARDS"]


def _nih_like(root, seed=1):
    """A generated cache that says it was prepared from NIH ChestX-ray14 (no COVID-19 column)."""
    raw = synthetic_cache(root.parent / (root.name + "-raw"), n_patients=70, size=16, seed=seed)
    index = raw.index.copy()
    index["source"] = "nih"
    index["Pneumonia"] = (np.random.default_rng(seed).random(len(index)) < 0.2).astype(float)
    labels = [*PRETRAIN_FINDINGS, "Pneumonia"]
    write_cache(root, np.asarray(raw.images), index, labels, manifest={"source": "nih"})
    return PreparedData(root)


def _cohen_like(root, seed=2):
    """A generated cache shaped like `prepare covid`'s: COVID-19 and the free-text finding per image."""
    raw = synthetic_cache(root.parent / (root.name + "-raw"), n_patients=70, size=16, seed=seed, labels=["COVID-19"])
    index = raw.index.copy()
    rng = np.random.default_rng(seed)
    positive = rng.random(len(index)) < 0.7
    index["finding"] = [rng.choice(COHEN_POSITIVE if p else COHEN_NEGATIVE) for p in positive]
    index["COVID-19"] = positive.astype(float)
    index["source"] = "covid"
    write_cache(root, np.asarray(raw.images), index, ["COVID-19"], manifest={"source": "covid"})
    return PreparedData(root)


@pytest.fixture(scope="module")
def fifteen(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fifteen")
    nih, cohen = _nih_like(tmp / "nih"), _cohen_like(tmp / "covid")
    res = runner.invoke(
        app,
        [
            "prepare",
            "combine",
            str(nih.root),
            str(cohen.root),
            "--out",
            str(tmp / "mix"),
            "--per-class",
            "12",
            "--seed",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    return nih, cohen, PreparedData(tmp / "mix"), res.output


def test_covid_is_known_for_every_image_with_both_classes_in_every_split(fifteen):
    _, cohen, mix, _ = fifteen
    index = mix.index
    assert mix.labels == [l for l in NIH_LABELS if l in [*PRETRAIN_FINDINGS, "Pneumonia"]] + ["COVID-19"]
    assert index["COVID-19"].notna().all()
    assert (index.loc[index["source"] == "nih", "COVID-19"] == 0).all()  # the NIH collection predates COVID-19
    from_cohen = index[index["source"] == "covid"]
    original = cohen.index.set_index("id")
    ids = from_cohen["id"].str.split("/", n=1).str[1]
    assert (from_cohen["COVID-19"].to_numpy() == original.loc[ids, "COVID-19"].to_numpy()).all()
    assert (from_cohen["COVID-19"] == 0).any()  # Cohen's other findings come in as negatives too
    for split in ("train", "val", "test"):
        covid = index.loc[index["split"] == split, "COVID-19"]
        assert (covid == 1).any() and (covid == 0).any(), split
    check_no_leak(index)


def test_cohen_findings_fill_the_nih_columns_they_name(fifteen):
    _, _, mix, _ = fifteen
    cohen = mix.index[mix.index["source"] == "covid"]
    pneumonia = cohen["finding"].str.contains("COVID-19|Pneumonia|Streptococcus")
    assert (cohen.loc[pneumonia, "Pneumonia"] == 1).all()
    assert (cohen.loc[cohen["finding"] == "No Finding", "Pneumonia"] == 0).all()
    assert cohen.loc[cohen["finding"] == "ARDS", "Pneumonia"].isna().all()  # names no NIH finding
    assert cohen[PRETRAIN_FINDINGS].isna().all().all()  # named by no Cohen finding: unknown, masked in the loss


def test_counts_per_class_and_split_are_printed_and_stored(fifteen):
    _, _, mix, output = fifteen
    counts = pd.read_csv(mix.root / "counts.csv")
    index = mix.index
    for row in counts.itertuples():
        y = index.loc[index["split"] == row.split, row.label]
        assert (row.positive, row.negative, row.unknown) == (
            int((y == 1).sum()),
            int((y == 0).sum()),
            int(y.isna().sum()),
        )
    assert len(counts) == 3 * len(mix.labels)
    stored = mix.manifest["class_counts"]
    assert stored["test"]["COVID-19"]["positive"] == int(((index["split"] == "test") & (index["COVID-19"] == 1)).sum())
    assert "pos/neg/unknown" in output and "COVID-19" in output


def test_each_class_draw_reaches_every_split():
    rng = np.random.default_rng(0)
    targets = np.zeros((1000, 2))
    targets[:, 0] = rng.random(1000) < 0.5
    targets[:40, 1] = 1  # a rare class: 40 positives, one of them in the small split
    strata = np.array(["train"] * 900 + ["test"] * 100)
    strata[39] = "test"
    for seed in range(5):
        rows = select_balanced(targets, 20, np.random.default_rng(seed), strata=strata)
        picked = rows[targets[rows, 1] == 1]
        assert len(picked) >= 20 and (strata[picked] == "test").sum() >= 1
        first = rows[targets[rows, 0] == 1]
        assert 1 <= (strata[first] == "test").sum() <= 6  # about its share (10%) of 20-40 draws


def test_source_shortcut_is_visible_on_the_combined_set(fifteen):
    from cxrtool.evaluate.shortcuts import shortcut_baselines

    _, _, mix, _ = fifteen
    fit, ev = mix.rows("train"), mix.rows("test")
    j = mix.labels.index("COVID-19")
    result = shortcut_baselines(mix.index, mix.labels, fit, mix.targets(fit), ev, mix.targets(ev), {}, n_boot=200)
    assert "source" in result["columns"]
    source_auc = result["predictors"]["source"]["COVID-19"]["auroc"]
    y = mix.targets(ev)[:, j]
    from_cohen = (mix.index.iloc[ev]["source"] == "covid").to_numpy()
    # Scoring every Cohen image above every NIH image: ties only among Cohen's own negatives.
    expected = ((~from_cohen & (y == 0)).sum() + 0.5 * (from_cohen & (y == 0)).sum()) / (y == 0).sum()
    assert source_auc == pytest.approx(expected, abs=1e-6) and source_auc > 0.7
    assert "every positive comes from one source" in result["source_confounded"]["COVID-19"]
    assert "positives come from covid" in result["source_confounded"]["COVID-19"]
    assert "Cardiomegaly" not in result["source_confounded"]  # its positives are NIH only, negatives too


def test_evaluate_reports_the_source_shortcut_on_the_combined_set(fifteen, tmp_path):
    import json

    from helpers import quick_train

    _, _, mix, _ = fifteen
    run = quick_train(mix, tmp_path / "run", epochs=2)
    res = runner.invoke(
        app, ["evaluate", str(run), "--bootstrap", "100", "--device", "cpu", "--out", str(tmp_path / "eval")]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert not metrics["labels"]["COVID-19"]["not_computable"]  # both classes in the test split
    shortcuts = metrics["shortcuts"]
    assert shortcuts["predictors"]["source"]["COVID-19"]["auroc"] > 0.7
    assert any(w.startswith("COVID-19: ") and "one source" in w for w in shortcuts["warnings"])
    assert "confounded by source" in res.output and "Within one source" in res.output
    covid = metrics["labels"]["COVID-19"]
    assert "source alone" in covid["source_confounded"]
    # The comparable figure: COVID-19 within the Cohen images only (against Cohen's other pneumonias).
    test = mix.index.iloc[mix.rows("test")]
    cohen_test = test[test["source"] == "covid"]
    within = covid["within_source"]["covid"]
    assert within["n"] == cohen_test["COVID-19"].notna().sum() < covid["n"]
    assert within["positives"] == covid["positives"]  # every positive is a Cohen image
    assert within["negatives"] == (cohen_test["COVID-19"] == 0).sum() < covid["negatives"]
    preds = pd.read_csv(tmp_path / "eval" / "predictions.csv", dtype={"id": str})
    own = preds["id"].str.startswith("covid/")
    assert within["auroc"] == pytest.approx(
        roc_auc_score(preds.loc[own, "true_COVID-19"], preds.loc[own, "prob_COVID-19"])
    )
    # ... and on the Cohen cache's own test split: the patients the binary arms are scored on.
    cohen = fifteen[1]
    own_split = covid["source_cache"]["covid"]
    assert own_split["data"] == str(cohen.root) and own_split["split"] == "test"
    assert own_split["n"] == np.isfinite(cohen.targets(cohen.rows("test"))[:, cohen.labels.index("COVID-19")]).sum()


def test_covid_negative_names_the_pre_pandemic_caches(fifteen, tmp_path):
    nih, cohen, _, _ = fifteen
    base = ["prepare", "combine", str(nih.root), str(cohen.root), "--per-class", "12", "-q"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "none"), "--covid-negative", "none"])
    assert res.exit_code == 0, res.output
    mix = PreparedData(tmp_path / "none")
    assert mix.index.loc[mix.index["source"] == "nih", "COVID-19"].isna().all()  # no longer assumed negative
    assert mix.manifest["settings"]["covid_negative"] == []
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "x"), "--covid-negative", "nih,elsewhere"])
    assert res.exit_code == 2 and "--covid-negative" in res.output and "elsewhere" in res.output
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "y"), "--covid-negative", "covid"])
    assert res.exit_code == 2 and "COVID-19 positives of its own" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_dedupe_of_a_combined_set_keeps_its_counts_true(fifteen, tmp_path):
    nih, cohen, _, _ = fifteen
    res = runner.invoke(
        app,
        [
            "prepare",
            "combine",
            str(nih.root),
            str(cohen.root),
            "--out",
            str(tmp_path / "mix"),
            "--per-class",
            "12",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["prepare", "dedupe", str(tmp_path / "mix"), str(cohen.root), "--drop-from", str(tmp_path / "mix"), "-q"]
    )
    assert res.exit_code == 0, res.output
    mix = PreparedData(tmp_path / "mix")
    assert (mix.index["source"] == "nih").all()  # every Cohen image has its copy in the Cohen cache
    counts = pd.read_csv(mix.root / "counts.csv").set_index(["split", "label"])
    for split in ("train", "val", "test"):
        y = mix.index.loc[mix.index["split"] == split, "COVID-19"]
        assert (
            counts.loc[(split, "COVID-19"), "negative"] == (y == 0).sum()
            and counts.loc[(split, "COVID-19"), "positive"] == 0
        )
        assert mix.manifest["class_counts"][split]["COVID-19"]["negative"] == (y == 0).sum()


def test_the_15_class_model_scores_the_cohen_caches_own_test_patients_as_an_arm(fifteen, tmp_path):
    """reproduce_paper.sh's comparable 15-class arm: the model evaluated on the COVID-19 cache itself."""
    from helpers import quick_train

    _, cohen, mix, _ = fifteen
    run = quick_train(mix, tmp_path / "run", epochs=1)
    out = run / "eval-covid"  # inside the run, as the script writes it
    args = ["evaluate", str(run), "--data", str(cohen.root), "--bootstrap", "100", "--device", "cpu", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    preds = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    test = cohen.index.iloc[cohen.rows("test")]
    assert sorted(preds["id"]) == sorted(test["id"].astype(str))  # the binary arms' test patients, no NIH image
    assert "true_COVID-19" in preds.columns
