"""`cxrtool compare`: the paper table is read from the evaluations, arm by arm, without recomputing."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import cv_run_from
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.errors import CxrError
from cxrtool.evaluate.compare import CompareConfig, compare
from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run

runner = CliRunner()
LABEL = "Cardiomegaly"


@pytest.fixture(scope="module")
def evaluated(trained_run, synth_data, tmp_path_factory):
    """An evaluated single-split run and an evaluated 3-fold cross-validation run."""
    root = tmp_path_factory.mktemp("compare")
    run = shutil.copytree(trained_run, root / "run")
    single = evaluate_run(EvaluateConfig(run=run, bootstrap=100, device="cpu", compare="chexnet"))

    cv, probs, truth, folds = cv_run_from(trained_run, synth_data, root / "cv")
    cv_metrics = evaluate_run(EvaluateConfig(run=cv, bootstrap=100))
    j = synth_data.labels.index(LABEL)
    per_fold = [roc_auc_score(truth[(folds == k).to_numpy(), j], probs[(folds == k).to_numpy(), j]) for k in range(3)]
    return {"run": run, "cv": cv, "single": single, "cv_metrics": cv_metrics, "per_fold": per_fold, "root": root}


def test_rows_hold_the_evaluations_numbers(evaluated, tmp_path):
    table_md = tmp_path / "t" / "table.md"
    cfg = CompareConfig(
        arms=[f"NIH-pretrained={evaluated['run']}"],
        cv=[f"NIH-pretrained={evaluated['cv']}"],
        skipped=["ImageNet only=weights not in the torch cache"],
        label=LABEL,
        pretrain=[f"nih={evaluated['run']}"],
        out=tmp_path / "t",
    )
    assert compare(cfg) == table_md
    arms = pd.read_csv(tmp_path / "t" / "arms.csv")
    assert list(arms["arm"]) == ["NIH-pretrained", "ImageNet only"]
    row = arms.iloc[0]
    e = evaluated["single"]["labels"][LABEL]
    assert row["test_auroc"] == pytest.approx(e["auroc"]) and row["test_low"] == pytest.approx(e["auroc_low"])
    assert row["cv_folds"] == 3
    assert row["cv_mean"] == pytest.approx(np.mean(evaluated["per_fold"]))
    assert row["cv_sd"] == pytest.approx(np.std(evaluated["per_fold"], ddof=1))
    assert row["cv_pooled"] == pytest.approx(evaluated["cv_metrics"]["labels"][LABEL]["pooled_auroc"])
    # The best metadata shortcut is the strongest of the evaluation's predictors on this label.
    predictors = evaluated["single"]["shortcuts"]["predictors"]
    best = max(predictors, key=lambda n: predictors[n][LABEL]["auroc"] or -1)
    assert row["shortcut"] == best and row["shortcut_auroc"] == pytest.approx(predictors[best][LABEL]["auroc"])
    others = [
        v["auroc"]
        for l, v in evaluated["single"]["labels"].items()
        if l != LABEL and v.get("auroc") is not None and not v.get("not_estimable") and not v.get("source_confounded")
    ]
    assert row["other_labels"] == len(others) and row["other_mean"] == pytest.approx(np.mean(others))
    assert arms.iloc[1]["status"] == "skipped: weights not in the torch cache"
    text = table_md.read_text()
    assert "ImageNet only | skipped: weights not in the torch cache" in text
    assert f"{e['auroc']:.3f} [{e['auroc_low']:.3f}, {e['auroc_high']:.3f}]" in text
    # The pretraining table puts CheXNet's published number beside ours, per finding.
    findings = pd.read_csv(tmp_path / "t" / "findings.csv")
    assert LABEL not in set(findings["finding"])  # the compared label is not a pretraining finding
    effusion = findings.set_index("finding").loc["Effusion"]
    assert effusion["CheXNet 2017"] == pytest.approx(0.8638)
    assert effusion["nih_auroc"] == pytest.approx(evaluated["single"]["labels"]["Effusion"]["auroc"])
    with pytest.raises(CxrError, match="--overwrite"):
        compare(cfg)


def test_a_user_table_becomes_a_column_and_bad_rows_are_named(evaluated, tmp_path):
    good = tmp_path / "table1.csv"
    good.write_text("label,auroc\nEffusion,0.81\nPleural Thickening,0.7\n")
    cfg = CompareConfig(
        arms=[f"a={evaluated['run']}"],
        label=LABEL,
        pretrain=[str(evaluated["run"])],
        published=[f"Report Table 1={good}"],
        out=tmp_path / "t",
    )
    compare(cfg)
    findings = pd.read_csv(tmp_path / "t" / "findings.csv").set_index("finding")
    assert findings.loc["Effusion", "Report Table 1"] == pytest.approx(0.81)
    assert findings.loc["Effusion", "run_auroc"] == pytest.approx(evaluated["single"]["labels"]["Effusion"]["auroc"])
    assert "| finding | run [95% CI] | Report Table 1 |" in (tmp_path / "t" / "table.md").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("label,auroc\nEffusion,0.81\nMass,high\n")
    with pytest.raises(CxrError, match=r"bad.csv: row 3: auroc"):
        compare(
            CompareConfig(
                arms=[f"a={evaluated['run']}"],
                label=LABEL,
                pretrain=[str(evaluated["run"])],
                published=[f"T={bad}"],
                out=tmp_path / "u",
            )
        )


def test_cli_errors_are_one_line(evaluated, tmp_path):
    unevaluated = tmp_path / "fresh"
    unevaluated.mkdir()
    cases = [
        (["--arm", f"x={unevaluated}"], "cxrtool evaluate"),
        (["--arm", str(evaluated["run"])], "NAME=VALUE"),
        (["--arm", f"x={evaluated['run']}", "--label", "COVID-19"], "no label 'COVID-19'"),
        (
            ["--arm", f"x={evaluated['run']}", "--cv", f"x={evaluated['run']}", "--label", LABEL],
            "not a cross-validation run",
        ),
        ([], "at least one --arm"),
    ]
    for args, needle in cases:
        res = runner.invoke(app, ["compare", *args, "--out", str(tmp_path / "o")])
        assert res.exit_code == 2 and needle in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
    ok = runner.invoke(
        app, ["compare", "--arm", f"x={evaluated['run']}", "--label", LABEL, "--out", str(tmp_path / "o")]
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o" / "table.md").is_file() and not (tmp_path / "o" / "findings.csv").exists()


# ---------------------------------------------------------------- arms paired on the same patients


def altered_evaluation(folder, dest, seed: int, mix: float = 0.5, drop_patients: int = 0):
    """A copy of an evaluation folder whose probabilities are partly replaced by noise (another
    "arm" scored on the same images), optionally without the images of its first patients."""
    shutil.copytree(folder, dest)
    pred = pd.read_csv(dest / "predictions.csv", dtype={"id": str, "patient": str})
    rng = np.random.default_rng(seed)
    for c in [c for c in pred.columns if c.startswith("prob_")]:
        pred[c] = (1 - mix) * pred[c] + mix * rng.random(len(pred))
    if drop_patients:
        pred = pred[~pred["patient"].isin(sorted(pred["patient"].unique())[:drop_patients])]
    pred.to_csv(dest / "predictions.csv", index=False)
    return dest


def paired_arrays(a, b, label):
    pa = pd.read_csv(a / "predictions.csv", dtype={"id": str, "patient": str}).set_index("id")
    pb = pd.read_csv(b / "predictions.csv", dtype={"id": str, "patient": str}).set_index("id").loc[pa.index]
    keep = pa[f"true_{label}"].notna().to_numpy()
    return (
        pa[f"true_{label}"].to_numpy(float)[keep],
        pa[f"prob_{label}"].to_numpy(float)[keep],
        pb[f"prob_{label}"].to_numpy(float)[keep],
        pa["patient"].to_numpy()[keep],
        pa,
        pb,
    )


def test_each_arm_is_paired_with_the_reference_on_the_same_patients(evaluated, tmp_path):
    from cxrtool.evaluate.paired import delong

    ref = evaluated["run"] / "eval"
    other = altered_evaluation(ref, tmp_path / "noisy", seed=1)
    cfg = CompareConfig(arms=[f"A={evaluated['run']}", f"B={other}"], label=LABEL, out=tmp_path / "t", bootstrap=300)
    compare(cfg)
    diffs = pd.read_csv(tmp_path / "t" / "differences.csv")
    row = diffs[(diffs["arm"] == "B") & (diffs["label"] == LABEL)].iloc[0]
    y, p_ref, p_arm, patients, _, _ = paired_arrays(ref, other, LABEL)
    assert row["reference"] == "A" and row["kind"] == "test split" and row["status"] == "ok"
    assert row["diff"] == pytest.approx(roc_auc_score(y, p_arm) - roc_auc_score(y, p_ref))
    assert row["low"] < row["diff"] < row["high"] and 0 <= row["p"] <= 1
    test = delong(y, p_ref, p_arm, patients)
    assert row["delong_p"] == pytest.approx(test["p"]) and row["delong_low"] == pytest.approx(test["low"])
    # Every label the arms share has a row (or says why not), and the mean over the estimable ones.
    labels = set(diffs[diffs["arm"] == "B"]["label"])
    assert {*evaluated["single"]["labels"], "mean"} <= labels
    mean = diffs[(diffs["arm"] == "B") & (diffs["label"] == "mean")].iloc[0]
    ok = diffs[(diffs["arm"] == "B") & (diffs["label"] != "mean") & (diffs["status"] == "ok")]
    assert mean["diff"] == pytest.approx(ok["diff"].mean()) and mean["labels"] == len(ok)
    # arms.csv carries the compared label's difference and both rows the same test set.
    arms = pd.read_csv(tmp_path / "t" / "arms.csv").set_index("arm")
    assert arms.loc["B", "diff"] == pytest.approx(row["diff"]) and np.isnan(arms.loc["A", "diff"])
    assert arms.loc["A", "test_set"] == arms.loc["B", "test_set"] == row["test_set"]
    text = (tmp_path / "t" / "table.md").read_text()
    assert "each arm against A, on the same patients" in text
    assert f"{row['diff']:.3f} [{row['low']:.3f}, {row['high']:.3f}]" in text
    # --reference B: the difference changes sign.
    compare(CompareConfig(arms=cfg.arms, label=LABEL, out=tmp_path / "r", bootstrap=300, reference="B"))
    flipped = pd.read_csv(tmp_path / "r" / "differences.csv")
    back = flipped[(flipped["arm"] == "A") & (flipped["label"] == LABEL)].iloc[0]
    assert back["diff"] == pytest.approx(-row["diff"]) and back["reference"] == "B"


def test_arms_on_different_test_sets_are_refused_unless_allowed(evaluated, tmp_path):
    ref = evaluated["run"] / "eval"
    fewer = altered_evaluation(ref, tmp_path / "fewer", seed=2, drop_patients=3)
    cfg = CompareConfig(arms=[f"A={evaluated['run']}", f"B={fewer}"], label=LABEL, out=tmp_path / "t", bootstrap=200)
    with pytest.raises(
        CxrError, match=r"--arm B and --arm A were scored on different test sets \(\d+ vs \d+ test patients"
    ):
        compare(cfg)
    other_cache = altered_evaluation(ref, tmp_path / "hash", seed=3)
    metrics = (other_cache / "metrics.json").read_text().replace(evaluated["single"]["data_hash"], "0" * 16)
    (other_cache / "metrics.json").write_text(metrics)
    with pytest.raises(CxrError, match="data hash"):
        compare(CompareConfig(arms=[f"A={evaluated['run']}", f"C={other_cache}"], label=LABEL, out=tmp_path / "u"))
    cfg.allow_different_test_sets = True
    compare(cfg)
    diffs = pd.read_csv(tmp_path / "t" / "differences.csv")
    assert list(diffs["status"]) == [diffs["status"].iloc[0]] and diffs["status"].iloc[0].startswith("not paired")
    arms = pd.read_csv(tmp_path / "t" / "arms.csv").set_index("arm")
    assert arms.loc["A", "test_set"] != arms.loc["B", "test_set"]
    text = (tmp_path / "t" / "table.md").read_text()
    assert arms.loc["A", "test_set"] in text and arms.loc["B", "test_set"] in text
    res = runner.invoke(
        app,
        [
            "compare",
            "--arm",
            f"A={evaluated['run']}",
            "--arm",
            f"B={fewer}",
            "--label",
            LABEL,
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 2 and "--allow-different-test-sets" in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    res = runner.invoke(app, ["compare", "--arm", f"A={evaluated['run']}", "--reference", "Z", "--label", LABEL])
    assert res.exit_code == 2 and "--reference Z: no arm of that name" in res.output


def test_k_fold_twins_are_paired_fold_by_fold(evaluated, tmp_path):
    cv_eval = evaluated["cv"] / "eval"
    twin = altered_evaluation(cv_eval, tmp_path / "twin", seed=4)
    cfg = CompareConfig(cv=[f"A={evaluated['cv']}", f"B={twin}"], label=LABEL, out=tmp_path / "t", bootstrap=200)
    compare(cfg)
    diffs = pd.read_csv(tmp_path / "t" / "differences.csv")
    row = diffs[(diffs["arm"] == "B") & (diffs["kind"] == "k-fold") & (diffs["label"] == LABEL)].iloc[0]
    _, _, _, _, pa, pb = paired_arrays(cv_eval, twin, LABEL)
    per_fold = []
    for fold in sorted(pa["fold"].unique()):
        f = (pa["fold"] == fold).to_numpy()
        y = pa[f"true_{LABEL}"].to_numpy(float)[f]
        per_fold.append(
            roc_auc_score(y, pb[f"prob_{LABEL}"].to_numpy()[f]) - roc_auc_score(y, pa[f"prob_{LABEL}"].to_numpy()[f])
        )
    assert row["folds"] == 3 and row["diff"] == pytest.approx(np.mean(per_fold))
    half = row["high"] - row["diff"]
    from scipy import stats

    assert half == pytest.approx(stats.t.ppf(0.975, 2) * np.std(per_fold, ddof=1) / np.sqrt(3))
    # The same images in other folds are not paired fold by fold.
    moved = pd.read_csv(twin / "predictions.csv", dtype={"id": str, "patient": str})
    first = moved["patient"] == moved["patient"].iloc[0]
    moved.loc[first, "fold"] = (moved.loc[first, "fold"] + 1) % 3  # one patient's images in another fold
    moved.to_csv(twin / "predictions.csv", index=False)
    compare(CompareConfig(cv=cfg.cv, label=LABEL, out=tmp_path / "u", bootstrap=200))
    diffs = pd.read_csv(tmp_path / "u" / "differences.csv")
    assert "different folds" in diffs["status"].iloc[0]


def test_no_arm_is_said_before_anything_about_the_output_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cxrtool.cli import app

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "mine.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["compare"])
    assert res.exit_code == 2 and "--arm" in res.output and "mine.txt" not in res.output
