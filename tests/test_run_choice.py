"""A command given no run takes the newest run that can do what was asked, and says which."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.labels import needs_any_class, needs_classes
from cxrtool.errors import CxrError
from cxrtool.runs import resolve_run

runner = CliRunner()


def fake_run(root, name, labels, mtime):
    run = root / name
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "checkpoints" / "best" / "card.json").write_text(json.dumps({"labels": labels}))
    (run / "manifest.json").write_text("{}")
    os.utime(run / "manifest.json", (mtime, mtime))
    return run


def test_the_newest_run_with_the_class_is_taken_and_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXRTOOL_QUIET", "0")
    pretrain = fake_run(tmp_path, "pretrain-a", ["Cardiomegaly", "Effusion"], 1_000)
    finetune = fake_run(tmp_path, "finetune-b", ["COVID-19"], 2_000)
    assert resolve_run(None, tmp_path) == finetune
    assert resolve_run(None, tmp_path, need=needs_classes(["cardiomegaly"])) == pretrain
    assert resolve_run(None, tmp_path, need=needs_any_class(["Effusion", "Mass"], "a label of X")) == pretrain
    assert resolve_run(None, tmp_path, need=needs_classes(["COVID-19"])) == finetune
    # A run given explicitly is taken as given, whatever it has.
    assert resolve_run(finetune, tmp_path, need=needs_classes(["Cardiomegaly"])) == finetune


def test_no_run_with_the_class_is_one_line_naming_it(tmp_path):
    fake_run(tmp_path, "finetune-b", ["COVID-19"], 2_000)
    with pytest.raises(CxrError, match=r"has the class Hernia .*has COVID-19\)\. Train one"):
        resolve_run(None, tmp_path, need=needs_classes(["Hernia"]))


def test_cam_and_evaluate_take_the_run_that_has_the_label(tmp_path, monkeypatch, trained_run, synth_data):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "pretrain-tiny")
    newer = fake_run(runs, "finetune-covid", ["COVID-19"], 4_000_000_000)
    monkeypatch.chdir(tmp_path)
    label = synth_data.labels[0]
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(synth_data.images[0]).save(image)
    res = runner.invoke(app, ["cam", str(image), "--class", label, "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (runs / "pretrain-tiny" / "cam").is_dir() and not (newer / "cam").exists()
    res = runner.invoke(app, ["evaluate", "--data", str(synth_data.root), "-q", "--device", "cpu", "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    assert (runs / "pretrain-tiny" / "eval" / "metrics.json").is_file() and not (newer / "eval").exists()


def test_boxes_of_classes_the_model_lacks_are_refused_before_any_map(tmp_path, trained_run, synth_data):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    boxes = tmp_path / "boxes.csv"
    pd.DataFrame({"id": ["a.png"], "label": ["Hernia"], "x": [1], "y": [1], "w": [5], "h": [5]}).to_csv(
        boxes, index=False
    )
    res = runner.invoke(
        app,
        ["cam", "--run", str(run), "--data", str(synth_data.root), "--boxes", str(boxes), "--top", "1", "-q"],
    )
    assert res.exit_code != 0 and "nothing" in res.output and "would be scored" in res.output
    written = [p for p in (run / "cam").rglob("*") if p.is_file()] if (run / "cam").exists() else []
    assert written == []


def test_a_class_with_no_box_on_the_images_is_refused_before_any_map(tmp_path, trained_run, synth_data):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    boxed = synth_data.boxes()
    boxed = boxed[boxed["label"].isin(synth_data.labels)].iloc[:1]
    other = next(l for l in synth_data.labels if l != boxed["label"].iloc[0])
    boxes = tmp_path / "boxes.csv"
    boxed.to_csv(boxes, index=False)
    args = [
        "cam",
        "--run",
        str(run),
        "--data",
        str(synth_data.root),
        "--split",
        "all",
        "--boxes",
        str(boxes),
        "--allow-seen",
        "-q",
    ]
    res = runner.invoke(app, [*args, "--class", other, "--device", "cpu"])
    assert res.exit_code == 2 and "nothing would be scored" in res.output
    assert not (run / "cam").exists()
    res = runner.invoke(app, [*args, "--class", boxed["label"].iloc[0], "--device", "cpu", "--max-images", "400"])
    assert res.exit_code == 0, res.output
    assert (run / "cam" / "box_scores.csv").is_file()


def test_top_classes_that_hit_no_box_are_refused_before_any_map(tmp_path, trained_run, synth_data):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    args = ["cam", "--run", str(run), "--data", str(synth_data.root), "--split", "all", "--allow-seen"]
    args += ["--max-images", "1", "--top", "1", "-q", "--device", "cpu"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "probe")])  # which class is this image's top one
    assert res.exit_code == 0, res.output
    first = pd.read_csv(tmp_path / "probe" / "cams.csv").iloc[0]
    other = next(label for label in synth_data.labels if label != first["class"])

    def boxes_of(label: str):
        path = tmp_path / f"boxes-{label}.csv"
        pd.DataFrame({"id": [first["id"]], "label": [label], "x": [4], "y": [4], "w": [20], "h": [20]}).to_csv(
            path, index=False
        )
        return str(path)

    res = runner.invoke(app, [*args, "--boxes", boxes_of(other)])
    assert res.exit_code == 2 and "nothing would be scored" in res.output
    assert not (run / "cam").exists()  # refused before the run's cam folder was made
    res = runner.invoke(app, [*args, "--boxes", boxes_of(str(first["class"]))])
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(run / "cam" / "box_scores_per_image.csv")
    assert scored["class"].tolist() == [first["class"]]
