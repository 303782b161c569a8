"""`prepare combine` on the real NIH sample and Cohen set in ../shared/data (skipped when absent).

Expected values are recomputed from the publishers' files (metadata.csv's findings), never copied
from a run.
"""

from __future__ import annotations

import pandas as pd
import pytest

from cxrtool.data.cache import PreparedData, check_no_leak
from cxrtool.data.combine import CombineConfig, combine
from cxrtool.data.labels import NIH_LABELS
from cxrtool.data.prepare import PrepareCovidConfig, PrepareNihConfig, prepare_covid, prepare_nih


@pytest.fixture(scope="module")
def real_mix(nih_root, covid_root, tmp_path_factory) -> PreparedData:
    tmp = tmp_path_factory.mktemp("real-mix")
    nih = prepare_nih(PrepareNihConfig(root=nih_root, out=tmp / "nih", size=32, workers=2))
    covid = prepare_covid(PrepareCovidConfig(root=covid_root, out=tmp / "covid", size=32, workers=2))
    return combine(CombineConfig(data=[nih.root, covid.root], out=tmp / "mix", per_class=200, seed=0))


def test_real_set_has_both_covid_classes_in_every_split(real_mix, covid_root):
    index = real_mix.index
    assert real_mix.labels == [*NIH_LABELS, "COVID-19"]
    assert index["COVID-19"].notna().all()
    assert (index.loc[index["source"] == "nih", "COVID-19"] == 0).all()
    for split in ("train", "val", "test"):
        covid = index.loc[index["split"] == split, "COVID-19"]
        assert (covid == 1).sum() >= 10 and (covid == 0).sum() >= 10, split
    # Cohen images: positive exactly when metadata.csv's finding says COVID-19.
    meta = pd.read_csv(covid_root / "metadata.csv", dtype=str, keep_default_na=False)
    said = dict(zip(meta["filename"].str.strip(), meta["finding"].str.contains("COVID-19")))
    cohen = index[index["source"] == "covid"]
    files = cohen["source_path"].str.split("/").str[-1]
    assert (cohen["COVID-19"].to_numpy() == files.map(said).astype(float).to_numpy()).all()
    assert (cohen["COVID-19"] == 0).sum() > 50  # Cohen's other pneumonias and normals are negatives too
    assert (index["COVID-19"] == 1).sum() == 200
    check_no_leak(index)


def test_real_cohen_pneumonias_fill_the_nih_pneumonia_column(real_mix):
    cohen = real_mix.index[real_mix.index["source"] == "covid"]
    bacterial = cohen["finding"].isin(["Streptococcus", "Klebsiella", "Legionella", "Pneumocystis"])
    assert bacterial.sum() > 10 and (cohen.loc[bacterial, "Pneumonia"] == 1).all()
    assert (cohen.loc[cohen["finding"] == "No Finding", "Pneumonia"] == 0).all()
    others = [l for l in NIH_LABELS if l != "Pneumonia"]
    assert cohen[others].isna().all().all()


def test_real_counts_are_stored_and_match_the_index(real_mix):
    counts = pd.read_csv(real_mix.root / "counts.csv")
    index = real_mix.index
    for row in counts.itertuples():
        y = index.loc[index["split"] == row.split, row.label]
        assert (row.positive, row.negative, row.unknown) == (
            int((y == 1).sum()),
            int((y == 0).sum()),
            int(y.isna().sum()),
        )
    assert real_mix.manifest["class_counts"]["val"]["COVID-19"]["negative"] > 0


def test_real_source_shortcut_nearly_separates_covid(real_mix):
    from cxrtool.evaluate.shortcuts import shortcut_baselines

    fit, ev = real_mix.rows("train"), real_mix.rows("test")
    result = shortcut_baselines(
        real_mix.index, real_mix.labels, fit, real_mix.targets(fit), ev, real_mix.targets(ev), {}, n_boot=200
    )
    source = result["predictors"]["source"]["COVID-19"]
    assert source["auroc"] > 0.85  # metadata that says nothing about the lungs
    assert "every positive comes from one source" in result["source_confounded"]["COVID-19"]


def test_real_source_warning_fires_where_the_source_predicts_a_label_partly(real_mix):
    """Pneumonia: about half of its test positives are Cohen films (not all), and nearly none of its
    negatives; the source alone then predicts it well, and the warning must say so."""
    from cxrtool.evaluate.shortcuts import SOURCE_AUROC_THRESHOLD, shortcut_baselines

    fit, ev = real_mix.rows("train"), real_mix.rows("test")
    result = shortcut_baselines(
        real_mix.index, real_mix.labels, fit, real_mix.targets(fit), ev, real_mix.targets(ev), {}, n_boot=200
    )
    test = real_mix.index.iloc[ev]
    positives = test[test["Pneumonia"] == 1]
    from_cohen = int((positives["source"] == "covid").sum())
    assert 0 < from_cohen < len(positives)  # partly: not every positive from one source
    assert result["predictors"]["source"]["Pneumonia"]["auroc"] >= SOURCE_AUROC_THRESHOLD
    why = result["source_confounded"]["Pneumonia"]
    assert f"{from_cohen} of its {len(positives)} positives come from covid" in why
    assert "every positive" not in why


def test_the_counts_docs_prepare_md_quotes_are_what_combine_makes(real_mix):
    import re
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "prepare.md").read_text().split())
    found = re.search(
        r"gives ([\d,]+) images \((\d+) train, (\d+) val, (\d+) test\); COVID-19 positives/negatives "
        r"(\d+)/(\d+) \(train\), (\d+)/(\d+) \(val\), (\d+)/(\d+) \(test\)\. The sample is short of some "
        r"findings \(Hernia (\d+), Fibrosis (\d+), Pleural_Thickening (\d+) positives in all",
        text,
    )
    assert found, "docs/prepare.md no longer quotes the combined set's counts in the form this test reads"
    quoted = [int(n.replace(",", "")) for n in found.groups()]
    index = real_mix.index
    made = [len(index), *(int((index["split"] == s).sum()) for s in ("train", "val", "test"))]
    for split in ("train", "val", "test"):
        covid = index.loc[index["split"] == split, "COVID-19"]
        made += [int((covid == 1).sum()), int((covid == 0).sum())]
    made += [int((index[label] == 1).sum()) for label in ("Hernia", "Fibrosis", "Pleural_Thickening")]
    assert quoted == made
