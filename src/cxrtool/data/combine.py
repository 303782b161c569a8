"""Caches made from caches: `prepare combine` (a balanced multi-source set) and `prepare dedupe`.

`combine` builds the report's balanced 15-class set (the 14 NIH findings and COVID-19) from
prepared caches of one size: up to `per_class` positive images per class, rarest class first, an
image with several findings counting for each, each class's draw spread over the splits; the
COVID-19 negatives of a collection that has positives (Cohen's other pneumonias) are drawn like
one more class. What a source does not annotate is filled where it is known (NIH images are
COVID-19 negatives; Cohen findings that name an NIH finding fill it; see combine_labels.py), NaN
otherwise. Patients and ids are namespaced by the source (`nih:123`, `covid/x.png`); every image
keeps its split, except that a radiograph shared by two sources pulls its patients into one split
(reported); boxes are carried. Positives and negatives per class and split are printed and
stored (manifest `class_counts`, `counts.csv`).

`dedupe` compares caches by fingerprint (e.g. a training set and an external test set), reports
near-duplicate radiographs between them, and with `drop_from` removes them from that cache,
rewriting it in the same format and listing what went in its skipped.csv.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes, read_json
from ..config import parse_list, require
from ..errors import CxrError
from ..optionspec import option
from ..owned import claim_file
from ..progress import info, print_table, result, warn
from ..run_locks import holds_locks
from ..safeio import csv_text, restore_cells
from .cache import IMAGES, MANIFEST, SKIPPED_COLUMNS, SPLITS, PreparedData
from .combine_labels import class_counts, counts_for_manifest, fill_labels, missing_classes, pre_pandemic, print_counts
from .labels import COVID_LABEL, NIH_LABELS, canonical
from .neardup.hashing import DEFAULT_MAX_DISTANCE, FINGERPRINT_HEX, fingerprint
from .neardup.options import SearchOptions
from .neardup.search import ImageSet, near_duplicates
from .npyfile import open_images, write_images_subset
from .prepare import TMP_DIR, check_output, duplicate_pairs_frame, finish_cache, print_summary, writing_cache
from .splits import patient_groups, unify_splits

COMBINE_CLASSES = [*NIH_LABELS, COVID_LABEL]
COUNTS = "counts.csv"  # per split and class: positives, negatives, unknowns


def _open_all(paths: list[Path], option: str = "DATA") -> list[PreparedData]:
    require(len(paths) > 0, f"{option}: give at least one prepared cache")
    caches = [PreparedData(p) for p in paths]
    roots = [c.root.resolve() for c in caches]
    require(len(set(roots)) == len(roots), f"{option}: a cache is given twice")
    return caches


def _names(caches: list[PreparedData]) -> list[str]:
    """Each cache's name: its folder name, made unique with a counter."""
    names: list[str] = []
    for c in caches:
        name, k = c.root.resolve().name, 2
        while name in names:
            name, k = f"{c.root.resolve().name}-{k}", k + 1
        names.append(name)
    return names


def fingerprints_of(data: PreparedData) -> list[str]:
    """The cache's fingerprints; computed from the images for caches written without them."""
    if "fingerprint" in data.index.columns:
        fps = data.index["fingerprint"].fillna("").astype(str)
        if (fps.str.len() == FINGERPRINT_HEX).all():
            return fps.tolist()
    return [fingerprint(np.asarray(data.images[i])) for i in range(len(data))]


# ---------------------------------------------------------------- combine


# The help of `--max-distance`, an option of combine, dedupe and every prepare source.
MAX_DISTANCE_HELP = (
    f"Near-duplicate threshold: bits (of 256) two fingerprints may differ by (default: {DEFAULT_MAX_DISTANCE})."
)


