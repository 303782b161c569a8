"""Cohen findings that say nothing about COVID-19 are unknown, and embed classes Cohen images by their finding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrtool.data.cache import PreparedData
from cxrtool.data.combine_labels import fill_labels
from cxrtool.data.labels import NO_FINDING, UNKNOWN_CLASS
from cxrtool.data.prepare import PrepareCovidConfig, prepare_covid
from cxrtool.data.sources.covid import finding_class, label_value, read_covid
from cxrtool.embed import EmbedConfig, run_embed
from cxrtool.embed.features import primary_findings
from cxrtool.embed.scores import centroid_distances, chance_accuracy

FINDINGS = ["COVID-19", "todo", "Unknown", "", "No Finding", "SARS", "Pneumonia/Viral/Unknown", "Streptococcus"]


def cohen_folder(root, findings, repeat: int = 1, seed: int = 0):
    """A Cohen-layout folder: metadata.csv and one PNG per row (distinct random films)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = ["patientid,finding,view,modality,folder,filename"]
    k = 0
    for _ in range(repeat):
        for finding in findings:
            Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(root / "images" / f"{k}.png")
            cell = f'"{finding}"' if "," in finding else finding
            rows.append(f"p{k},{cell},PA,X-ray,images,{k}.png")
            k += 1
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_findings_that_say_nothing_are_unknown_for_covid(tmp_path):
    table = read_covid(PrepareCovidConfig(root=cohen_folder(tmp_path, FINDINGS), out=tmp_path / "c"))
    covid = dict(zip(table.rows["finding"], table.rows["COVID-19"]))
    assert len(table.rows) == len(FINDINGS)  # nothing left out for saying nothing
    for finding in ("todo", "Unknown", "", "Pneumonia/Viral/Unknown"):
        assert np.isnan(covid[finding]), finding
    assert covid["COVID-19"] == 1 and covid["No Finding"] == 0 and covid["SARS"] == 0 and covid["Streptococcus"] == 0
    assert "3 of them name no finding yet" in table.notes[0]  # todo, Unknown, blank (not the pneumonia)


def test_pneumonia_of_unknown_cause_is_still_a_pneumonia():
    assert label_value("Pneumonia/Viral/Unknown", "Pneumonia") == 1
    assert np.isnan(label_value("Unknown", "Pneumonia")) and np.isnan(label_value("todo", "Pneumonia"))


def test_real_cohen_todo_rows_are_kept_with_covid_unknown(covid_root, tmp_path):
    data = prepare_covid(PrepareCovidConfig(root=covid_root, out=tmp_path / "c", size=32, workers=2))
    meta = pd.read_csv(covid_root / "metadata.csv", dtype=str, keep_default_na=False)
    frontal = meta[(meta["modality"] == "X-ray") & meta["view"].isin(["PA", "AP", "AP Supine"])]
    present = frontal[[(covid_root / f / n).is_file() for f, n in zip(frontal["folder"], frontal["filename"])]]
    todo = int((present["finding"] == "todo").sum())
    assert todo == 28  # data/README: 28 frontal rows not yet labelled upstream, every file present
    assert len(data) == len(present)
    unknown = data.index["COVID-19"].isna()
    assert int(unknown.sum()) == todo
    assert (data.index.loc[unknown, "finding"] == "todo").all()
    assert int((data.index["COVID-19"] == 0).sum()) == int((~present["finding"].str.contains("COVID-19|todo")).sum())


def test_combine_reads_an_older_caches_unknown_as_unknown():
    # A cache prepared before this rule stored COVID-19 = 0 for 'Unknown'.
    frame = pd.DataFrame({"finding": ["Unknown", "SARS", "COVID-19", np.nan], "COVID-19": [0.0, 0.0, 1.0, 0.0]})
    filled, _ = fill_labels(frame, ["COVID-19"], covid_negative=False, labels=["Pneumonia", "COVID-19"])
    assert np.isnan(filled["COVID-19"].iloc[0]) and filled["COVID-19"].iloc[1:].tolist() == [0, 1, 0]


def test_images_without_a_positive_label_are_classed_by_their_source():
    labels = ["COVID-19"]
    targets = np.array([[1.0], [0.0], [0.0], [0.0], [np.nan], [0.0], [np.nan]])
    findings = np.array(["COVID-19", "SARS", "No Finding", "Pneumocystis", "todo", np.nan, np.nan], dtype=object)
    classes = primary_findings(targets, labels, findings=findings)
    # Another source's image (no finding) with all labels known negative is "No Finding" as NIH says;
    # one with every label unknown is unknown.
    assert classes.tolist() == [
        "COVID-19",
        "SARS",
        NO_FINDING,
        "Pneumocystis",
        UNKNOWN_CLASS,
        NO_FINDING,
        UNKNOWN_CLASS,
    ]
    assert finding_class("Pneumonia/Bacterial/Klebsiella") == "Klebsiella"
    assert chance_accuracy(np.array(["a", "a", "b", UNKNOWN_CLASS, UNKNOWN_CLASS])) == pytest.approx(2 / 3)
    table = centroid_distances(np.eye(7), targets, labels, negatives=classes)
    assert set(table.index) == {"COVID-19", "SARS", NO_FINDING, "Pneumocystis"}
    assert table.loc[NO_FINDING, "images"] == 2


def test_embed_on_a_covid_only_cache_uses_findings_as_classes(tmp_path):
    findings = ["COVID-19", "SARS", "Streptococcus", "Pneumocystis", "No Finding", "todo"]
    root = cohen_folder(tmp_path / "raw", findings, repeat=6)
    data = prepare_covid(PrepareCovidConfig(root=root, out=tmp_path / "covid", size=32, workers=1, max_distance=0))
    assert "finding" in PreparedData(data.root).index.columns
    res = run_embed(
        EmbedConfig(
            data=data.root,
            space="pixels",
            method="som",
            split="all",
            out=tmp_path / "emb",
            pixel_size=8,
            som_grid="3x3",
        )
    )
    scores = res["scores"]
    assert set(scores["classes"]) == {"COVID-19", "SARS", "Streptococcus", "Pneumocystis", NO_FINDING, UNKNOWN_CLASS}
    assert scores["classes"][NO_FINDING] == 6  # only where the finding says so
    coords = pd.read_csv(tmp_path / "emb" / "coords_pixels_som.csv")
    assert set(coords.loc[coords["finding"] == "SARS", "labels"]) == {"SARS"}
    centroids = pd.read_csv(tmp_path / "emb" / "centroids_pixels.csv", index_col=0)
    assert {"SARS", "Streptococcus", "Pneumocystis", NO_FINDING} <= set(centroids.index)
    assert UNKNOWN_CLASS not in centroids.index
    near = [name for name, _ in scores["near_covid"]["pixels"]]
    assert "SARS" in near and UNKNOWN_CLASS not in near
