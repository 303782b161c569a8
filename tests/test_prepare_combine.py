"""`prepare combine`: a class-balanced set from several caches, splits and boxes kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData, check_no_leak
from cxrtool.data.combine import select_balanced
from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS

from helpers import synthetic_cache

runner = CliRunner()


def test_select_balanced_caps_each_class_and_skips_unknown_labels():
    rng = np.random.default_rng(0)
    targets = np.zeros((300, 3))
    targets[:200, 0] = 1
    targets[150:180, 1] = 1
    targets[250:, 2] = np.nan  # not annotated
    targets[290:, 2] = 1
    rows = select_balanced(targets, 20, rng)
    chosen = np.nan_to_num(targets[rows])
    assert chosen[:, 1].sum() == 20 and chosen[:, 2].sum() == 10  # rare class: all 10 it has
    assert 20 <= chosen[:, 0].sum() <= 40  # images positive for two classes count for both
    assert len(set(rows)) == len(rows)


def test_combine_unions_labels_keeps_splits_and_carries_boxes(tmp_path):
    nih = synthetic_cache(tmp_path / "nih", n_patients=40, size=32, seed=1)
    covid = synthetic_cache(tmp_path / "covid", n_patients=40, size=32, seed=2, labels=["COVID-19"])
    res = runner.invoke(app, ["prepare", "combine", str(nih.root), str(covid.root), "--out", str(tmp_path / "mix"),
                              "--per-class", "8", "--seed", "1", "-q"])
    assert res.exit_code == 0, res.output
    mix = PreparedData(tmp_path / "mix")
    assert mix.labels == PRETRAIN_FINDINGS + ["COVID-19"]  # NIH order, then COVID-19
    index = mix.index
    assert set(index["source"]) == {"nih", "covid"}
    from_covid = index["source"] == "covid"
    assert index.loc[from_covid, PRETRAIN_FINDINGS].isna().all().all()  # not annotated there
    assert index.loc[~from_covid, "COVID-19"].isna().all()
    for label in mix.labels:
        assert (index[label] == 1).sum() >= 8
    # Each image keeps its source's split; patients are namespaced by source.
    for source, data in (("nih", nih), ("covid", covid)):
        part = index[index["source"] == source]
        original = data.index.set_index("id")
        ids = part["id"].str.split("/", n=1).str[1]
        assert (original.loc[ids, "split"].to_numpy() == part["split"].to_numpy()).all()
        assert part["patient"].str.startswith(source + ":").all()
        assert np.array_equal(mix.images[np.flatnonzero(index["id"] == part["id"].iloc[0])[0]],
                              data.images[np.flatnonzero(data.index["id"] == ids.iloc[0])[0]])
    check_no_leak(index)
    boxes = mix.boxes()
    assert len(boxes) and boxes["id"].isin(set(index["id"])).all()
    expected = nih.boxes().assign(id=lambda b: "nih/" + b["id"])
    assert len(boxes[boxes["id"].str.startswith("nih/")]) == int(expected["id"].isin(set(index["id"])).sum())
    again = runner.invoke(app, ["prepare", "combine", str(nih.root), str(covid.root), "--out", str(tmp_path / "mix"),
                                "--per-class", "8", "--seed", "1"])
    assert again.exit_code == 0 and "ready" in again.output


def test_combine_refuses_caches_of_different_sizes(tmp_path):
    a = synthetic_cache(tmp_path / "a", n_patients=10, size=32)
    b = synthetic_cache(tmp_path / "b", n_patients=10, size=48)
    res = runner.invoke(app, ["prepare", "combine", str(a.root), str(b.root), "--out", str(tmp_path / "mix"), "-q"])
    assert res.exit_code == 2 and "different image sizes" in res.output and "--size" in res.output
