"""The labels of the combined 15-class set: what each source says about the classes it does not annotate.

`prepare combine` joins caches that annotate different things: NIH ChestX-ray14 has the 14
findings, the Cohen COVID-19 collection has COVID-19 (and a free-text finding per image). A class
left unknown (NaN) is masked in the loss, so the set can only teach COVID-19 if that column is
known for both classes. The rules, in one place:

- COVID-19 for an NIH image is 0: ChestX-ray14 was collected in 1992-2015, before SARS-CoV-2
  existed (by default the caches whose manifest `source` is a source registered as
  `pre_pandemic`, today `nih`; `--covid-negative` names them instead, e.g. when an NIH-layout
  folder holds generated COVID-19 phantoms).
- COVID-19 for a Cohen image is the cache's own column: 1 exactly when the finding is COVID-19,
  flat (`COVID-19`, `COVID-19, ARDS`) or hierarchical (`Pneumonia/Viral/COVID-19`); 0 for any other
  diagnosis; unknown (NaN) when the finding says nothing about it (`todo`, `Unknown`, blank). A
  cache prepared before that rule (where such findings were 0) is read by it too, from its
  `finding` column.
- An NIH finding for a Cohen image is filled when the finding names it (read from the `finding`
  column that `prepare covid` keeps): Pneumonia is 1 for every pneumonia (viral, bacterial,
  fungal, COVID-19 included, as the hierarchical vocabulary files it) and 0 for `No Finding`;
  any other NIH finding is 1 when a part of the finding is its name. Everything else stays NaN.

`class_counts` gives the positives, negatives and unknowns of each class in each split: printed
by `prepare combine` and stored in the cache (manifest `class_counts` and `counts.csv`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..progress import print_table
from .labels import COVID_LABEL, NIH_LABELS, canonical
from .sources.covid import finding_tokens, label_value
from .sources.registry import is_pre_pandemic


def nih_value_from_finding(finding: str, label: str) -> float:
    """An NIH finding's value for a Cohen image, from its free-text finding (NaN: not said)."""
    if label == "Pneumonia":
        return label_value(finding, "Pneumonia")
    return 1.0 if any(canonical(t) == label for t in finding_tokens(finding)) else np.nan


def pre_pandemic(manifest: dict) -> bool:
    """Whether a cache holds only images taken before COVID-19 existed (its source says so: NIH's)."""
    return is_pre_pandemic(str(manifest.get("source", "")))


def fill_labels(
    frame: pd.DataFrame, cache_labels: list[str], covid_negative: bool, labels: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """`frame` (one cache's index) with a float column per label of the combined set, and notes.

    The cache's own annotations win; missing columns are filled by the rules in the module docstring.
    """
    frame = frame.copy()
    notes: list[str] = []
    has_finding = "finding" in frame.columns
    for label in labels:
        if label in cache_labels:
            frame[label] = frame[label].astype(float)
            if label == COVID_LABEL and has_finding:
                # Older caches stored 0 for 'Unknown': a finding that says nothing leaves COVID-19 unknown.
                # (A blank cell reads back as NaN: an image of another source, e.g. NIH's in a combined set.)
                text = frame["finding"]
                silent = text.notna() & text.astype(str).map(lambda f: np.isnan(label_value(f, COVID_LABEL)))
                frame.loc[silent.to_numpy(), label] = np.nan
        elif label == COVID_LABEL and covid_negative:
            frame[label] = 0.0
        elif label in NIH_LABELS and COVID_LABEL in cache_labels and has_finding:
            frame[label] = frame["finding"].fillna("").astype(str).map(lambda f, l=label: nih_value_from_finding(f, l))
        else:
            frame[label] = np.nan
    if (
        COVID_LABEL in labels
        and COVID_LABEL in cache_labels
        and not has_finding
        and any(l in NIH_LABELS for l in labels)
    ):
        notes.append(
            "its index has no `finding` column (prepared by an older cxrtool), so its NIH findings stay "
            "unknown; prepare it again with --overwrite to fill Pneumonia"
        )
    if COVID_LABEL in labels and frame[COVID_LABEL].isna().all():
        notes.append("COVID-19 is unknown for all of its images (not annotated, and not a pre-pandemic collection)")
    return frame, notes


def class_counts(index: pd.DataFrame, labels: list[str], splits: list[str]) -> pd.DataFrame:
    """One row per split and label: images positive, negative and unknown (NaN)."""
    rows = []
    for split in splits:
        part = index[index["split"] == split]
        for label in labels:
            y = part[label].to_numpy(float)
            rows.append(
                {
                    "split": split,
                    "label": label,
                    "positive": int((y >= 0.5).sum()),
                    "negative": int((y < 0.5).sum()),
                    "unknown": int(np.isnan(y).sum()),
                }
            )
    return pd.DataFrame(rows, columns=["split", "label", "positive", "negative", "unknown"])


def counts_for_manifest(counts: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """{split: {label: {positive, negative, unknown}}}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for row in counts.itertuples(index=False):
        out.setdefault(row.split, {})[row.label] = {
            "positive": int(row.positive),
            "negative": int(row.negative),
            "unknown": int(row.unknown),
        }
    return out


def missing_classes(counts: pd.DataFrame, label: str) -> list[str]:
    """'val: no negatives'-style phrases for the splits where `label` lacks a class."""
    out = []
    for row in counts[counts["label"] == label].itertuples(index=False):
        lacking = [name for name, n in (("positives", row.positive), ("negatives", row.negative)) if n == 0]
        if lacking:
            out.append(f"{row.split}: no {' and no '.join(lacking)}")
    return out


def print_counts(counts: pd.DataFrame, title: str) -> None:
    """A table of positives/negatives/unknowns per class and split."""
    splits = list(dict.fromkeys(counts["split"]))
    rows = []
    for label in dict.fromkeys(counts["label"]):
        cells = []
        for split in splits:
            r = counts[(counts["label"] == label) & (counts["split"] == split)].iloc[0]
            cells.append(f"{r.positive}/{r.negative}/{r.unknown}")
        rows.append([label, *cells])
    print_table(title, ["class", *[f"{s} pos/neg/unknown" for s in splits]], rows)
