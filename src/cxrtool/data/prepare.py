"""`cxrtool prepare`: decode every image once into the patient-split cache (see data/cache.py).

A source module (sources/nih.py, covid.py, folder.py) turns a publisher's layout into a
`SourceTable` (sources/base.py): one row per wanted image with its patient, view, labels and
file, the rows already known to be missing, and lesion boxes. `build_cache` does the rest for every source: decode the
files in a process pool (content-sniffed, square crop, resize) straight into a memmap in a
temporary folder, fingerprint each image, join patients that share a file or a near-duplicate
radiograph, split by those groups, check that nothing leaks, move the images into place and write
the index, labels, skipped/duplicates/boxes files and, last, the manifest (a folder without a
manifest is an unfinished prepare). Running it again with the same settings does nothing. The
whole run holds the folder's lock, and a failure or Ctrl-C leaves it complete or absent
(data/cachedir.py); label-file problems a source finds are `SourceTable.warnings`.

Entry points other code calls: `prepare(cfg)` for any registered source's config (the source
is found by its config class in sources/registry.py; `prepare_nih`, `prepare_covid` and
`prepare_folder` are the same call, named), and from data/combine.py `combine` and `dedupe`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes
from ..errors import CxrError
from ..locks import FolderNotWritable
from ..progress import info, print_table, progress_bar, result, warn
from ..runs import write_manifest
from ..safeio import csv_text
from .cache import (
    BOX_COLUMNS,
    BOXES,
    DUPLICATE_COLUMNS,
    DUPLICATES,
    IMAGES,
    INDEX,
    LABELS,
    MANIFEST,
    SKIPPED,
    SKIPPED_COLUMNS,
    PreparedData,
    data_hash,
    file_sizes,
    split_counts,
    split_hash,
)
from .cachedir import (  # noqa: F401 - re-exported
    CACHE_FILES,
    FINISHING,
    TMP_DIR,
    PrepareInterrupted,
    check_output,
    ready_unwritable,
    writing_cache,
)
from .dedup import drop_training_members, find_pairs
from .imageio import ImageReadError, open_regular, read_gray_from, resize, square_crop
from .neardup.align import FINE
from .neardup.hashing import fingerprint
from .npyfile import open_images, shrink_images
from .pool import start_pool
from .sources.base import PrepareOptions, SourceTable
from .sources.covid import PrepareCovidConfig
from .sources.folder import PrepareFolderConfig
from .sources.nih import PrepareNihConfig
from .sources.registry import source_for_config
from .splits import check_splits, official_split, patient_groups, random_split

# ---------------------------------------------------------------- decoding in worker processes


class Decoded(NamedTuple):
    """What a worker sends back for one file (pixels None: unreadable, `reason` says why)."""

    k: int
    pixels: bytes | None
    crop: tuple | None
    fingerprint: str
    file_hash: str
    reason: str
    thumbnail: bytes | None


class DecodeResult(NamedTuple):
    """One input path after decoding: its slot in the images file (-1: unreadable) and the rest."""

    slot: int
    crop: tuple | None  # (x, y, side, width, height) of the square crop in the file
    fingerprint: str
    file_hash: str
    reason: str  # why it could not be read ("" when it was)


def _decode_one(task: tuple[int, str, int]) -> Decoded:
    """(k, path, size) -> the file's pixels, crop, fingerprint, hash and thumbnail, or why not.

    The thumbnail (the square crop at align.FINE px) is made only for caches smaller than that,
    so that near-duplicates are confirmed on as much detail at any --size.
    """
    k, path, size = task
    try:
        digest = hashlib.sha1()
        with open_regular(path) as fh:  # a FIFO or device is refused here, before any read
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
            square, crop = square_crop(read_gray_from(fh, Path(path)))
        img = resize(square, size)
        # The cached image is fingerprinted; below 64 px the crop is, so small caches hash as well.
        fp = fingerprint(img if size >= 64 else square)
        thumb = resize(square, FINE).tobytes() if size < FINE else None
        return Decoded(k, img.tobytes(), dataclasses.astuple(crop), fp, digest.hexdigest(), "", thumb)
    except ImageReadError as exc:
        return Decoded(k, None, None, "", "", str(exc), None)
    except OSError as exc:
        return Decoded(k, None, None, "", "", f"cannot read ({exc.strerror or exc})", None)


def decode_all(
    paths: list[str], size: int, workers: int, images_path: Path, thumbs_path: Path | None = None
) -> tuple[int, list[DecodeResult]]:
    """Decode `paths` into an (n, size, size) memmap at images_path, readable ones first, in order.

    With `thumbs_path` (caches under align.FINE px), the FINE-px thumbnails go into a memmap
    there, in the same order. Returns the number decoded and a `DecodeResult` per input path.
    """
    # Space checked and reserved first: a full disk is one line, not SIGBUS (data/npyfile.py).
    images = open_images(images_path, (max(1, len(paths)), size, size))
    thumbs = open_images(thumbs_path, (max(1, len(paths)), FINE, FINE)) if thumbs_path is not None else None
    results: list[DecodeResult] = [None] * len(paths)  # type: ignore[list-item]
    tasks = [(k, p, size) for k, p in enumerate(paths)]
    slot = 0
    pool = None
    if workers > 1 and len(paths) > 1:
        pool = start_pool(workers)  # workers ignore Ctrl-C and exit with their parent
        stream = pool.imap(_decode_one, tasks, chunksize=max(1, min(16, len(tasks) // (workers * 8))))
    else:
        stream = map(_decode_one, tasks)
    try:
        with progress_bar(len(tasks), "decode", unit="images") as bar:
            for done in stream:
                if done.pixels is None:
                    results[done.k] = DecodeResult(-1, None, "", "", done.reason)
                else:
                    images[slot] = np.frombuffer(done.pixels, dtype=np.uint8).reshape(size, size)
                    if thumbs is not None and done.thumbnail is not None:
                        thumbs[slot] = np.frombuffer(done.thumbnail, dtype=np.uint8).reshape(FINE, FINE)
                    results[done.k] = DecodeResult(slot, done.crop, done.fingerprint, done.file_hash, "")
                    slot += 1
                bar.advance(1)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    images.flush()
    del images, thumbs
    return slot, results


# ---------------------------------------------------------------- finishing a cache


def finish_cache(
    out: Path,
    tmp_images: Path,
    index: pd.DataFrame,
    labels: list[str],
    manifest: dict[str, Any],
    skipped: pd.DataFrame,
    duplicates: pd.DataFrame,
    boxes: pd.DataFrame | None,
) -> PreparedData:
    """Move the images into place and write the rest as `cache.write_cache` does, manifest last."""
    check_splits(index, str(out))
    (out / TMP_DIR / FINISHING).touch()  # on failure from here on, the half-replaced files are removed
    (out / MANIFEST).unlink(missing_ok=True)  # from here on the folder is an unfinished cache
    os.replace(tmp_images, out / IMAGES)
    index_bytes = csv_text(index, index=False).encode()
    labels_bytes = (json.dumps({"labels": list(labels)}, indent=2) + "\n").encode()
    atomic_write_bytes(out / INDEX, index_bytes)
    atomic_write_bytes(out / LABELS, labels_bytes)
    atomic_write_bytes(out / SKIPPED, csv_text(skipped.reindex(columns=list(SKIPPED_COLUMNS)), index=False).encode())
    atomic_write_bytes(
        out / DUPLICATES, csv_text(duplicates.reindex(columns=list(DUPLICATE_COLUMNS)), index=False).encode()
    )
    if boxes is not None:
        atomic_write_bytes(out / BOXES, csv_text(boxes.reindex(columns=list(BOX_COLUMNS)), index=False).encode())
    else:
        (out / BOXES).unlink(missing_ok=True)
    size = int(np.load(out / IMAGES, mmap_mode="r").shape[1])
    fields = dict(manifest)
    fields.update(
        files=file_sizes(out),
        size=size,
        count=len(index),
        labels=list(labels),
        splits=split_counts(index),
        split_hash=split_hash(index),
        data_hash=data_hash(index_bytes, labels_bytes),
    )
    write_manifest(out, **fields)
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    return PreparedData(out)


# ---------------------------------------------------------------- from a source table to a cache


def boxes_to_cache(boxes: pd.DataFrame, index: pd.DataFrame, size: int, box_space: float | None) -> pd.DataFrame:
    """Boxes in file pixels (or box_space units of the file width) -> cache pixels, through the crop."""
    geo = index.set_index("id")[["crop_x", "crop_y", "crop_side", "orig_width"]]
    kept = boxes[boxes["id"].isin(geo.index)].copy()
    if kept.empty:
        return pd.DataFrame(columns=list(BOX_COLUMNS))
    g = geo.loc[kept["id"]].to_numpy(dtype=float)
    crop_x, crop_y, side, width = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
    to_file = width / box_space if box_space else np.ones(len(kept))
    scale = size / side
    xyxy = np.stack(
        [
            (kept["x"].to_numpy(float) * to_file - crop_x) * scale,
            (kept["y"].to_numpy(float) * to_file - crop_y) * scale,
            ((kept["x"] + kept["w"]).to_numpy(float) * to_file - crop_x) * scale,
            ((kept["y"] + kept["h"]).to_numpy(float) * to_file - crop_y) * scale,
        ],
        axis=1,
    ).clip(0, size)
    out = pd.DataFrame(
        {
            "id": kept["id"].to_numpy(),
            "label": kept["label"].to_numpy(),
            "x": xyxy[:, 0],
            "y": xyxy[:, 1],
            "w": xyxy[:, 2] - xyxy[:, 0],
            "h": xyxy[:, 3] - xyxy[:, 1],
        }
    )
    return out[(out["w"] > 0) & (out["h"] > 0)].round(2).reset_index(drop=True)


def duplicate_pairs_frame(index: pd.DataFrame, pairs: list, other: pd.DataFrame | None = None) -> pd.DataFrame:
    """duplicates.csv rows for pairs under different patients (pairs within `index`, or index x other).

    `pairs` are neardup.confirm.Pair records: how each pair was matched (method, score) and where
    b sits in a (scale, x, y).
    """
    other = index if other is None else other
    records = []
    for pair in pairs:
        a, b = index.iloc[pair.i], other.iloc[pair.j]
        if other is index and a["patient"] == b["patient"]:
            continue
        records.append(
            (
                a["id"],
                b["id"],
                a["patient"],
                b["patient"],
                a["source"],
                b["source"],
                pair.distance,
                pair.method,
                pair.score,
                pair.scale,
                pair.x,
                pair.y,
            )
        )
    return pd.DataFrame(records, columns=list(DUPLICATE_COLUMNS))


def build_cache(table: SourceTable, cfg: PrepareOptions) -> PreparedData:
    """Decode, fingerprint, group, split, check and write (see the module docstring)."""
    rows = table.rows.reset_index(drop=True)
    if rows.empty:
        raise CxrError(
            f"{table.name}: no image found at all ({len(table.skipped)} listed rows have no file); check the folder"
        )
    tmp = cfg.out / TMP_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    thumbs = tmp / "thumbs.u8.npy" if cfg.size < FINE else None
    n_ok, results = decode_all(rows["path"].astype(str).tolist(), cfg.size, cfg.workers, tmp / IMAGES, thumbs)
    bad = [k for k, r in enumerate(results) if r.slot < 0]
    unreadable = pd.DataFrame(
        {
            "source_path": rows.loc[bad, "source_path"].to_numpy(),
            "id": rows.loc[bad, "id"].to_numpy(),
            "patient": rows.loc[bad, "patient"].to_numpy(),
            "reason": [results[k].reason for k in bad],
        },
        columns=list(SKIPPED_COLUMNS),
    )
    skipped = pd.concat([table.skipped.reindex(columns=list(SKIPPED_COLUMNS)), unreadable], ignore_index=True)
    if n_ok == 0:
        example = f"{unreadable['source_path'].iloc[0]}: {unreadable['reason'].iloc[0]}" if len(unreadable) else ""
        raise CxrError(f"{table.name}: none of the {len(rows)} images could be read (e.g. {example})")
    shrink_images(tmp / IMAGES, n_ok)
    good = [k for k, r in enumerate(results) if r.slot >= 0]
    kept = rows.loc[good].reset_index(drop=True)
    crops = np.array([results[k].crop for k in good], dtype=np.int64)
    index = pd.DataFrame(
        {
            "id": kept["id"].astype(str),
            "patient": kept["patient"].astype(str),
            "view": kept["view"].fillna("").astype(str),
            "split": "",
            "source": table.name,
            "source_path": kept["source_path"].astype(str),
        }
    )
    for col in ("sex", "age", "finding"):  # finding: the source's own words (Cohen), read by `prepare combine`
        if col in kept.columns:
            index[col] = kept[col].to_numpy()
    for k, col in enumerate(("crop_x", "crop_y", "crop_side", "orig_width", "orig_height")):
        index[col] = crops[:, k]
    index["fingerprint"] = [results[k].fingerprint for k in good]
    index["file_hash"] = [results[k].file_hash for k in good]
    for label in table.labels:
        index[label] = kept[label].astype(float).to_numpy()

    # Patients sharing a file, its bytes or a near-duplicate radiograph form one group (one split).
    pixels = np.load(thumbs or tmp / IMAGES, mmap_mode="r")
    pairs = find_pairs(index, kept["path"].astype(str).tolist(), pixels, cfg.max_distance)
    del pixels
    if thumbs is not None:
        thumbs.unlink()
    duplicates = duplicate_pairs_frame(index, pairs)
    patients = index["patient"].tolist()
    groups = patient_groups(patients, [(patients[p.i], patients[p.j]) for p in pairs])
    conflicts = None
    if "in_test" in kept.columns:
        index["split"], dropped = official_split(groups, kept["in_test"].to_numpy(bool), cfg.val_frac, cfg.seed)
        if dropped.any():
            index, skipped, conflicts = drop_training_members(tmp / IMAGES, index, groups, dropped, skipped)
            groups = groups[~dropped]
    else:
        index["split"] = random_split(groups, cfg.val_frac, cfg.test_frac, cfg.seed)
    for split, counts in split_counts(index).items():
        if counts["images"] == 0 and (
            split == "train" or (split == "val" and cfg.val_frac > 0) or (split == "test" and cfg.test_frac > 0)
        ):
            warn(
                f"the {split} split is empty (0 of {len(index)} images); use more data or other --val-frac/--test-frac"
            )
    boxes = None
    if table.boxes is not None:
        boxes = boxes_to_cache(table.boxes, index, cfg.size, table.box_space)
    n_groups = len(set(groups))
    manifest = {
        "source": table.name,
        "settings": cfg.settings(),
        "skipped": len(skipped),
        "duplicates": len(duplicates),
        "patient_groups": n_groups,
        "split_method": "official lists" if "in_test" in kept.columns else "seeded by patient group",
        "notes": table.notes,
        "warnings": table.warnings,
    }
    if conflicts:
        manifest["left_out_of_training"] = conflicts
    data = finish_cache(cfg.out, tmp / IMAGES, index, table.labels, manifest, skipped, duplicates, boxes)
    print_summary(data, skipped, duplicates, table.notes, table.warnings)
    return data


def print_summary(
    data: PreparedData, skipped: pd.DataFrame, duplicates: pd.DataFrame, notes: list[str] = (), warnings: list[str] = ()
) -> None:
    """The counts per split (images, patients, positives per label) and one line each for the rest."""
    for note in notes:
        info(note)
    index = data.index
    rows = []
    for split, counts in data.manifest["splits"].items():
        part = index[index["split"] == split]
        positives = ", ".join(f"{l} {int(np.nansum(part[l].to_numpy(float)))}" for l in data.labels)
        rows.append((split, counts["images"], counts["patients"], positives))
    print_table(
        f"{data.root} ({data.manifest['source']}, {data.size} px)", ["split", "images", "patients", "positives"], rows
    )
    for line in warnings:
        warn(line)
    if len(skipped):
        warn(
            f"{len(skipped)} image(s) missing, unreadable or with conflicting labels were skipped; listed in {data.root / SKIPPED}"
        )
    if len(duplicates):
        result(
            f"{len(duplicates)} near-duplicate pair(s) under different patients kept in one split; listed in {data.root / DUPLICATES}"
        )
    result(f"prepared {len(index)} images into {data.root}")


def prepare(cfg: PrepareOptions) -> PreparedData:
    """Prepare the cache `cfg` describes, with the reader of the source whose config it is.

    Nothing is done when the cache there was made with the same settings; a read-only cache
    made so is returned as it is.
    """
    source = source_for_config(cfg)
    name = source.source_of(cfg)
    try:
        with writing_cache(cfg.out):
            ready = check_output(cfg.out, cfg.settings(), name, cfg.overwrite)
            if ready is not None:
                return ready
            return build_cache(source.read(cfg), cfg)
    except FolderNotWritable as problem:  # a read-only cache made with these settings needs no write
        if cfg.overwrite:
            raise
        return ready_unwritable(cfg.out, cfg.settings(), name, problem)


def prepare_nih(cfg: PrepareNihConfig) -> PreparedData:
    """NIH ChestX-ray14 (label file, images anywhere under the root, optional lists and boxes)."""
    return prepare(cfg)


def prepare_covid(cfg: PrepareCovidConfig) -> PreparedData:
    """The Cohen/Dao COVID-19 image collection (metadata.csv, images/)."""
    return prepare(cfg)


def prepare_folder(cfg: PrepareFolderConfig) -> PreparedData:
    """Any labelled set described by a CSV (image path, label columns, optional patient column)."""
    return prepare(cfg)
