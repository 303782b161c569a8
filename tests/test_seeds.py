"""`finetune --seeds N`: one run per seed, `evaluate` reports their spread, `compare` shows it beside the interval."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import synthetic_cache
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.evaluate.compare import CompareConfig, compare
from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run
from cxrtool.models.checkpoint import load_checkpoint
from cxrtool.runs import read_manifest
from cxrtool.train import FinetuneConfig, finetune

LABEL = "COVID-19"


def config(data, out, **kw) -> FinetuneConfig:
    options = dict(
        parent="none",
        arch="tiny-cnn",
        weights="none",
        data=data.root,
        out=out,
        epochs=2,
        image_size=32,
        workers=0,
        lr=3e-3,
        device="cpu",
    )
    return FinetuneConfig(**{**options, **kw})


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    data = synthetic_cache(root / "data", n_patients=70, size=32, seed=5, labels=[LABEL])
    run = finetune(config(data, root / "arm", seeds=3, seed=7))
    metrics = evaluate_run(EvaluateConfig(run=run, bootstrap=100, device="cpu"))
    return {"root": root, "data": data, "run": run, "metrics": metrics}


def test_one_run_per_seed_and_seed_1_is_the_plain_run(seeds_run, tmp_path):
    run = seeds_run["run"]
    manifest = read_manifest(run)
    assert manifest["kind"] == "seeds" and manifest["seeds"] == [7, 8, 9] and manifest["complete"]
    assert [read_manifest(run / f"seed-{k}")["seed"] for k in (1, 2, 3)] == [7, 8, 9]
    plain = finetune(config(seeds_run["data"], tmp_path / "plain", seed=7))
    a, _ = load_checkpoint(run / "seed-1")
    b, _ = load_checkpoint(plain)
    c, _ = load_checkpoint(run / "seed-2")
    same = [torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())]
    assert all(same)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_evaluate_reports_the_spread_over_seeds_beside_seed_1s_interval(seeds_run):
    run, metrics = seeds_run["run"], seeds_run["metrics"]
    per_seed = [json.loads((run / f"seed-{k}" / "eval" / "metrics.json").read_text()) for k in (1, 2, 3)]
    values = [m["labels"][LABEL]["auroc"] for m in per_seed]
    assert metrics["seeds"]["auroc"][LABEL] == pytest.approx(values)
    s = metrics["seeds"]["spread"][LABEL]
    assert s["mean"] == pytest.approx(np.mean(values)) and s["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (s["min"], s["max"]) == (pytest.approx(min(values)), pytest.approx(max(values)))
    # The headline numbers and predictions are seed-1's: one trained model behind every interval.
    top = json.loads((run / "eval" / "metrics.json").read_text())
    assert top["labels"][LABEL] == per_seed[0]["labels"][LABEL] and top["seeds"]["headline"] == "seed-1"
    predictions = pd.read_csv(run / "eval" / "predictions.csv")
    assert predictions.equals(pd.read_csv(run / "seed-1" / "eval" / "predictions.csv"))
    table = pd.read_csv(run / "eval" / "seeds.csv").set_index("run")
    assert table.loc["sd", LABEL] == pytest.approx(s["sd"]) and list(table.index[:3]) == ["seed-1", "seed-2", "seed-3"]
    assert "Spread over 3 seeds" in (run / "eval" / "per_label.md").read_text()


def test_compare_shows_the_seeds_spread_and_pairs_through_seed_1(seeds_run, tmp_path):
    run = seeds_run["run"]
    compare(
        CompareConfig(
            arms=[f"seeds={run}", f"seed 2 alone={run / 'seed-2'}"], label=LABEL, out=tmp_path / "t", bootstrap=200
        )
    )
    arms = pd.read_csv(tmp_path / "t" / "arms.csv").set_index("arm")
    s = seeds_run["metrics"]["seeds"]["spread"][LABEL]
    assert arms.loc["seeds", "seeds"] == 3 and arms.loc["seeds", "seeds_sd"] == pytest.approx(s["sd"])
    assert np.isnan(arms.loc["seed 2 alone", "seeds"])
    assert arms.loc["seeds", "test_set"] == arms.loc["seed 2 alone", "test_set"]
    seed_2 = json.loads((run / "seed-2" / "eval" / "metrics.json").read_text())["labels"][LABEL]["auroc"]
    diffs = pd.read_csv(tmp_path / "t" / "differences.csv")
    row = diffs[(diffs["arm"] == "seed 2 alone") & (diffs["label"] == LABEL)].iloc[0]
    if row["status"] == "ok":
        assert row["diff"] == pytest.approx(seed_2 - seeds_run["metrics"]["labels"][LABEL]["auroc"], abs=1e-6)
    else:  # a small generated test split: the difference may be not estimable, and says why
        assert row["status"].startswith("not estimable") and min(row["positive_patients"], row["negative_patients"]) < 5
    text = (tmp_path / "t" / "table.md").read_text()
    assert f"{s['mean']:.3f} ± {s['sd']:.3f} ({s['min']:.3f}-{s['max']:.3f}; 3 seeds)" in text


def test_seeds_with_folds_is_one_line(tmp_path):
    data = synthetic_cache(tmp_path / "data", n_patients=20, size=32, seed=1, labels=[LABEL])
    res = CliRunner().invoke(
        app,
        ["finetune", "--from", "none", "--arch", "tiny-cnn", "--data", str(data.root), "--seeds", "2", "--folds", "3"],
    )
    assert res.exit_code == 2 and "--seeds with --folds" in res.output and len(res.output.strip().splitlines()) == 1
