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
