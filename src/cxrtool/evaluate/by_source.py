"""AUROC within one source, for labels that the image's source predicts by itself.

On a set joined from collections (`prepare combine`: the 15-class NIH + COVID-19 set) the COVID-19
AUROC has NIH films as most of its negatives, and "is this a Cohen image" alone scores about 0.9
there. For every label flagged as confounded by source (evaluate/shortcuts.py) this module scores
the model within each source that holds both classes, where the source explains nothing:

- `within_source`: the evaluated images of that source (for COVID-19, the Cohen images of the
  combined test split: COVID-19 against that collection's other pneumonias);
- `source_cache`: the comparable row. The combined manifest names the cache each source came from;
  when that cache is still there (same data hash), the model is scored on *its* split (the Cohen
  cache's own test patients, the very patients the binary arms are scored on), leaving out any
  image that the combined set filed under another split. The combined test split holds only a
  subset of those patients, so this is the figure to set beside the other arms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.cache import PreparedData
from ..errors import CxrError
from ..progress import info
from .inputs import EvaluationInputs, Scores
from .metrics import label_report

KEEP = (
    "n",
    "positives",
    "negatives",
    "positive_patients",
    "negative_patients",
    "auroc",
    "auroc_low",
    "auroc_high",
    "skipped_replicates",
    "not_computable",
    "not_estimable",
)


def _entry(y: np.ndarray, p: np.ndarray, patients: np.ndarray, n_boot: int, seed: int) -> dict:
    rep = label_report(y[:, None], p[:, None], ["x"], patients, n_boot=n_boot, seed=seed)["labels"]["x"]
    return {k: rep.get(k) for k in KEEP}


def within_source(
    frame: pd.DataFrame, labels: list[str], targets: np.ndarray, probs: np.ndarray, flagged, n_boot: int, seed: int
) -> dict[str, dict[str, dict]]:
    """{label: {source: entry}} over the evaluated rows of each source that has both classes."""
    if "source" not in frame.columns:
        return {}
    source = frame["source"].fillna("").astype(str).to_numpy()
    patients = frame["patient"].to_numpy()
    out: dict[str, dict[str, dict]] = {}
    for label in flagged:
        if label not in labels:
            continue
        j = labels.index(label)
        y = targets[:, j]
        for name in sorted(set(source)):
            inside = (source == name) & ~np.isnan(y)
            if (y[inside] == 1).any() and (y[inside] == 0).any():
                out.setdefault(label, {})[name] = {
                    "source": name,
                    **_entry(y[inside], probs[inside, j], patients[inside], n_boot, seed),
                }
    return out


def source_cache(data: PreparedData, name: str) -> tuple[PreparedData | None, str]:
    """The cache a combined set's source `name` came from, or None and why not."""
    manifest = data.manifest or {}
    path = (manifest.get("sources") or {}).get(name)
    if manifest.get("source") != "combine" or not path:
        return None, f"{data.root} is not a combined set that names the cache of {name}"
    try:
        cache = PreparedData(Path(path))
    except CxrError as exc:
        return None, f"the cache of {name} ({path}) cannot be opened: {exc}"
    hashes = (manifest.get("settings") or {}).get("data_hashes") or []
    if cache.data_hash not in hashes:
        return None, f"the cache of {name} ({path}) has changed since the combined set was made"
    return cache, ""


def source_cache_rows(data: PreparedData, cache: PreparedData, name: str, split: str) -> np.ndarray:
    """`cache`'s rows of `split`, less those the combined set filed under another split."""
    rows = cache.rows(split)
    combined = data.index
    filed = dict(zip(combined["id"].astype(str), combined["split"].astype(str)))
    ids = (name + "/" + cache.index["id"].astype(str)).to_numpy()
    moved = np.array([filed.get(ids[r], split) != split for r in rows], dtype=bool)
    return rows[~moved]


def add_within_source(inputs: EvaluationInputs, scores: Scores, metrics: dict) -> None:
    """Write each source-confounded label's `within_source` (and, for a combined set, `source_cache`) entries."""
    cfg, data, labels = inputs.cfg, inputs.data, scores.labels
    flagged = ((metrics.get("shortcuts") or {}).get("source_confounded")) or {}
    found = within_source(scores.frame, labels, scores.targets, scores.probs, flagged, cfg.bootstrap, cfg.seed)
    for label, by_source in found.items():
        entry = metrics["labels"][label]
        entry["within_source"] = by_source
        for name in by_source:
            cache, why = source_cache(data, name)
            if cache is None or label not in cache.labels:
                entry.setdefault("source_cache_missing", {})[name] = why or f"{name}'s cache does not annotate {label}"
                continue
            rows = source_cache_rows(data, cache, name, cfg.split)
            y = cache.targets(rows)[:, cache.labels.index(label)]
            if len(rows) == 0 or not ((y == 1).any() and (y == 0).any()):
                continue
            info(f"{label}: scoring the model on the {cfg.split} split of {cache.root} as well (within {name})")
            p = inputs.model.probs(cache, rows, f"evaluate {name}")[:, labels.index(label)]
            patients = cache.index["patient"].iloc[rows].to_numpy()
            entry.setdefault("source_cache", {})[name] = {
                "source": name,
                "data": str(cache.root),
                "data_hash": cache.data_hash,
                "split": cfg.split,
                "patients": int(pd.Series(patients).nunique()),
                **_entry(y, p, patients, cfg.bootstrap, cfg.seed),
            }
