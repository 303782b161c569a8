"""`cxrtool cam` end to end: files and folders, a cache split, box scores, mistakes and overwrites."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrtool.cam import CamConfig, run_cam
from cxrtool.cli import app
from cxrtool.data.cache import write_cache
from cxrtool.errors import CxrError

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, ["cam", *args, "--quiet", "--device", "cpu"])


@pytest.fixture()
def workdir(tmp_path, monkeypatch, trained_run):
    """A folder with ./runs/<run> (so 'the newest run' is found) and a few X-ray files."""
    shutil.copytree(trained_run, tmp_path / "runs" / "pretrain-tiny")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def save_images(synth_data, folder: Path, rows) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in rows:
        path = folder / synth_data.index["id"].iloc[r]
        Image.fromarray(np.asarray(synth_data.images[r])).save(path)
        paths.append(path)
    return paths


def test_cam_of_a_file_works_as_typed(workdir, synth_data):
    from cxrtool.models.checkpoint import load_checkpoint
    from cxrtool.predict.pipeline import predict_arrays

    negative = int(np.flatnonzero(synth_data.targets()[:, synth_data.labels.index("Cardiomegaly")] == 0)[0])
    (path,) = save_images(synth_data, workdir, [negative])
    res = cli(path.name, "--class", "Cardiomegaly")
    assert res.exit_code == 0, res.output
    cam_dir = workdir / "runs" / "pretrain-tiny" / "cam"
    stem = Path(path.name).stem
    overlay = Image.open(cam_dir / "overlays" / f"{stem}_Cardiomegaly_cam.png")
    assert overlay.mode in ("RGB", "RGBA") and min(overlay.size) >= 64
    # A class the image does not have still gets an honest map, not an error.
    raw = np.load(cam_dir / "maps" / f"{stem}_Cardiomegaly_cam.npy")
    assert raw.shape == (64, 64) and raw.dtype == np.float32 and np.isfinite(raw).all() and raw.std() > 0
    index = pd.read_csv(cam_dir / "cams.csv")
    model, card = load_checkpoint(workdir / "runs" / "pretrain-tiny")
    expected = predict_arrays(model, np.asarray(synth_data.images[[negative]]), 64, "cpu")[
        0, card["labels"].index("Cardiomegaly")
    ]
    assert index["probability"].iloc[0] == pytest.approx(expected, abs=1e-5)
    # The same call again would overwrite: refused, then allowed with --overwrite.
    again = cli(path.name, "--class", "Cardiomegaly")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert cli(path.name, "--class", "Cardiomegaly", "--overwrite").exit_code == 0


def test_unknown_class_lists_the_models_classes(workdir, synth_data):
    (path,) = save_images(synth_data, workdir, [0])
    res = cli(str(path), "--class", "Cardiomegally")
    assert res.exit_code == 2
    assert "Cardiomegaly, Effusion, Mass, Nodule, Pneumothorax" in res.output and "Did you mean" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--class", "Mass", "--top", "2"], "--class and --top"),
        (["--method", "scorecam"], "gradcam++"),
        (["--data", "somewhere"], "not both"),
        (["--thresholds", "0.5,1.5"], "--thresholds"),
    ],
)
def test_option_mistakes_are_one_line_errors(workdir, synth_data, args, message):
    (path,) = save_images(synth_data, workdir, [0])
    res = cli(str(path), *args)
    assert res.exit_code == 2 and message in res.output


def test_a_folder_with_a_bad_file_maps_the_rest_and_lists_the_bad_one(workdir, synth_data):
    save_images(synth_data, workdir / "xrays", [0, 1, 2])
    (workdir / "xrays" / "broken.png").write_bytes(b"not a png")
    res = cli("runs/pretrain-tiny", "xrays", "--top", "2", "--out", "out", "--method", "gradcam")
    assert res.exit_code == 0, res.output
    assert "broken.png" in res.output
    index = pd.read_csv(workdir / "out" / "cams.csv")
    assert len(index) == 6 and set(index["method"]) == {"gradcam"}
    for _image_id, rows in index.groupby("id"):  # each image's two most probable classes, most probable first
        assert rows["probability"].is_monotonic_decreasing
    skipped = pd.read_csv(workdir / "out" / "skipped.csv")
    assert skipped["path"].str.endswith("broken.png").tolist() == [True]


def test_a_cache_split_in_batches_with_the_caches_boxes(workdir, synth_data):
    res = cli("--data", str(synth_data.root), "--split", "test", "--batch-size", "4", "--out", "split", "--no-overlays")
    assert res.exit_code == 0, res.output
    boxes = synth_data.boxes()
    test_ids = set(synth_data.index["id"].iloc[synth_data.rows("test")])
    known = boxes["id"].isin(test_ids) & boxes["label"].isin(synth_data.labels)  # COVID-19 boxes: not a model class
    expected = boxes[known].groupby(["id", "label"]).size()
    per_image = pd.read_csv(workdir / "split" / "box_scores_per_image.csv", dtype={"id": str})
    # By default every boxed class of every test image is mapped and scored, each once.
    assert sorted(zip(per_image["id"], per_image["class"])) == sorted(expected.index)
    assert (
        per_image["boxes"].to_numpy() == expected.loc[list(zip(per_image["id"], per_image["class"]))].to_numpy()
    ).all()
    summary = pd.read_csv(workdir / "split" / "box_scores.csv").set_index("class")
    assert summary.loc["all", "images"] == len(per_image)
    assert summary.loc["all", "pointing_hit_rate"] == pytest.approx(per_image["hit"].mean())
    # Beside the two baselines, each rate inside its own 95% interval.
    assert summary.loc["all", "prior_hit_rate"] == pytest.approx(per_image["prior_hit"].mean())
    # ... and the paired difference from the prior pointer, on the same maps.
    assert summary.loc["all", "model_minus_prior"] == pytest.approx(
        (per_image["hit"].astype(float) - per_image["prior_hit"].astype(float)).mean(), abs=1e-6
    )  # box_scores.csv holds 6 decimals
    for rate in ("pointing_hit_rate", "prior_hit_rate", "box_fraction", "model_minus_prior"):
        assert (summary[f"{rate}_low"] <= summary[rate] + 1e-9).all() and (
            summary[rate] <= summary[f"{rate}_high"] + 1e-9
        ).all()
    patients = dict(zip(synth_data.index["id"].astype(str), synth_data.index["patient"].astype(str)))
    assert per_image["patient"].astype(str).tolist() == [patients[i] for i in per_image["id"]]
    assert set(per_image["method"]) == {"cam"}
    assert not (workdir / "split" / "overlays").exists()
    assert len(list((workdir / "split" / "maps").glob("*.npy"))) == len(per_image)


def test_a_cache_whose_boxes_file_is_empty_maps_the_most_probable_class(workdir, synth_data):
    data = workdir / "nobox"
    write_cache(
        data,
        np.asarray(synth_data.images),
        synth_data.index,
        synth_data.labels,
        manifest={"source": "synthetic"},
        boxes=synth_data.boxes().iloc[:0],
    )
    res = cli("--data", str(data), "--split", "test", "--max-images", "3", "--out", "nobox-cam", "--no-overlays")
    assert res.exit_code == 0, res.output
    index = pd.read_csv(workdir / "nobox-cam" / "cams.csv", dtype={"id": str})
    assert len(index) == 3 and index["id"].nunique() == 3
    assert not (workdir / "nobox-cam" / "box_scores.csv").exists()


def test_nih_box_file_scores_files_like_the_caches_own_boxes(workdir, synth_data):
    boxes = synth_data.boxes()
    rows = [int(np.flatnonzero(synth_data.index["id"] == i)[0]) for i in boxes["id"].unique()[:6]]
    save_images(synth_data, workdir / "xrays", rows)
    scale = 1024 / synth_data.size
    with open(workdir / "BBox_List_2017.csv", "w") as fh:
        fh.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        for b in boxes.itertuples():
            fh.write(f"{b.id},{b.label},{b.x * scale},{b.y * scale},{b.w * scale},{b.h * scale}\n")
    from_files = cli("xrays", "--boxes", "BBox_List_2017.csv", "--out", "files", "--no-overlays")
    assert from_files.exit_code == 0, from_files.output
    ids = [synth_data.index["id"].iloc[r] for r in rows]
    cfg = CamConfig(data=synth_data.root, split="all", out=workdir / "cache", overlays=False, maps=False, device="cpu")
    from_cache = run_cam(cfg)["per_image"]
    a = pd.read_csv(workdir / "files" / "box_scores_per_image.csv", dtype={"id": str}).sort_values(["id", "class"])
    b = from_cache[from_cache["id"].isin(ids)].sort_values(["id", "class"])
    assert len(a) == len(b) > 0
    assert a["hit"].tolist() == b["hit"].tolist()
    assert np.allclose(a["iou@0.5"], b["iou@0.5"], atol=1e-4)


def test_library_call_and_yaml_config(workdir, synth_data, tmp_path):
    (tmp_path / "cam.yaml").write_text("method: gradcam++\nclasses: [Mass, Effusion]\nmax_images: 3\n")
    res = cli("--data", str(synth_data.root), "--config", str(tmp_path / "cam.yaml"), "--out", "yaml")
    assert res.exit_code == 0, res.output
    index = pd.read_csv(workdir / "yaml" / "cams.csv")
    assert len(index) == 6 and set(index["class"]) == {"Mass", "Effusion"} and set(index["method"]) == {"gradcam++"}
    out = run_cam(
        CamConfig(
            run=workdir / "runs" / "pretrain-tiny",
            data=synth_data.root,
            classes=["Nodule"],
            max_images=2,
            out=workdir / "lib",
            device="cpu",
            split="val",
        )
    )
    assert len(out["overlays"]) == len(out["maps"]) == 2 and all(p.is_file() for p in out["overlays"] + out["maps"])
    assert out["box_scores"] is not None and list(out["pairs"]["class"]) == ["Nodule", "Nodule"]
    with pytest.raises(CxrError, match="--top"):
        CamConfig(top=0)


def test_nothing_readable_is_an_error(workdir):
    (workdir / "broken.png").write_bytes(b"not a png")
    res = cli("broken.png", "--class", "Mass")
    assert res.exit_code == 2 and "could be read" in res.output and "broken.png" in res.output
