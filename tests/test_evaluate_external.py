"""`evaluate --external`: copies of the lineage's images are dropped and listed before scoring."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_cache
from PIL import Image

from cxrtool.data.cache import PreparedData, write_cache
from cxrtool.errors import CxrError
from cxrtool.evaluate.external import DUPLICATES_FILE, lineage_copies, lineage_data
from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run
from cxrtool.runs import write_manifest


@pytest.fixture
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _altered(img: np.ndarray) -> np.ndarray:
    """A re-hosted copy: brighter, cropped by 3 pixels a side and scaled back up."""
    size = img.shape[0]
    crop = np.clip(img.astype(np.int16) + 12, 0, 255).astype(np.uint8)[3 : size - 3, 3 : size - 3]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def external_with_copies(root, source: PreparedData, seed: int = 7):
    """A generated collection whose first rows are copies of `source`'s train images: three
    exact, two altered. Returns the cache and {external id: copied id}."""
    ext = synthetic_cache(root.parent / (root.name + "-fresh"), n_patients=40, size=source.size, seed=seed)
    images = np.array(ext.images)
    index = ext.index.copy()
    train = source.rows("train")
    planted = {}
    for k, row in enumerate(train[:5]):
        img = np.asarray(source.images[row])
        images[k] = img if k < 3 else _altered(img)
        planted[index["id"].iloc[k]] = source.index["id"].iloc[row]
    write_cache(root, images, index, ext.labels, manifest={"source": "synthetic"})
    return PreparedData(root), planted


def test_external_copies_of_training_images_are_dropped_and_listed(run, synth_data, tmp_path):
    ext, planted = external_with_copies(tmp_path / "ext", synth_data)
    metrics = evaluate_run(EvaluateConfig(run=run, external=ext.root, shortcuts=False, bootstrap=100, device="cpu"))
    listed = pd.read_csv(run / "eval" / DUPLICATES_FILE, dtype=str)
    assert dict(zip(listed["id"], listed["copy_of_id"])) == planted
    assert set(listed["copy_of_split"]) == {"train"}
    assert listed["copy_of_data"].map(lambda p: PreparedData(p).data_hash == synth_data.data_hash).all()
    e = metrics["external"]
    assert e["images"] == len(ext) - len(planted) and e["copies_dropped"] == len(planted)
    preds = pd.read_csv(run / "eval" / "external_predictions.csv", dtype=str)
    assert not set(preds["id"]) & set(planted) and len(preds) == len(ext) - len(planted)
    assert json.loads((run / "eval" / "metrics.json").read_text())["external"]["copies_dropped"] == len(planted)


def test_a_set_that_is_all_copies_is_refused(run, synth_data, tmp_path):
    with pytest.raises(CxrError, match="every one of its"):
        evaluate_run(EvaluateConfig(run=run, external=synth_data.root, shortcuts=False, bootstrap=100, device="cpu"))


def test_lineage_reaches_the_ancestors_caches_and_their_copies(trained_run, synth_data, tmp_path):
    # A finetuned run on another cache, whose parent is the trained run: the parent's cache is in its lineage.
    other = synthetic_cache(tmp_path / "other", n_patients=30, size=synth_data.size, seed=9)
    child = tmp_path / "child"
    shutil.copytree(trained_run / "checkpoints", child / "checkpoints")
    write_manifest(
        child, kind="finetune", data=str(other.root), parent=str((trained_run / "checkpoints" / "best").resolve())
    )
    chain = lineage_data(child)
    assert [d.resolve() for _, d in chain] == [other.root.resolve(), synth_data.root.resolve()]
    assert chain[1][0] == trained_run
    ext, planted = external_with_copies(tmp_path / "ext", synth_data)
    table, checked = lineage_copies(ext, child)
    assert len(checked) == 2
    assert dict(zip(table["id"], table["copy_of_id"])) == planted  # found in the grandparent's cache, not the run's


def test_exact_copies_are_found_by_file_hash(tmp_path):
    rng = np.random.default_rng(0)
    a_img = rng.integers(0, 255, (6, 32, 32), dtype=np.uint8)
    b_img = rng.integers(0, 255, (4, 32, 32), dtype=np.uint8)
    base = {"view": "PA", "source": "x", "split": "train", "Mass": 0.0}
    a_idx = pd.DataFrame({"id": [f"a{i}" for i in range(6)], "patient": [f"p{i}" for i in range(6)], **base})
    a_idx["file_hash"], a_idx["source_path"] = [f"h{i}" for i in range(6)], [f"a/{i}.png" for i in range(6)]
    b_idx = pd.DataFrame({"id": [f"b{i}" for i in range(4)], "patient": [f"q{i}" for i in range(4)], **base})
    b_idx["file_hash"] = ["h2", "z1", "z2", "z3"]  # b0 holds a2's bytes (its pixels differ: the hash alone decides)
    b_idx["source_path"] = [f"b/{i}.png" for i in range(4)]
    write_cache(tmp_path / "a", a_img, a_idx, ["Mass"], manifest={"source": "x"})
    write_cache(tmp_path / "b", b_img, b_idx, ["Mass"], manifest={"source": "x"})
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    write_manifest(run, kind="pretrain", data=str(tmp_path / "a"))
    table, _ = lineage_copies(PreparedData(tmp_path / "b"), run)
    assert table["id"].tolist() == ["b0"] and table["copy_of_id"].tolist() == ["a2"]
    assert table["method"].tolist() == ["identical file"]
