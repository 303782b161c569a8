"""`cxrtool prepare`: decode every image once into the patient-split cache (see data/cache.py).

A source module (sources/nih.py, covid.py, folder.py) turns a publisher's layout into a
`SourceTable`: one row per wanted image with its patient, view, labels and file, the rows already
known to be missing, and lesion boxes. `build_cache` does the rest for every source: decode the
files in a process pool (content-sniffed, square crop, resize) straight into a memmap in a
temporary folder, fingerprint each image, join patients that share a file or a near-duplicate
radiograph, split by those groups, check that nothing leaks, move the images into place and write
the index, labels, skipped/duplicates/boxes files and, last, the manifest (a folder without a
manifest is an unfinished prepare). Running it again with the same settings does nothing. The
whole run holds the folder's lock, and a failure or Ctrl-C leaves it complete or absent
(data/cachedir.py); label-file problems a source finds are `SourceTable.warnings`.

Entry points other code calls: `prepare_nih`, `prepare_covid`, `prepare_folder` (each takes its
config and returns the `PreparedData`), and from data/combine.py `combine` and `dedupe`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import config_to_dict, require
from ..errors import CxrError
from .cache import BOX_COLUMNS, BOXES, DUPLICATE_COLUMNS, DUPLICATES, IMAGES, INDEX, LABELS, MANIFEST, SKIPPED, SKIPPED_COLUMNS, PreparedData
from .cachedir import CACHE_FILES, FINISHING, TMP_DIR, PrepareInterrupted, check_output, writing_cache  # noqa: F401 - re-exported
from .fingerprint import DEFAULT_MAX_DISTANCE, near_duplicates
from .pool import default_workers



@dataclass(kw_only=True)
class PrepareOptions:
    """Options every `prepare` source shares (the CLI spells them --out, --size, ...)."""

    out: Path = Path("data")
    size: int = 256
    workers: int | None = None
    seed: int = 0
    val_frac: float = 0.1
    test_frac: float = 0.2
    overwrite: bool = False
    max_distance: int = DEFAULT_MAX_DISTANCE

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.workers is None:
            self.workers = default_workers("prepare")
        require(16 <= self.size <= 4096, f"--size: {self.size} is out of range; give a side between 16 and 4096 pixels")
        require(self.workers >= 1, f"--workers: {self.workers}; give 1 or more")
        require(0 <= self.val_frac < 1, f"--val-frac: {self.val_frac}; give a fraction in [0, 1)")
        require(0 <= self.test_frac < 1, f"--test-frac: {self.test_frac}; give a fraction in [0, 1)")
        require(self.val_frac + self.test_frac < 1, "--val-frac + --test-frac must leave images for training (sum < 1)")
        require(0 <= self.max_distance <= 256, f"--max-distance: {self.max_distance}; give 0..256 (bits of the 256-bit fingerprint)")

    def settings(self) -> dict[str, Any]:
        """What decides the cache's content (not where it goes or how fast it is made)."""
        values = config_to_dict(self)
        for key in ("out", "workers", "overwrite"):
            values.pop(key, None)
        for key, value in values.items():
            if isinstance(value, str) and key in ("root", "csv", "labels_file", "image_root"):
                values[key] = str(Path(value).resolve())
        return values


@dataclass
class SourceTable:
    """What a source module hands to `build_cache`.

    rows: id, patient, view, source_path (as shown to users), path (absolute file), one column per
    label (1/0/NaN), optional sex, age; in_test (bool) when official test lists exist.
    boxes: id, label, x, y, w, h in file pixels, or in `box_space` units of the file's width
    (NIH boxes are given for a 1024-pixel-wide image).
    """

    name: str
    rows: pd.DataFrame
    labels: list[str]
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(SKIPPED_COLUMNS)))
    boxes: pd.DataFrame | None = None
    box_space: float | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # problems in the label file (always shown, kept in the manifest)


# ---------------------------------------------------------------- decoding in worker processes


def _decode_one(task: tuple[int, str, int]) -> tuple[int, bytes | None, tuple | None, str, str, str, bytes | None]:
    """(k, path, size) -> (k, pixels, crop, fingerprint, file hash, reason if unreadable, thumbnail).

    The thumbnail (the square crop at align.FINE px) is made only for caches smaller than that,
    so that near-duplicates are confirmed on as much detail at any --size.
    """
    from .align import FINE
    from .fingerprint import fingerprint
    from .imageio import ImageReadError, read_gray, resize, square_crop

    k, path, size = task
    try:
        digest = hashlib.sha1()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        square, crop = square_crop(read_gray(path))
        img = resize(square, size)
        # The cached image is fingerprinted; below 64 px the crop is, so small caches hash as well.
        fp = fingerprint(img if size >= 64 else square)
        thumb = resize(square, FINE).tobytes() if size < FINE else None
        return k, img.tobytes(), dataclasses.astuple(crop), fp, digest.hexdigest(), "", thumb
    except ImageReadError as exc:
        return k, None, None, "", "", str(exc), None
    except OSError as exc:
        return k, None, None, "", "", f"cannot read ({exc.strerror or exc})", None


