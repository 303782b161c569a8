"""`--tensorboard` on pretrain and finetune: what TensorBoard reads, and nothing without the flag."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
from helpers import pretrain_cli
from typer.testing import CliRunner

from cxrtool.cli import app

runner = CliRunner()
BATCH = ["--batch-size", "16"]
TINY = ["--image-size", "32", "--workers", "0", "--device", "cpu", "-q", *BATCH]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_pretrain_and_finetune_log_every_epoch(tmp_path, synth_data):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    out = tmp_path / "runs" / "pre"
    res = pretrain_cli(synth_data, out, "--tensorboard", *BATCH, epochs=2)
    assert res.exit_code == 0, res.output
    acc = _events(out / "tensorboard")
    metrics = pd.read_csv(out / "metrics.csv")
    tags = acc.Tags()["scalars"]
    for tag in [
        "loss/train",
        "loss/val",
        "auroc/mean",
        "lr",
        "images_per_s",
        *[f"auroc/{l}" for l in synth_data.labels],
    ]:
        assert tag in tags, tag
    train = acc.Scalars("loss/train")
    assert [e.step for e in train] == [1, 2]
    assert [round(e.value, 5) for e in train] == [round(v, 5) for v in metrics["train_loss"]]
    assert [round(e.value, 5) for e in acc.Scalars("auroc/mean")] == [round(v, 5) for v in metrics["val_auroc_mean"]]
    grids = acc.Images("train/augmented_images")
    assert len(grids) == 1 and grids[0].width > 32 and grids[0].height > 32  # a grid, not one image

    ft = tmp_path / "runs" / "ft"
    res = runner.invoke(
        app,
        [
            "finetune",
            "--from",
            str(out),
            "--data",
            str(synth_data.root),
            "--out",
            str(ft),
            "--epochs",
            "1",
            "--tensorboard",
            *TINY,
        ],
    )
    assert res.exit_code == 0, res.output
    assert [e.step for e in _events(ft / "tensorboard").Scalars("loss/val")] == [1]


def test_without_the_flag_nothing_is_written(tmp_path, synth_data):
    out = tmp_path / "run"
    res = pretrain_cli(synth_data, out, *BATCH)
    assert res.exit_code == 0, res.output
    assert not (out / "tensorboard").exists()


def test_without_the_package_the_flag_fails_in_one_line(tmp_path, synth_data, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    res = pretrain_cli(synth_data, out, "--tensorboard", *BATCH)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "pip install tensorboard" in res.output and not out.exists()
