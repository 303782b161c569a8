"""Lineage: no score on an image a model (or one it was finetuned from) trained or validated on.

Generated caches, tiny networks, one epoch: each test checks a behaviour that failed before the
record existed (a fold's run scored the cache's test split, 13 of whose 28 images fold 1 had
trained or validated on here; a rebuilt cache was used without a word; an evaluation of earlier
weights was reported as current).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import quick_train, synthetic_cache
from typer.testing import CliRunner

from cxrtool.cam import CamConfig, run_cam
from cxrtool.cli import app
from cxrtool.data.cache import PreparedData, write_cache
from cxrtool.data.lineage import SEEN, content_keys, read_lineage
from cxrtool.data.prepare import PrepareNihConfig, prepare_nih
from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS, SyntheticConfig, write_raw
from cxrtool.embed import EmbedConfig, run_embed
from cxrtool.errors import CxrError
from cxrtool.evaluate.compare import CompareConfig, compare
from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run
from cxrtool.models.checkpoint import load_checkpoint, save_checkpoint
from cxrtool.predict.pipeline import PredictConfig, predict_files
from cxrtool.report.html_page import ReportConfig, build_report
from cxrtool.train import FinetuneConfig, TrainConfig, finetune, pretrain

TINY = dict(arch="tiny-cnn", image_size=32, epochs=1, workers=0, device="cpu")


def _eval(run: Path, **kw) -> dict:
    return evaluate_run(EvaluateConfig(run=run, bootstrap=0, shortcuts=False, device="cpu", **kw))


def _resplit(data: PreparedData, out: Path, seed: int) -> PreparedData:
    """The same images (and file hashes) as `data`, with another seeded patient split."""
    index = data.index.copy()
    patients = index["patient"].unique()
    draw = dict(zip(patients, np.random.default_rng(seed).random(len(patients))))
    index["split"] = index["patient"].map(lambda p: "train" if draw[p] < 0.6 else ("val" if draw[p] < 0.8 else "test"))
    write_cache(out, np.asarray(data.images), index, data.labels, manifest={"source": "synthetic"})
    return PreparedData(out)


@pytest.fixture(scope="module")
def covid(tmp_path_factory):
    data = synthetic_cache(
        tmp_path_factory.mktemp("lin") / "covid", n_patients=60, size=32, seed=7, labels=["COVID-19"]
    )
    # As prepare writes it: each image's file hash (here one per generated image).
    index = data.index.copy()
    index["file_hash"] = [hashlib.sha1(i.encode()).hexdigest() for i in index["id"]]
    write_cache(data.root, np.asarray(data.images), index, data.labels, manifest={"source": "synthetic"})
    return PreparedData(data.root)


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, covid):
    out = tmp_path_factory.mktemp("lin") / "cv"
    return finetune(FinetuneConfig(parent="none", data=covid.root, out=out, folds=3, lr=3e-3, **TINY))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, covid):
    return pretrain(TrainConfig(data=covid.root, weights="none", out=tmp_path_factory.mktemp("lin") / "pre", **TINY))


def test_a_fold_run_scores_its_own_held_out_fold(cv_run, covid, tmp_path):
    fold = cv_run / "fold-1"
    oof = pd.read_csv(cv_run / "oof_predictions.csv", dtype={"id": str})
    held = set(oof.loc[oof["fold"] == 1, "id"])
    lineage = read_lineage(fold)
    assert lineage.recorded and lineage.fold == 1 and (fold / SEEN).is_file()
    keys = pd.Series(content_keys(covid), index=covid.index["id"])
    seen_ids = set(keys[keys.isin(lineage.own())].index)
    assert seen_ids and not seen_ids & held and seen_ids | held == set(covid.index["id"])
    test_ids = set(covid.index.loc[covid.index["split"] == "test", "id"])
    assert test_ids & seen_ids  # the cache's test split is not held out from a fold: the old default leaked

    metrics = _eval(fold)
    scored = set(pd.read_csv(fold / "eval" / "predictions.csv", dtype={"id": str})["id"])
    assert scored == held and metrics["scored"] == "held-out fold 1"
    assert metrics["in_sample"] is False and metrics["lineage"]["checked"] and metrics["lineage"]["seen"] == 0

    cams = run_cam(CamConfig(run=fold, out=tmp_path / "cam", overlays=False, device="cpu"))
    assert set(cams["pairs"]["id"]) == held and cams["pairs"]["in_sample"].eq(0).all()

    embedded = run_embed(
        EmbedConfig(run=fold, space="latent", method="som", som_grid="3x3", som_epochs=1, out=tmp_path / "embed")
    )
    assert embedded["n_images"] == len(held)
    assert embedded["scores"]["spaces"]["latent"]["som"]["in_sample"] is False

    with pytest.raises(
        CxrError, match=r"evaluate .*fold-1.*: \d+ of \d+ images were trained or validated on .*--allow-seen"
    ):
        _eval(fold, split="val", out=tmp_path / "val")


def test_evaluate_refuses_a_seen_image_and_labels_it_in_sample_when_allowed(pretrained, tmp_path):
    n_train = int((PreparedData(read_lineage(pretrained).runs[0]["data"]).index["split"] == "train").sum())
    with pytest.raises(CxrError, match=rf"{n_train} of {n_train} images were trained or validated on \(.* by .*pre"):
        _eval(pretrained, split="train", out=tmp_path / "refused")
    assert not (tmp_path / "refused" / "metrics.json").exists()

    metrics = _eval(pretrained, split="train", out=tmp_path / "allowed", allow_seen=True)
    assert metrics["in_sample"] is True and metrics["lineage"]["seen"] == n_train
    assert "in-sample" in metrics["what"]
    assert "in-sample" in (tmp_path / "allowed" / "per_label.md").read_text()
    predictions = pd.read_csv(tmp_path / "allowed" / "predictions.csv")
    assert predictions["seen"].eq(1).all()

    clean = _eval(pretrained, out=tmp_path / "test")
    assert clean["in_sample"] is False and clean["lineage"]["seen"] == 0
    assert "seen" not in pd.read_csv(tmp_path / "test" / "predictions.csv").columns

    # The command line says the same in one line, and the flag is spelled as everywhere else.
    result = CliRunner().invoke(app, ["evaluate", str(pretrained), "--split", "train", "--out", str(tmp_path / "cli")])
    assert result.exit_code != 0 and "--allow-seen" in result.output and "Traceback" not in result.output


def test_a_finetuned_runs_check_covers_its_parents_images(pretrained, covid, tmp_path):
    other = _resplit(covid, tmp_path / "resplit", seed=3)
    child = finetune(FinetuneConfig(parent=str(pretrained), data=other.root, out=tmp_path / "child", lr=3e-3, **TINY))
    lineage = read_lineage(child)
    assert [r["run"] for r in lineage.runs] == [str(child.resolve()), str(pretrained.resolve())]
    assert set(lineage.table["run"]) == {0, 1}
    # The new split's test patients were partly the parent's training patients: refused, naming the parent.
    parent_train = set(covid.index.loc[covid.index["split"] != "test", "id"])
    overlap = other.index.loc[other.index["split"] == "test", "id"].isin(parent_train).sum()
    assert overlap > 0
    with pytest.raises(CxrError, match=rf"{overlap} of \d+ images were trained or validated on \({overlap} by .*pre"):
        _eval(child)
    # The record is a copy: the check holds when the parent is gone.
    (pretrained / "manifest.json").rename(tmp_path / "parent-manifest.json")
    try:
        with pytest.raises(CxrError, match="--allow-seen"):
            _eval(child, out=tmp_path / "again")
    finally:
        (tmp_path / "parent-manifest.json").rename(pretrained / "manifest.json")


def test_a_cache_rebuilt_with_another_seed_is_refused(covid, tmp_path):
    data = _resplit(covid, tmp_path / "data", seed=0)
    run = pretrain(TrainConfig(data=data.root, weights="none", out=tmp_path / "run", **TINY))
    _resplit(covid, tmp_path / "data", seed=11)  # the same folder, rebuilt: splits moved
    with pytest.raises(CxrError, match="were trained or validated on"):
        _eval(run)
    # A run that records no images (made before the record) cannot be checked: a changed cache is refused.
    old = quick_train(PreparedData(tmp_path / "data"), tmp_path / "old", epochs=1)
    _resplit(covid, tmp_path / "data", seed=12)
    with pytest.raises(CxrError, match=r"changed since the run was trained .* pass --data"):
        _eval(old)


def test_a_stale_evaluation_is_reported_by_report_and_refused_by_compare(covid, tmp_path, capsys):
    run = pretrain(TrainConfig(data=covid.root, weights="none", out=tmp_path / "run", **TINY))
    metrics = _eval(run)
    assert len(metrics["weights"]["sha256"]) == 64 and metrics["data_hash"] == covid.data_hash
    compare(CompareConfig(arms=[f"a={run}"], out=tmp_path / "fresh"))  # current: accepted
    assert pd.read_csv(tmp_path / "fresh" / "arms.csv").loc[0, "status"] == "ok"

    # The run's best weights change after the evaluation (trained further).
    model, card = load_checkpoint(run)
    for p in model.parameters():
        p.data.add_(0.01)
    save_checkpoint(run / "checkpoints" / "best", model, card)

    capsys.readouterr()
    page = build_report(ReportConfig(run=run, out=tmp_path / "report.html")).read_text()
    assert "stale: it scored earlier weights" in page and "stale: it scored earlier weights" in capsys.readouterr().err
    with pytest.raises(CxrError, match=r"--arm a: .*stale.*--allow-stale"):
        compare(CompareConfig(arms=[f"a={run}"], out=tmp_path / "table"))
    compare(CompareConfig(arms=[f"a={run}"], out=tmp_path / "table", allow_stale=True))
    arms = pd.read_csv(tmp_path / "table" / "arms.csv")
    assert arms.loc[0, "status"] == "ok; stale"


def test_compare_refuses_an_in_sample_evaluation(pretrained, tmp_path):
    _eval(pretrained, split="val", out=tmp_path / "val", allow_seen=True)
    with pytest.raises(CxrError, match=r"--arm v: .* scored \d+ of \d+ images .*--allow-seen"):
        compare(CompareConfig(arms=[f"v={tmp_path / 'val'}"], out=tmp_path / "t"))
    compare(CompareConfig(arms=[f"v={tmp_path / 'val'}"], out=tmp_path / "t", allow_seen=True))
    assert "in-sample" in pd.read_csv(tmp_path / "t" / "arms.csv").loc[0, "status"]


def test_a_run_without_a_record_is_warned_about_not_refused(trained_run, tmp_path, capsys):
    metrics = _eval(trained_run, out=tmp_path / "e")
    assert metrics["lineage"]["checked"] is False and metrics["in_sample"] is False
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert "lineage" not in manifest


def test_a_film_is_recognised_in_another_cache_size_and_as_a_loose_copy(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, SyntheticConfig(n_patients=20, size=64, seed=5))
    findings = ",".join(PRETRAIN_FINDINGS)
    small = prepare_nih(PrepareNihConfig(root=raw, out=tmp_path / "c32", size=32, findings=findings, workers=1))
    other = prepare_nih(PrepareNihConfig(root=raw, out=tmp_path / "c48", size=48, findings=findings, workers=1))
    run = pretrain(TrainConfig(data=small.root, weights="none", out=tmp_path / "run", **TINY))
    seen = int(small.index["split"].isin(["train", "val"]).sum())
    # The same files prepared at another size: other pixels, the same bytes, so the same keys.
    with pytest.raises(CxrError, match=rf"{seen} of {len(other)} images were trained or validated on"):
        _eval(run, data=other.root, split="all")
    # A training film copied into another folder, given as a loose file.
    name = small.index.loc[small.index["split"] == "train", "id"].iloc[0]
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    copy.write_bytes((raw / "images" / name).read_bytes())
    with pytest.raises(CxrError, match=r"1 of 1 images were trained or validated on"):
        run_cam(CamConfig(inputs=[copy], run=run, out=tmp_path / "cam", device="cpu"))
    cams = run_cam(CamConfig(inputs=[copy], run=run, out=tmp_path / "cam", device="cpu", allow_seen=True))
    assert cams["pairs"]["in_sample"].eq(1).all() and cams["lineage"]["in_sample"] is True
    table = predict_files(PredictConfig(inputs=[copy], run=run, device="cpu", workers=0))
    assert table["in_sample"].tolist() == [1]
