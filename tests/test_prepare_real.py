"""`prepare nih` and `prepare covid` on the real data in ../shared/data (skipped when it is absent).

Expected numbers are recomputed here from the publishers' own files, never copied from a run.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrtool.data.cache import PreparedData, check_no_leak
from cxrtool.data.labels import NIH_LABELS
from cxrtool.data.prepare import PrepareCovidConfig, PrepareNihConfig, prepare_covid, prepare_nih


@pytest.fixture(scope="module")
def nih_cache(nih_root, tmp_path_factory) -> PreparedData:
    return prepare_nih(PrepareNihConfig(root=nih_root, out=tmp_path_factory.mktemp("nih") / "c", size=32, workers=2))


@pytest.fixture(scope="module")
def covid_cache(covid_root, tmp_path_factory) -> PreparedData:
    return prepare_covid(
        PrepareCovidConfig(root=covid_root, out=tmp_path_factory.mktemp("covid") / "c", size=32, workers=2)
    )


def _nih_rows(root: Path) -> dict[str, list[str]]:
    """Image name -> its header-quirk-free row, read with the csv module."""
    with open(root / "Data_Entry_2017_v2020.csv", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {row[0]: row for row in reader}


def test_nih_sample_caches_exactly_the_images_present_with_their_labels(nih_root, nih_cache):
    present = sorted(p.name for p in (nih_root / "images").glob("*.png"))
    assert len(nih_cache) == len(present) == 1073
    assert sorted(nih_cache.index["id"]) == present
    assert nih_cache.images.shape == (len(present), 32, 32)
    rows = _nih_rows(nih_root)
    expected = Counter(t for name in present for t in rows[name][1].split("|"))
    for label in NIH_LABELS:
        assert int(nih_cache.index[label].sum()) == expected[label], label
    assert nih_cache.labels == NIH_LABELS
    # Every absent row of the label file is listed as skipped, with the reason.
    skipped = pd.read_csv(nih_cache.root / "skipped.csv")
    assert len(skipped) == len(rows) - len(present)
    assert skipped["reason"].str.contains("not found").all()


def test_nih_sample_split_is_by_patient_and_carries_metadata(nih_root, nih_cache):
    index = nih_cache.index
    check_no_leak(index)
    assert set(index["split"]) == {"train", "val", "test"}
    patients = index["id"].str[:8].astype(int).astype(str)
    assert (patients == index["patient"]).all()
    rows = _nih_rows(nih_root)
    first = index.iloc[0]
    assert first["sex"] == rows[first["id"]][5] and first["view"] == rows[first["id"]][6]
    assert {"crop_x", "crop_y", "crop_side", "orig_width", "orig_height", "fingerprint"} <= set(index.columns)
    assert nih_cache.manifest["splits"]["test"]["images"] == int((index["split"] == "test").sum())


def test_nih_boxes_are_scaled_from_1024_pixels_to_the_cache(nih_root, nih_cache):
    raw = pd.read_csv(
        nih_root / "BBox_List_2017.csv",
        header=None,
        skiprows=1,
        usecols=range(6),
        names=["id", "label", "x", "y", "w", "h"],
    )
    raw = raw[raw["id"].isin(set(nih_cache.index["id"]))]
    boxes = nih_cache.boxes()
    assert len(boxes) == len(raw) > 0
    assert set(boxes["label"]) <= set(NIH_LABELS)  # "Infiltrate" became "Infiltration"
    # 1024-pixel coordinates on a 256-pixel file cached at 32 pixels: divide by 32.
    ours = boxes.sort_values(["id", "x"]).reset_index(drop=True)
    theirs = raw.sort_values(["id", "x"]).reset_index(drop=True)
    inside = (theirs["x"] + theirs["w"] <= 1024) & (theirs["y"] + theirs["h"] <= 1024)
    for col in ("x", "y", "w", "h"):
        assert np.allclose(ours.loc[inside, col], theirs.loc[inside, col] / 32, atol=0.011), col


def test_cohen_set_caches_its_frontal_xrays(covid_root, covid_cache):
    meta = pd.read_csv(covid_root / "metadata.csv", dtype=str, keep_default_na=False)
    frontal = meta[(meta["modality"] == "X-ray") & meta["view"].isin(["PA", "AP", "AP Supine"])]
    present = frontal[[(covid_root / f / n).is_file() for f, n in zip(frontal["folder"], frontal["filename"])]]
    # The 28 `todo` rows (not yet labelled upstream) are kept, COVID-19 unknown (tests/test_covid_labels.py).
    assert len(covid_cache) == len(present) == 559
    assert int(covid_cache.index["COVID-19"].sum()) == int(present["finding"].str.contains("COVID-19").sum())
    assert int(covid_cache.index["COVID-19"].isna().sum()) == int((present["finding"] == "todo").sum()) == 28
    assert covid_cache.labels == ["COVID-19"]
    skipped = pd.read_csv(covid_cache.root / "skipped.csv")
    assert len(skipped) == len(frontal) - len(present) > 0
    assert skipped["reason"].str.contains("MISSING_images.txt").all()


def test_cohen_set_has_no_patient_or_identical_file_in_two_splits(covid_root, covid_cache):
    index = covid_cache.index
    check_no_leak(index)
    digests = index["source_path"].map(lambda p: hashlib.sha1((covid_root / p).read_bytes()).hexdigest())
    assert (index.groupby(digests)["split"].nunique() == 1).all()
    # The files filed under two patient ids upstream: both owners share one split.
    split_of = index.groupby("patient")["split"].first()
    assert split_of["285"] == split_of["339"] and split_of["287"] == split_of["340"]


def test_cohen_same_pixel_pairs_under_two_patients_are_reported(covid_cache):
    dups = pd.read_csv(covid_cache.root / "duplicates.csv", dtype=str)
    pairs = {frozenset(p) for p in zip(dups["patient_a"], dups["patient_b"])}
    assert frozenset({"285", "339"}) in pairs and frozenset({"287", "340"}) in pairs
    assert (dups["patient_a"] != dups["patient_b"]).all()
    index = covid_cache.index.set_index("id")
    for a, b in zip(dups["id_a"], dups["id_b"]):
        assert index.loc[a, "split"] == index.loc[b, "split"]


def test_cohen_patients_137_and_202_share_a_film_found_by_alignment(covid_cache):
    # One radiograph, re-windowed and cropped a little differently, filed under two patients.
    dups = pd.read_csv(covid_cache.root / "duplicates.csv", dtype=str)
    pair = dups[dups.apply(lambda r: {r["patient_a"], r["patient_b"]} == {"137", "202"}, axis=1)]
    assert len(pair) == 1 and pair["method"].iloc[0] == "aligned correlation"
    split_of = covid_cache.index.groupby("patient")["split"].first()
    assert split_of["137"] == split_of["202"]


def test_cohen_lookalike_films_of_different_patients_are_not_paired(covid_cache):
    """Each image's nearest neighbours by descriptor (the look-alikes the search considers) are,
    apart from the few true copies, rejected by the aligned correlation."""
    from cxrtool.data.imageio import load_preprocessed
    from cxrtool.data.neardup.align import DEFAULT_MIN_SCORE, align_pairs, fine_image, work_image
    from cxrtool.data.neardup.descriptors import descriptors

    index = covid_cache.index
    dups = pd.read_csv(covid_cache.root / "duplicates.csv", dtype=str)
    joined = {frozenset(p) for p in zip(dups["patient_a"], dups["patient_b"])}
    root = Path(covid_cache.manifest["settings"]["root"])
    rows = np.arange(0, len(index), 6)
    images = [load_preprocessed(root / index["source_path"].iloc[r], 128)[0] for r in rows]
    whole = np.stack([descriptors(im, 1)[0] for im in images])
    whole -= whole.mean(axis=0)
    whole /= np.linalg.norm(whole, axis=1, keepdims=True)
    sim = whole @ whole.T
    np.fill_diagonal(sim, -1)
    pairs = [(a, int(np.argmax(sim[a]))) for a in range(len(rows))]
    pairs = [
        (a, b)
        for a, b in pairs
        if index["patient"].iloc[rows[a]] != index["patient"].iloc[rows[b]]
        and frozenset({index["patient"].iloc[rows[a]], index["patient"].iloc[rows[b]]}) not in joined
    ]
    assert len(pairs) >= 50
    matches = align_pairs(
        np.stack([work_image(images[a]) for a, _ in pairs]),
        np.stack([work_image(images[b]) for _, b in pairs]),
        np.stack([fine_image(images[a]) for a, _ in pairs]),
        np.stack([fine_image(images[b]) for _, b in pairs]),
    )
    assert max(m.score for m in matches) < DEFAULT_MIN_SCORE
