"""`cxrtool pretrain` / `cxrtool finetune` from the command line: artifacts, resume, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cxrtool.cli import app

runner = CliRunner()
TINY = ["--arch", "tiny-cnn", "--weights", "none", "--image-size", "32", "--workers", "0", "--device", "cpu", "-q"]


def test_pretrain_writes_every_artifact_and_resumes(tmp_path, synth_data):
    out = tmp_path / "run"
    res = runner.invoke(app, ["pretrain", "--data", str(synth_data.root), "--out", str(out), "--epochs", "2", *TINY])
    assert res.exit_code == 0, res.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["epochs"] == 2 and config["arch"] == "tiny-cnn" and config["labels"] == synth_data.labels
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "pretrain" and manifest["data"] == str(synth_data.root.resolve())
    assert manifest["data_hash"] == synth_data.data_hash and manifest["seed"] == 0 and manifest["parent"] is None
    assert manifest["environment"]["torch"]
    metrics = pd.read_csv(out / "metrics.csv")
    expected = [
        "epoch",
        "train_loss",
        "val_loss",
        *[f"val_auroc_{l}" for l in synth_data.labels],
        "val_auroc_mean",
        "lr",
        "images_per_s",
    ]
    assert list(metrics.columns) == expected and len(metrics) == 2
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for which in ("best", "last"):
        card = json.loads((out / "checkpoints" / which / "card.json").read_text())
        assert card["arch"] == "tiny-cnn" and card["labels"] == synth_data.labels and card["image_size"] == 32
        assert card["preprocessing"]["cache_size"] == synth_data.size and card["data_hash"] == synth_data.data_hash
        assert card["data_dir"] == str(synth_data.root.resolve()) and "val_auroc_mean" in card["metrics"]
    assert (out / "checkpoints" / "last" / "state.safetensors").is_file()

    res = runner.invoke(app, ["pretrain", str(out), "--resume", "--epochs", "3", "-q"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    assert yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "densnet121"], "Did you mean 'densenet121'"),
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--select", "best"], "--select"),
        (["--labels", "Hernia"], "lacks the label(s) Hernia"),
    ],
)
def test_bad_pretrain_options_give_one_line(tmp_path, synth_data, args, message):
    base = [
        "pretrain",
        "--data",
        str(synth_data.root),
        "--out",
        str(tmp_path / "r"),
        "--epochs",
        "1",
        "--weights",
        "none",
        "--arch",
        "tiny-cnn",
        "-q",
    ]
    res = runner.invoke(app, base + args)
    assert res.exit_code == 2
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in " ".join(res.output.split())


def test_a_run_argument_without_resume_is_refused(tmp_path, synth_data):
    res = runner.invoke(app, ["pretrain", str(tmp_path), "--data", str(synth_data.root), "-q"])
    assert res.exit_code == 2 and "--resume" in res.output


def test_finetune_cli_names_the_parent_and_refuses_missing_labels(tmp_path, trained_run, synth_data):
    out = tmp_path / "ft"
    res = runner.invoke(
        app,
        [
            "finetune",
            "--from",
            str(trained_run),
            "--data",
            str(synth_data.root),
            "--labels",
            "Effusion,Mass",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--oversample",
            "--freeze-backbone",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "finetune" and manifest["parent"].startswith(str(trained_run.resolve()))
    assert json.loads((out / "checkpoints" / "best" / "card.json").read_text())["labels"] == ["Effusion", "Mass"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["oversample"] is True and config["freeze_backbone"] is True and config["select"] == "auroc"

    res = runner.invoke(
        app,
        [
            "finetune",
            "--from",
            str(trained_run),
            "--data",
            str(synth_data.root),
            "--labels",
            "COVID-19",
            "--out",
            str(tmp_path / "bad"),
            "-q",
        ],
    )
    assert res.exit_code == 2 and "lacks the label(s) COVID-19" in " ".join(res.output.split())
    res = runner.invoke(app, ["finetune", "--from", str(tmp_path / "nowhere"), "--data", str(synth_data.root), "-q"])
    assert res.exit_code == 2 and "--from" in res.output


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_shared_options_reach_both_commands_and_their_configs(kind, monkeypatch):
    # Every option field of the kind's config is an option of its command, and each value given
    # on the command line arrives in the config the command builds.
    import dataclasses

    import cxrtool.train as train
    from cxrtool.optionspec import option_spec

    cls = train.TrainConfig if kind == "pretrain" else train.FinetuneConfig
    help_text = runner.invoke(app, [kind, "--help"], env={"COLUMNS": "250"}).output
    for f in dataclasses.fields(cls):
        if (spec := option_spec(f)) is not None:
            assert spec.flags_for(f.name)[0].split("/")[0] in help_text, f.name
    seen = {}
    monkeypatch.setattr(train, kind, lambda cfg, overwrite: seen.update(cfg=cfg, overwrite=overwrite))
    res = runner.invoke(
        app,
        [
            kind,
            "--epochs",
            "7",
            "--lr",
            "0.5",
            "--labels",
            "A,B",
            "--seed",
            "3",
            "--no-oversample",
            "--overwrite",
            "-q",
            *(["--from", "none"] if kind == "finetune" else []),
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.epochs, cfg.lr, cfg.labels, cfg.seed, cfg.oversample) == (7, 0.5, ["A", "B"], 3, False)
    assert seen["overwrite"] is True