@dataclass(kw_only=True)
class CombineConfig:
    data: list[Path] = option(help="Prepared caches (same --size), e.g. data/nih data/covid.", argument=True)
    out: Path = option(help="Cache folder to write.")
    per_class: int = option(200, help="Positive images per class (default: 200).")
    seed: int = option(0, help="Seed of the selection (default: 0).")
    classes: list[str] | None = option(
        None,
        help="Classes, comma-separated (default: the 14 NIH findings and COVID-19).",
        type=str,
        parse=parse_list,
    )  # None: the 14 NIH findings and COVID-19
    overwrite: bool = option(False, help="Replace a cache prepared with other settings.")
    max_distance: int = option(DEFAULT_MAX_DISTANCE, help=MAX_DISTANCE_HELP)
    # Caches (folder names) whose every image is a COVID-19 negative; None: those prepared from
    # NIH ChestX-ray14, which predates the pandemic; ["none"]: no cache.
    covid_negative: list[str] | None = option(
        None,
        help="Caches (folder names, comma-separated) whose every image is a COVID-19 negative, or none "
        "(default: those prepared from NIH ChestX-ray14).",
        type=str,
        parse=parse_list,
    )

    def __post_init__(self) -> None:
        self.data = [Path(p) for p in self.data]
        self.out = Path(self.out)
        require(len(self.data) >= 1, "DATA: give the prepared caches to combine")
        require(self.per_class >= 1, f"--per-class: {self.per_class}; give 1 or more")
        self.classes = [canonical(c) for c in (self.classes or COMBINE_CLASSES)]
        require(all(p.resolve() != self.out.resolve() for p in self.data), "--out: must differ from every DATA folder")


def spread_pick(pool: np.ndarray, strata: np.ndarray | None, need: int, rng: np.random.Generator) -> np.ndarray:
    """`need` rows of `pool`, drawn from each stratum (split) in proportion to its share of the pool,
    and at least one from every stratum that has any when `need` allows: so a class is not left
    out of a small split by chance."""
    if strata is None or need >= len(pool):
        return rng.choice(pool, size=min(need, len(pool)), replace=False)
    names, counts = np.unique(strata[pool], return_counts=True)
    exact = need * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    if need >= len(names):
        quota = np.maximum(quota, 1)
    quota = np.minimum(quota, counts)
    while quota.sum() > need:  # the minimum of one overshot: take back where most was given
        quota[np.argmax(np.where(quota > 1, quota - exact, -np.inf))] -= 1
    while quota.sum() < need:  # rounding left some: give where most is owed
        quota[np.argmax(np.where(quota < counts, exact - quota, -np.inf))] += 1
    return np.concatenate(
        [rng.choice(pool[strata[pool] == name], size=q, replace=False) for name, q in zip(names, quota) if q > 0]
    )


