"""`cxrtool demo --quick`: the whole pipeline on generated data, as a newcomer runs it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cxrtool.cli import app


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "cxrtool-demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_writes_every_stage(demo_out):
    out, _ = demo_out
    pre, ft = out / "runs" / "pretrain-tiny-cnn", out / "runs" / "finetune-covid"
    for path in (
        out / "data" / "synth-nih" / "images.u8.npy",
        out / "data" / "synth-covid" / "index.csv",
        pre / "checkpoints" / "best" / "model.safetensors",
        pre / "metrics.csv",
        pre / "curves.png",
        pre / "eval" / "metrics.json",
        pre / "eval" / "roc.png",
        pre / "cam" / "box_scores.csv",
        pre / "embed" / "scores.json",
        pre / "report.html",
        ft / "eval" / "predictions.csv",
        ft / "report.html",
    ):
        assert path.is_file(), path
    assert json.loads((ft / "manifest.json").read_text())["parent"].startswith(str(pre.resolve()))
    assert len(list((pre / "cam").rglob("*.png"))) > 0


def test_demo_summary_is_clearly_above_chance(demo_out):
    out, output = demo_out
    pre = out / "runs" / "pretrain-tiny-cnn"
    metrics = json.loads((pre / "eval" / "metrics.json").read_text())
    assert metrics["mean_auroc"] > 0.75
    assert metrics["mean_auroc_low"] <= metrics["mean_auroc"] <= metrics["mean_auroc_high"]
    covid = json.loads((out / "runs" / "finetune-covid" / "eval" / "metrics.json").read_text())
    assert covid["mean_auroc"] > 0.75
    embed = json.loads((pre / "embed" / "scores.json").read_text())
    # Latent beats pixels on test images, which the network never trained on.
    assert embed["split"] == "test" and embed["scored_on"] == "test"
    scores = embed["spaces"]
    assert not scores["latent"]["full"]["in_sample"]
    assert scores["latent"]["full"]["knn_accuracy"] > scores["pixels"]["full"]["knn_accuracy"]
    assert "pretrain mean AUROC" in output and "demo finished" in output


def test_demo_refuses_to_overwrite(demo_out):
    out, _ = demo_out
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 2
    assert "--overwrite" in result.output