def decode_all(paths: list[str], size: int, workers: int, images_path: Path, thumbs_path: Path | None = None) -> tuple[int, list[tuple]]:
    """Decode `paths` into an (n, size, size) memmap at images_path, readable ones first, in order.

    With `thumbs_path` (caches under align.FINE px), the FINE-px thumbnails go into a memmap
    there, in the same order. Returns (number decoded, per input path: (slot or -1, crop,
    fingerprint, hash, reason)).
    """
    from ..progress import progress_bar
    from .align import FINE

    images = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(max(1, len(paths)), size, size))
    thumbs = None
    if thumbs_path is not None:
        thumbs = np.lib.format.open_memmap(thumbs_path, mode="w+", dtype=np.uint8, shape=(max(1, len(paths)), FINE, FINE))
    results: list[tuple] = [None] * len(paths)  # type: ignore[list-item]
    tasks = [(k, p, size) for k, p in enumerate(paths)]
    slot = 0
    pool = None
    if workers > 1 and len(paths) > 1:
        from .pool import start_pool

        pool = start_pool(workers)  # workers ignore Ctrl-C and exit with their parent
        stream = pool.imap(_decode_one, tasks, chunksize=max(1, min(16, len(tasks) // (workers * 8))))
    else:
        stream = map(_decode_one, tasks)
    try:
        with progress_bar(len(tasks), "decode", unit="images") as bar:
            for k, pixels, crop, fp, digest, reason, thumb in stream:
                if pixels is None:
                    results[k] = (-1, None, "", "", reason)
                else:
                    images[slot] = np.frombuffer(pixels, dtype=np.uint8).reshape(size, size)
                    if thumbs is not None and thumb is not None:
                        thumbs[slot] = np.frombuffer(thumb, dtype=np.uint8).reshape(FINE, FINE)
                    results[k] = (slot, crop, fp, digest, "")
                    slot += 1
                bar.advance(1)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    images.flush()
    del images, thumbs
    return slot, results


def shrink_images(images_path: Path, n: int) -> None:
    """Keep the first n images of an .npy file, in place: a new header, then the file is cut.

    No copy is made (at NIH scale a copy would be another 7.3 GB): the header is rewritten with
    the smaller shape, padded to its old length, and the rows past n are truncated away.
    """
    with open(images_path, "r+b") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
        if shape[0] == n:
            return
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (n,) + tuple(shape[1:])}
        text = repr(header).encode("latin1")
        # The same header length as before (a shorter shape only needs more padding spaces).
        prefix = 10 if version == (1, 0) else 12
        pad = offset - prefix - len(text) - 1
        if pad < 0:
            raise ValueError(f"{images_path}: cannot rewrite the .npy header in place")
        text += b" " * pad + b"\n"
        fh.seek(0)
        fh.write(np.lib.format.magic(*version))
        fh.write((len(text)).to_bytes(2 if version == (1, 0) else 4, "little"))
        fh.write(text)
        fh.truncate(offset + n * int(np.prod(shape[1:])) * dtype.itemsize)


def write_images_subset(source: np.ndarray, rows: np.ndarray, path: Path) -> None:
    """Write source[rows] to an .npy file in chunks (combine, dedupe --drop-from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(rows),) + tuple(source.shape[1:]))
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        target[start : start + len(chunk)] = source[chunk]
    target.flush()
    del target


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
    from ..runs import atomic_write_bytes, write_manifest
    from .cache import data_hash, file_sizes, split_counts, split_hash
    from .splits import check_splits

    check_splits(index, str(out))
    (out / TMP_DIR / FINISHING).touch()  # on failure from here on, the half-replaced files are removed
    (out / MANIFEST).unlink(missing_ok=True)  # from here on the folder is an unfinished cache
    os.replace(tmp_images, out / IMAGES)
    index_bytes = index.to_csv(index=False).encode()
    labels_bytes = (json.dumps({"labels": list(labels)}, indent=2) + "\n").encode()
    atomic_write_bytes(out / INDEX, index_bytes)
    atomic_write_bytes(out / LABELS, labels_bytes)
    atomic_write_bytes(out / SKIPPED, skipped.reindex(columns=list(SKIPPED_COLUMNS)).to_csv(index=False).encode())
    atomic_write_bytes(out / DUPLICATES, duplicates.reindex(columns=list(DUPLICATE_COLUMNS)).to_csv(index=False).encode())
    if boxes is not None:
        atomic_write_bytes(out / BOXES, boxes.reindex(columns=list(BOX_COLUMNS)).to_csv(index=False).encode())
    else:
        (out / BOXES).unlink(missing_ok=True)
    size = int(np.load(out / IMAGES, mmap_mode="r").shape[1])
    fields = dict(manifest)
    fields.update(
        files=file_sizes(out), size=size, count=int(len(index)), labels=list(labels), splits=split_counts(index),
        split_hash=split_hash(index), data_hash=data_hash(index_bytes, labels_bytes),
    )
    write_manifest(out, **fields)
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    return PreparedData(out)


# ---------------------------------------------------------------- from a source table to a cache


def unique_ids(ids: pd.Series, qualifier: pd.Series) -> pd.Series:
    """Make ids unique: a repeated id gets '@' + its qualifier (e.g. the patient), then a counter."""
    ids = ids.astype(str)
    repeated = ids.duplicated(keep=False)
    out = ids.where(~repeated, ids + "@" + qualifier.astype(str))
    counter = out.groupby(out).cumcount()
    return out.where(counter == 0, out + "#" + counter.astype(str))


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
    xyxy = np.stack([
        (kept["x"].to_numpy(float) * to_file - crop_x) * scale,
        (kept["y"].to_numpy(float) * to_file - crop_y) * scale,
        ((kept["x"] + kept["w"]).to_numpy(float) * to_file - crop_x) * scale,
        ((kept["y"] + kept["h"]).to_numpy(float) * to_file - crop_y) * scale,
    ], axis=1).clip(0, size)
    out = pd.DataFrame({"id": kept["id"].to_numpy(), "label": kept["label"].to_numpy(),
                        "x": xyxy[:, 0], "y": xyxy[:, 1], "w": xyxy[:, 2] - xyxy[:, 0], "h": xyxy[:, 3] - xyxy[:, 1]})
    return out[(out["w"] > 0) & (out["h"] > 0)].round(2).reset_index(drop=True)


def duplicate_pairs_frame(index: pd.DataFrame, pairs: list, other: pd.DataFrame | None = None) -> pd.DataFrame:
    """duplicates.csv rows for pairs under different patients (pairs within `index`, or index x other).

    `pairs` are fingerprint.Pair records: how each pair was matched (method, score) and where
    b sits in a (scale, x, y).
    """
    other = index if other is None else other
    records = []
    for pair in pairs:
        a, b = index.iloc[pair.i], other.iloc[pair.j]
        if other is index and a["patient"] == b["patient"]:
            continue
        records.append((a["id"], b["id"], a["patient"], b["patient"], a["source"], b["source"], pair.distance,
                        pair.method, pair.score, pair.scale, pair.x, pair.y))
    return pd.DataFrame(records, columns=list(DUPLICATE_COLUMNS))


def build_cache(table: SourceTable, cfg: PrepareOptions) -> PreparedData:
    """Decode, fingerprint, group, split, check and write (see the module docstring)."""
    from .cache import split_counts
    from .align import FINE
    from .dedup import drop_training_members, find_pairs
    from .splits import official_split, patient_groups, random_split

    rows = table.rows.reset_index(drop=True)
    if rows.empty:
        raise CxrError(f"{table.name}: no image found at all ({len(table.skipped)} listed rows have no file); check the folder")
    tmp = cfg.out / TMP_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    thumbs = tmp / "thumbs.u8.npy" if cfg.size < FINE else None
    n_ok, results = decode_all(rows["path"].astype(str).tolist(), cfg.size, cfg.workers, tmp / IMAGES, thumbs)
    bad = [k for k, r in enumerate(results) if r[0] < 0]
    unreadable = pd.DataFrame({
        "source_path": rows.loc[bad, "source_path"].to_numpy(), "id": rows.loc[bad, "id"].to_numpy(),
        "patient": rows.loc[bad, "patient"].to_numpy(), "reason": [results[k][4] for k in bad],
    }, columns=list(SKIPPED_COLUMNS))
    skipped = pd.concat([table.skipped.reindex(columns=list(SKIPPED_COLUMNS)), unreadable], ignore_index=True)
    if n_ok == 0:
        example = f"{unreadable['source_path'].iloc[0]}: {unreadable['reason'].iloc[0]}" if len(unreadable) else ""
        raise CxrError(f"{table.name}: none of the {len(rows)} images could be read (e.g. {example})")
    shrink_images(tmp / IMAGES, n_ok)
    good = [k for k, r in enumerate(results) if r[0] >= 0]
    kept = rows.loc[good].reset_index(drop=True)
    crops = np.array([results[k][1] for k in good], dtype=np.int64)
    index = pd.DataFrame({
        "id": kept["id"].astype(str), "patient": kept["patient"].astype(str),
        "view": kept["view"].fillna("").astype(str), "split": "", "source": table.name,
        "source_path": kept["source_path"].astype(str),
    })
    for col in ("sex", "age", "finding"):  # finding: the source's own words (Cohen), read by `prepare combine`
        if col in kept.columns:
            index[col] = kept[col].to_numpy()
    for k, col in enumerate(("crop_x", "crop_y", "crop_side", "orig_width", "orig_height")):
        index[col] = crops[:, k]
    index["fingerprint"] = [results[k][2] for k in good]
    index["file_hash"] = [results[k][3] for k in good]
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
        if counts["images"] == 0 and (split == "train" or (split == "val" and cfg.val_frac > 0) or (split == "test" and cfg.test_frac > 0)):
            from ..progress import warn

            warn(f"the {split} split is empty (0 of {len(index)} images); use more data or other --val-frac/--test-frac")
    boxes = None
    if table.boxes is not None:
        boxes = boxes_to_cache(table.boxes, index, cfg.size, table.box_space)
    n_groups = len(set(groups))
    manifest = {
        "source": table.name, "settings": cfg.settings(), "skipped": int(len(skipped)),
        "duplicates": int(len(duplicates)), "patient_groups": n_groups,
        "split_method": "official lists" if "in_test" in kept.columns else "seeded by patient group",
        "notes": table.notes, "warnings": table.warnings,
    }
    if conflicts:
        manifest["left_out_of_training"] = conflicts
    data = finish_cache(cfg.out, tmp / IMAGES, index, table.labels, manifest, skipped, duplicates, boxes)
    print_summary(data, skipped, duplicates, table.notes, table.warnings)
    return data


def print_summary(data: PreparedData, skipped: pd.DataFrame, duplicates: pd.DataFrame, notes: list[str] = (),
                  warnings: list[str] = ()) -> None:
    """The counts per split (images, patients, positives per label) and one line each for the rest."""
    from ..progress import info, print_table, result, warn

    for note in notes:
        info(note)
    index = data.index
    rows = []
    for split, counts in data.manifest["splits"].items():
        part = index[index["split"] == split]
        positives = ", ".join(f"{l} {int(np.nansum(part[l].to_numpy(float)))}" for l in data.labels)
        rows.append((split, counts["images"], counts["patients"], positives))
    print_table(f"{data.root} ({data.manifest['source']}, {data.size} px)", ["split", "images", "patients", "positives"], rows)
    for line in warnings:
        warn(line)
    if len(skipped):
        warn(f"{len(skipped)} image(s) missing, unreadable or with conflicting labels were skipped; listed in {data.root / SKIPPED}")
    if len(duplicates):
        result(f"{len(duplicates)} near-duplicate pair(s) under different patients kept in one split; listed in {data.root / DUPLICATES}")
    result(f"prepared {len(index)} images into {data.root}")


def _run(cfg: PrepareOptions, source: str, make_table) -> PreparedData:
    with writing_cache(cfg.out):
        ready = check_output(cfg.out, cfg.settings(), source, cfg.overwrite)
        if ready is not None:
            return ready
        return build_cache(make_table(cfg), cfg)


def prepare_nih(cfg: "PrepareNihConfig") -> PreparedData:  # noqa: F821 - defined in sources/nih.py
    """NIH ChestX-ray14 (label file, images anywhere under the root, optional lists and boxes)."""
    from .sources.nih import read_nih

    return _run(cfg, "nih", read_nih)


def prepare_covid(cfg: "PrepareCovidConfig") -> PreparedData:  # noqa: F821
    """The Cohen/Dao COVID-19 image collection (metadata.csv, images/)."""
    from .sources.covid import read_covid

    return _run(cfg, "covid", read_covid)


def prepare_folder(cfg: "PrepareFolderConfig") -> PreparedData:  # noqa: F821
    """Any labelled set described by a CSV (image path, label columns, optional patient column)."""
    from .sources.folder import read_folder

    return _run(cfg, cfg.name, read_folder)


def __getattr__(name: str):
    # The configs live beside their sources; importing them from here is the public spelling.
    if name in ("PrepareNihConfig", "PrepareCovidConfig", "PrepareFolderConfig"):
        from .sources import covid, folder, nih

        return {"PrepareNihConfig": nih.PrepareNihConfig, "PrepareCovidConfig": covid.PrepareCovidConfig,
                "PrepareFolderConfig": folder.PrepareFolderConfig}[name]
    raise AttributeError(name)