def select_balanced(
    targets: np.ndarray, per_class: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """Rows so that each class has up to per_class positives (rarest class first; NaN = unknown).

    With `strata` (each row's split) a class's positives are drawn from every split in proportion.
    """
    positive = np.nan_to_num(targets, nan=0.0) > 0.5
    strata = None if strata is None else np.asarray(strata).astype(str)
    chosen = np.zeros(len(targets), dtype=bool)
    for c in np.argsort(positive.sum(axis=0), kind="stable"):
        have = int((positive[:, c] & chosen).sum())
        pool = np.flatnonzero(positive[:, c] & ~chosen)
        need = min(per_class - have, len(pool))
        if need > 0:
            chosen[spread_pick(pool, strata, need, rng)] = True
    return np.flatnonzero(chosen)


def split_counts_of(index: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Positives, negatives and unknowns per class in each split that has images."""
    return class_counts(index, labels, [s for s in SPLITS if (index["split"] == s).any()])


def write_counts(out: Path, counts: pd.DataFrame) -> None:
    """counts.csv, written before finish_cache: the cache is unfinished until its manifest is back."""
    (out / MANIFEST).unlink(missing_ok=True)
    atomic_write_bytes(out / COUNTS, csv_text(counts, index=False).encode())


def covid_negatives(caches: list[PreparedData], names: list[str], given: list[str] | None) -> set[str]:
    """The names of the caches whose images are all COVID-19 negatives (see CombineConfig.covid_negative)."""
    if given is None:
        return {name for data, name in zip(caches, names) if pre_pandemic(data.manifest)}
    if [g.lower() for g in given] == ["none"]:
        return set()
    unknown = [g for g in given if g not in names]
    if unknown:
        raise CxrError(f"--covid-negative: {', '.join(unknown)} is not one of the caches given ({', '.join(names)})")
    for data, name in zip(caches, names):
        if name in given and COVID_LABEL in data.labels and (data.index[COVID_LABEL] == 1).any():
            raise CxrError(f"--covid-negative: {name} has COVID-19 positives of its own; it cannot be all negatives")
    return set(given)


def combine(cfg: CombineConfig) -> PreparedData:
    with writing_cache(cfg.out, what="prepare combine"):  # one writer; nothing half-written left
        return _combine(cfg)


def _combine(cfg: CombineConfig) -> PreparedData:
    caches = _open_all(cfg.data)
    sizes = {c.root.name: c.size for c in caches}
    if len(set(sizes.values())) > 1:
        raise CxrError(
            f"DATA: the caches have different image sizes ({', '.join(f'{k} {v} px' for k, v in sizes.items())}); "
            "prepare them with the same --size"
        )
    names = _names(caches)
    negative = covid_negatives(caches, names, cfg.covid_negative)
    settings = {
        "data": [str(c.root.resolve()) for c in caches],
        "data_hashes": [c.data_hash for c in caches],
        "per_class": cfg.per_class,
        "seed": cfg.seed,
        "classes": cfg.classes,
        "max_distance": cfg.max_distance,
        "covid_negative": sorted(negative),
    }
    ready = check_output(cfg.out, settings, "combine", cfg.overwrite)
    if ready is not None:
        return ready
    labels = [c for c in cfg.classes if any(c in d.labels for d in caches)]
    absent = [c for c in cfg.classes if c not in labels]
    if not labels:
        raise CxrError(f"DATA: none of the caches has any of the classes {', '.join(cfg.classes)}")
    if absent:
        warn(f"no cache annotates {', '.join(absent)}; the combined set has {len(labels)} classes")
    parts = []
    for k, (data, name) in enumerate(zip(caches, names)):
        frame, label_notes = fill_labels(data.index, list(data.labels), name in negative, labels)
        for note in label_notes:
            warn(f"{name}: {note}")
        frame["_cache"], frame["_row"] = k, np.arange(len(frame))
        frame["fingerprint"] = fingerprints_of(data)
        # Negatives from a collection that has positives (Cohen's other pneumonias) are drawn like a
        # class of their own: without them COVID-19 and the source would be one and the same column.
        frame["_own_negative"] = (
            (frame[COVID_LABEL] == 0).astype(float) if (COVID_LABEL in labels and COVID_LABEL in data.labels) else 0.0
        )
        parts.append(frame)
    pool = pd.concat(parts, ignore_index=True)
    rows = select_balanced(
        pool[[*labels, "_own_negative"]].to_numpy(float),
        cfg.per_class,
        np.random.default_rng(cfg.seed),
        strata=pool["split"].to_numpy(),
    )
    picked = pool.iloc[rows].sort_values(["_cache", "_row"]).reset_index(drop=True)
    picked["source"] = [names[k] for k in picked["_cache"]]
    picked["id"] = picked["source"] + "/" + picked["id"].astype(str)
    picked["patient"] = picked["source"] + ":" + picked["patient"].astype(str)
    for label in labels:
        short = int((picked[label] == 1).sum())
        if short < cfg.per_class:
            warn(f"{label}: only {short} positive images available (--per-class {cfg.per_class})")

    tmp = cfg.out / TMP_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    target = open_images(tmp / IMAGES, (len(picked), caches[0].size, caches[0].size))
    start = 0
    for k, data in enumerate(caches):
        src_rows = picked.loc[picked["_cache"] == k, "_row"].to_numpy()
        target[start : start + len(src_rows)] = data.images[src_rows]
        start += len(src_rows)
    target.flush()

    # A radiograph present in two sources must not leave its patients in two splits.
    pairs = near_duplicates(
        # target[i]: the pixels of row i, for confirming a candidate pair
        ImageSet(picked["fingerprint"].tolist(), target.__getitem__, groups=picked["patient"].tolist()),
        options=SearchOptions(max_distance=cfg.max_distance),
    )
    patients = picked["patient"].tolist()
    groups = patient_groups(patients, [(patients[p.i], patients[p.j]) for p in pairs])
    picked["split"], moved = unify_splits(groups, picked["split"].to_numpy())
    del target
    boxes = []
    for data, name in zip(caches, names):
        b = data.boxes()
        if b is not None and len(b):
            b = b[b["label"].isin(labels)].copy()
            b["id"] = name + "/" + b["id"].astype(str)
            boxes.append(b[b["id"].isin(set(picked["id"]))])
    index = picked.drop(columns=["_cache", "_row", "_own_negative"])
    duplicates = duplicate_pairs_frame(index, pairs)
    notes = [f"{len(index)} images from {', '.join(names)}; up to {cfg.per_class} positives per class"]
    if moved:
        notes.append(f"{moved} image(s) moved split so that near-duplicates across sources share one")
    counts = split_counts_of(index, labels)
    if COVID_LABEL in labels:
        for problem in missing_classes(counts, COVID_LABEL):
            warn(
                f"COVID-19 {problem}; its AUROC cannot be computed there (give caches with both classes in every split)"
            )
    manifest = {
        "source": "combine",
        "settings": settings,
        "sources": dict(zip(names, settings["data"])),
        "moved_for_duplicates": moved,
        "duplicates": len(duplicates),
        "notes": notes,
        "class_counts": counts_for_manifest(counts),
        "class_counts_file": COUNTS,
    }
    skipped = pd.DataFrame(columns=list(SKIPPED_COLUMNS))
    write_counts(cfg.out, counts)
    out = finish_cache(
        cfg.out,
        tmp / IMAGES,
        index,
        labels,
        manifest,
        skipped,
        duplicates,
        pd.concat(boxes, ignore_index=True) if boxes else None,
    )
    print_summary(out, skipped, duplicates, notes)
    print_counts(counts, f"{out.root}: positives/negatives per class and split (also in {COUNTS})")
    return out


# ---------------------------------------------------------------- dedupe


@dataclass(kw_only=True)
class DedupeConfig:
    data: list[Path] = option(help="Prepared caches to compare, e.g. data/nih data/external.", argument=True)
    drop_from: Path | None = option(
        None, help="Remove from this cache (one of DATA) the images duplicated in the others."
    )
    max_distance: int = option(DEFAULT_MAX_DISTANCE, help=MAX_DISTANCE_HELP)
    report: Path | None = option(None, help="Write every pair found to this CSV.")
    overwrite: bool = option(False, help="Replace an existing --report file (never a cache's or a run's own file).")

    def __post_init__(self) -> None:
        self.data = [Path(p) for p in self.data]
        require(len(self.data) >= 1, "DATA: give at least one prepared cache")
        require(0 <= self.max_distance <= 256, f"--max-distance: {self.max_distance}; give 0..256")
        if self.drop_from is not None:
            self.drop_from = Path(self.drop_from)
            require(
                len(self.data) >= 2,
                "--drop-from: give at least two caches, the one to clean and the ones to compare it with",
            )
            require(
                self.drop_from.resolve() in [p.resolve() for p in self.data],
                f"--drop-from: {self.drop_from} is not one of the DATA folders given",
            )


@dataclass
class DedupeReport:
    pairs: pd.DataFrame  # data_a, id_a, patient_a, split_a, data_b, id_b, patient_b, split_b, distance
    dropped: list[str] = field(default_factory=list)


PAIR_COLUMNS = ["data_a", "id_a", "patient_a", "split_a", "data_b", "id_b", "patient_b", "split_b", "distance"]


@holds_locks
def dedupe(cfg: DedupeConfig) -> DedupeReport:
    if cfg.report is not None:  # refused before the search, not after it
        claim_file(cfg.report, "dedupe", cfg.overwrite, option="--report")
    caches = _open_all(cfg.data)
    names = _names(caches)
    fps = [fingerprints_of(c) for c in caches]
    records = []
    for a in range(len(caches)):
        for b in range(a, len(caches)):
            same = a == b
            found = near_duplicates(
                ImageSet(fps[a], lambda i, a=a: caches[a].images[i]),
                None if same else ImageSet(fps[b], lambda j, b=b: caches[b].images[j]),
                SearchOptions(max_distance=cfg.max_distance),
            )
            ia, ib = caches[a].index, caches[b].index
            for i, j, dist, *_ in found:
                if same and ia["patient"].iloc[i] == ia["patient"].iloc[j]:
                    continue  # follow-ups of one patient are not a leak
                records.append(
                    (
                        names[a],
                        ia["id"].iloc[i],
                        ia["patient"].iloc[i],
                        ia["split"].iloc[i],
                        names[b],
                        ib["id"].iloc[j],
                        ib["patient"].iloc[j],
                        ib["split"].iloc[j],
                        dist,
                    )
                )
    pairs = pd.DataFrame(records, columns=PAIR_COLUMNS)
    across = pairs[pairs["data_a"] != pairs["data_b"]]
    if len(pairs):
        print_table("near-duplicate radiographs", PAIR_COLUMNS, pairs.head(30).to_numpy().tolist())
        if len(pairs) > 30:
            info(
                f"... and {len(pairs) - 30} more"
                + (f" (all in {cfg.report})" if cfg.report else "; pass --report FILE.csv for all")
            )
    result(
        f"{len(across)} near-duplicate pair(s) across caches, {len(pairs) - len(across)} within a cache (different patients)"
    )
    if cfg.report is not None:
        atomic_write_bytes(Path(cfg.report), csv_text(pairs, index=False).encode())
    dropped: list[str] = []
    if cfg.drop_from is not None:
        k = [c.root.resolve() for c in caches].index(cfg.drop_from.resolve())
        dropped = drop_rows(caches[k], names[k], across, names)
    return DedupeReport(pairs=pairs, dropped=dropped)


def drop_rows(data: PreparedData, name: str, across: pd.DataFrame, names: list[str]) -> list[str]:
    """Rewrite `data` without its images that have a near-duplicate in another cache."""
    with writing_cache(data.root, what="dedupe --drop-from"):  # one writer; nothing half-written left
        return _drop_rows(data, name, across, names)


def _drop_rows(data: PreparedData, name: str, across: pd.DataFrame, names: list[str]) -> list[str]:
    reasons: dict[str, str] = {}
    for row in across.itertuples(index=False):
        if row.data_a == name:
            reasons.setdefault(row.id_a, f"near-duplicate of {row.data_b}/{row.id_b} (distance {row.distance})")
        if row.data_b == name:
            reasons.setdefault(row.id_b, f"near-duplicate of {row.data_a}/{row.id_a} (distance {row.distance})")
    if not reasons:
        result(f"{data.root}: nothing to drop")
        return []
    index = data.index
    gone = index["id"].isin(reasons.keys()).to_numpy()
    if gone.all():
        raise CxrError(f"--drop-from {data.root}: every image has a near-duplicate elsewhere; nothing would be left")
    keep_rows = np.flatnonzero(~gone)
    tmp = data.root / TMP_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    write_images_subset(data.images, keep_rows, tmp / IMAGES)
    new_skipped = pd.DataFrame(
        {
            "source_path": index.loc[gone, "source_path"],
            "id": index.loc[gone, "id"],
            "patient": index.loc[gone, "patient"],
            "reason": index.loc[gone, "id"].map(reasons),
        }
    )
    old_skipped = (
        restore_cells(pd.read_csv(data.root / "skipped.csv", dtype=str))
        if (data.root / "skipped.csv").is_file()
        else None
    )
    skipped = pd.concat([x for x in (old_skipped, new_skipped) if x is not None], ignore_index=True)
    dup_path = data.root / "duplicates.csv"
    duplicates = (
        restore_cells(pd.read_csv(dup_path, dtype={"id_a": str, "id_b": str, "patient_a": str, "patient_b": str}))
        if dup_path.is_file()
        else pd.DataFrame()
    )
    if len(duplicates):
        duplicates = duplicates[~duplicates["id_a"].isin(reasons) & ~duplicates["id_b"].isin(reasons)]
    boxes = data.boxes()
    if boxes is not None:
        boxes = boxes[~boxes["id"].isin(reasons)]
    manifest = {
        k: v
        for k, v in read_json(data.root / MANIFEST).items()
        if k not in ("created", "environment", "size", "count", "labels", "splits", "split_hash", "data_hash")
    }
    dropped = {"dropped": int(gone.sum()), "against": [n for n in names if n != name]}
    manifest["deduplicated"] = [*list(manifest.get("deduplicated", [])), dropped]
    labels = list(data.labels)
    new_index = index.loc[~gone].reset_index(drop=True)
    if "class_counts" in manifest:  # a combined set: its counts follow the images that are left
        counts = split_counts_of(new_index, labels)
        manifest["class_counts"] = counts_for_manifest(counts)
        write_counts(data.root, counts)
    data._images = None  # release the memmap before its file is replaced
    finish_cache(data.root, tmp / IMAGES, new_index, labels, manifest, skipped, duplicates, boxes)
    result(f"dropped {int(gone.sum())} image(s) from {data.root} (listed in its skipped.csv)")
    return sorted(reasons)
