"""Near-duplicate radiographs: fingerprints, grouping inside `prepare`, and `prepare dedupe` across caches."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData
from cxrtool.data.fingerprint import distance, fingerprint, near_duplicates
from cxrtool.data.imageio import preprocess
from cxrtool.data.prepare import PrepareFolderConfig, prepare_folder
from cxrtool.data.sources.synthetic import SyntheticConfig, generate_arrays

runner = CliRunner()


def jpeg(img: np.ndarray, quality: int = 70) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))


def resized(img: np.ndarray, factor: float = 0.7) -> np.ndarray:
    h, w = img.shape
    return np.asarray(Image.fromarray(img).resize((int(w * factor), int(h * factor)), Image.Resampling.LANCZOS))


def brighter(img: np.ndarray, shift: int = 15) -> np.ndarray:
    return np.clip(img.astype(int) + shift, 0, 255).astype(np.uint8)


COPIES = {"jpeg": jpeg, "resized": resized, "brighter": brighter}


@pytest.fixture(scope="module")
def phantoms():
    images, frame, _ = generate_arrays(SyntheticConfig(n_patients=40, size=256, seed=11, max_followups=1))
    return images, frame


def test_copies_are_close_and_distinct_patients_are_not_confirmed(phantoms):
    images, _ = phantoms
    fps = [fingerprint(im) for im in images]
    for make in COPIES.values():
        assert distance(fps[0], fingerprint(make(images[0]))) <= 20
    cached = [preprocess(im, 64)[0] for im in images]
    assert near_duplicates(fps, lambda i: cached[i]) == []  # one image per patient, all distinct
    copies = [make(images[k]) for k, make in enumerate(COPIES.values())]
    found = near_duplicates(fps, lambda i: cached[i], [fingerprint(c) for c in copies],
                            lambda j: preprocess(copies[j], 64)[0])
    assert sorted((i, j) for i, j, _ in found) == [(0, 0), (1, 1), (2, 2)]


def save_folder(root: Path, images: dict[str, np.ndarray], patients: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        Image.fromarray(img).save(root / name, **({"quality": 80} if name.endswith(".jpg") else {}))
    pd.DataFrame({"image": list(images), "finding": 0, "patient": [patients[n] for n in images]}).to_csv(root / "list.csv", index=False)
    return root / "list.csv"


@pytest.fixture(scope="module")
def with_copies(phantoms, tmp_path_factory) -> PreparedData:
    images, _ = phantoms
    files = {f"orig{k:02d}.png": img for k, img in enumerate(images[:24])}
    patients = {name: f"p{k}" for k, name in enumerate(files)}
    for k, (kind, make) in enumerate(COPIES.items()):
        files[f"copy_{kind}.jpg" if kind == "jpeg" else f"copy_{kind}.png"] = make(images[k])
        patients[list(files)[-1]] = f"other{k}"
    csv = save_folder(tmp_path_factory.mktemp("copies") / "raw", files, patients)
    return prepare_folder(PrepareFolderConfig(csv=csv, label_cols=["finding"], patient_col="patient",
                                              out=csv.parent.parent / "cache", size=64, workers=1, test_frac=0.3, val_frac=0.3))


def test_prepare_finds_the_copies_under_other_patients_and_keeps_them_in_one_split(with_copies):
    dups = pd.read_csv(with_copies.root / "duplicates.csv", dtype=str)
    found = {frozenset(p) for p in zip(dups["patient_a"], dups["patient_b"])}
    assert found == {frozenset({"p0", "other0"}), frozenset({"p1", "other1"}), frozenset({"p2", "other2"})}
    split = with_copies.index.groupby("patient")["split"].first()
    for k in range(3):
        assert split[f"p{k}"] == split[f"other{k}"]
    assert with_copies.index["fingerprint"].str.len().eq(64).all()
    assert with_copies.manifest["duplicates"] == 3


def test_dedupe_reports_across_caches_and_drops_from_the_external_one(phantoms, with_copies, tmp_path):
    images, _ = phantoms
    files = {f"ext{k}.png": img for k, img in enumerate(images[30:35])}  # not in the first cache
    files.update({f"dup{k}.png": brighter(images[5 + k], 10) for k in range(2)})
    csv = save_folder(tmp_path / "raw", files, {n: n for n in files})
    external = prepare_folder(PrepareFolderConfig(csv=csv, label_cols=["finding"], patient_col="patient",
                                                  out=tmp_path / "ext", size=64, workers=1))
    before_hash = external.data_hash
    res = runner.invoke(app, ["prepare", "dedupe", str(with_copies.root), str(external.root), "--report", str(tmp_path / "pairs.csv")])
    assert res.exit_code == 0, res.output
    pairs = pd.read_csv(tmp_path / "pairs.csv", dtype=str)
    across = pairs[pairs["data_a"] != pairs["data_b"]]
    assert sorted(across["id_b"]) == ["dup0.png", "dup1.png"]
    assert sorted(across["id_a"]) == ["orig05.png", "orig06.png"]
    assert len(PreparedData(external.root)) == 7  # reporting alone changes nothing
    res = runner.invoke(app, ["prepare", "dedupe", str(with_copies.root), str(external.root), "--drop-from", str(external.root)])
    assert res.exit_code == 0, res.output
    cleaned = PreparedData(external.root)
    assert sorted(cleaned.index["id"]) == [f"ext{k}.png" for k in range(5)]
    assert cleaned.images.shape[0] == 5 and cleaned.data_hash != before_hash
    assert np.array_equal(cleaned.images[0], preprocess(images[30], 64)[0])
    skipped = pd.read_csv(cleaned.root / "skipped.csv")
    assert sorted(skipped["id"]) == ["dup0.png", "dup1.png"] and skipped["reason"].str.contains("near-duplicate of").all()
    assert len(PreparedData(with_copies.root)) == 27  # the other cache is untouched
    res = runner.invoke(app, ["prepare", "dedupe", str(external.root), "--drop-from", str(external.root)])
    assert res.exit_code == 2 and "--drop-from" in res.output
