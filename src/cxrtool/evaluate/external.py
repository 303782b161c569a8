"""`evaluate --external`: the external images that are copies of the run's own are dropped first.

Public COVID-19 sets re-host each other's films (Cohen's among them), so an "external" set may
hold the very radiographs a model was trained on, and its external AUROC would be in-sample.
Before scoring, every external image is checked against every cache in the run's lineage: the
cache the run was trained on and the caches of each run it was finetuned from, back to the first
(`lineage_data`: a run's manifest names its data folder and its parent checkpoint; a checkpoint
folder's card does the same). Two searches, the same as `prepare` and `prepare dedupe` use:

- exact copies: the same file bytes (`file_hash` in both indexes);
- near-duplicates: the fingerprint and window-descriptor candidates confirmed on the aligned
  pixels (data/neardup/search.near_duplicates: re-encoded, resized, re-windowed, cropped copies).

Every image of a cache is checked against, not only its training split: an external image that
is a copy of an internal test image is not external either. The copies found are dropped from the
external scoring and listed in `external_duplicates.csv` (one row per dropped external image, with
the image it copies), and one line on the terminal says how many. A lineage cache whose folder is
gone cannot be checked: a warning names it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text
from ..data.cache import PreparedData
from ..data.combine import fingerprints_of
from ..data.neardup.confirm import IDENTICAL
from ..data.neardup.hashing import DEFAULT_MAX_DISTANCE
from ..data.neardup.options import SearchOptions
from ..data.neardup.search import ImageSet, near_duplicates
from ..errors import CxrError
from ..models.checkpoint import read_card
from ..progress import info, warn
from ..runs import is_run_dir, read_manifest, run_of
from ..safeio import csv_text

DUPLICATES_FILE = "external_duplicates.csv"
COLUMNS = [
    "id",
    "patient",
    "source_path",
    "copy_of_data",
    "copy_of_id",
    "copy_of_patient",
    "copy_of_split",
    "method",
    "distance",
    "score",
]


def _model_dir(path: Path) -> Path:
    """A parent as recorded (usually RUN/checkpoints/best) -> its run when it lies in one."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    return run_of(path) or path


def _record(source: Path) -> tuple[str | None, str | None]:
    """(data folder, parent) that a run's manifest (or else a checkpoint's card) records."""
    manifest = read_manifest(source) if is_run_dir(source) else {}
    card: dict = {}
    if not manifest.get("data") or "parent" not in manifest:
        try:
            card = read_card(source)
        except CxrError:
            card = {}
    data = manifest.get("data") or card.get("data_dir")
    parent = manifest.get("parent", card.get("parent"))
    return (str(data) if data else None), (str(parent) if parent and str(parent) != "none" else None)


def lineage_data(run: Path) -> list[tuple[Path, Path]]:
    """(model, data folder) for the run and each ancestor it was finetuned from, nearest first.

    A model that records no data folder (an imported checkpoint) adds nothing; a cycle or a
    parent that is gone ends the walk (the latter with a warning).
    """
    out: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    current: Path | None = _model_dir(run)
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        data, parent = _record(current)
        if data:
            out.append((current, Path(data)))
        if parent is None:
            break
        if not Path(parent).exists():
            warn(f"{current}: its parent {parent} is gone; the external set is not checked against its lineage beyond")
            break
        current = _model_dir(Path(parent))
    return out


def _copies_in(ext: PreparedData, fps_ext: list[str], cache: PreparedData, max_distance: int) -> list[dict]:
    """One row per (external image, cache image) pair that shows one radiograph."""
    rows: list[dict] = []
    if "file_hash" in ext.index.columns and "file_hash" in cache.index.columns:
        first = {}
        for j, h in enumerate(cache.index["file_hash"]):
            if isinstance(h, str) and h:
                first.setdefault(h, j)
        for i, h in enumerate(ext.index["file_hash"]):
            if isinstance(h, str) and h in first:
                rows.append({"i": i, "j": first[h], "method": IDENTICAL, "distance": 0, "score": 1.0})
    pairs = near_duplicates(
        ImageSet(fps_ext, lambda i: ext.images[i]),
        ImageSet(fingerprints_of(cache), lambda j: cache.images[j]),
        SearchOptions(max_distance=max_distance),
    )
    rows += [{"i": p.i, "j": p.j, "method": p.method, "distance": p.distance, "score": p.score} for p in pairs]
    return rows


def lineage_copies(
    ext: PreparedData, run: Path, max_distance: int = DEFAULT_MAX_DISTANCE
) -> tuple[pd.DataFrame, list[str]]:
    """The external images that copy an image of a cache in the run's lineage (COLUMNS, one row
    per external image, its first match), and the caches checked."""
    checked: list[str] = []
    found: dict[int, dict] = {}
    fps_ext: list[str] | None = None
    for model, folder in lineage_data(run):
        if not folder.is_dir():
            warn(f"--external: {model} was trained on {folder}, which is gone; its images cannot be checked")
            continue
        if str(folder.resolve()) in checked:
            continue
        checked.append(str(folder.resolve()))
        cache = PreparedData(folder)
        if fps_ext is None:
            fps_ext = fingerprints_of(ext)
        for r in _copies_in(ext, fps_ext, cache, max_distance):
            if r["i"] in found:
                continue
            src, own = cache.index.iloc[r["j"]], ext.index.iloc[r["i"]]
            found[r["i"]] = {
                "id": own["id"],
                "patient": own["patient"],
                "source_path": own.get("source_path", ""),
                "copy_of_data": str(cache.root),
                "copy_of_id": src["id"],
                "copy_of_patient": src["patient"],
                "copy_of_split": src.get("split", ""),
                "method": r["method"],
                "distance": int(r["distance"]),
                "score": float(r["score"]),
            }
    table = pd.DataFrame([found[i] for i in sorted(found)], columns=COLUMNS)
    table.index = sorted(found)
    return table, checked


def drop_lineage_copies(ext: PreparedData, run: Path, out: Path) -> tuple[np.ndarray, dict]:
    """The external rows left to score once copies of the lineage's images are dropped, and what
    was done (for metrics.json). Writes out/external_duplicates.csv and says how many on one line."""
    table, checked = lineage_copies(ext, run)
    path = atomic_write_text(out / DUPLICATES_FILE, csv_text(table, index=False))
    keep = np.setdiff1d(np.arange(len(ext)), table.index.to_numpy(dtype=int))
    where = ", ".join(checked) if checked else "no cache (the run records none that still exists)"
    if len(table) == len(ext):
        raise CxrError(
            f"--external {ext.root}: every one of its {len(ext)} images is a copy of an image in the run's lineage "
            f"({where}); nothing external is left to score (listed in {path})"
        )
    if len(table):
        warn(
            f"--external {ext.root}: dropped {len(table)} of {len(ext)} images, copies of images in the run's "
            f"lineage ({where}); listed in {path}"
        )
    else:
        info(f"--external {ext.root}: no copy of an image in the run's lineage ({where})")
    return keep, {"copies_dropped": len(table), "checked_against": checked, "copies_file": str(path)}
