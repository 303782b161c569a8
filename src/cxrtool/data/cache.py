"""The prepared cache: the on-disk format `cxrtool prepare` writes and every later stage reads.

A cache directory holds
- `images.u8.npy`  (N, S, S) uint8, a NumPy file opened as a memmap (decoded once, never again);
- `index.csv`      one row per image, in the same order: `id`, `patient`, `view`, `split`
                   (train/val/test), `source` (dataset name), `source_path`, optional metadata
                   (`sex`, `age`, ...), crop geometry, `fingerprint`, and one column per label
                   (1, 0, or empty = not annotated by this source);
- `labels.json`    {"labels": [...]}: the label columns, in model output order;
- `manifest.json`  source, settings, counts per split, `split_hash`, `data_hash`, and `files`: the
                   size in bytes of every other file. It is written last, so a folder without it is
                   an unfinished cache; opening a cache checks the sizes and that index.csv and
                   labels.json still hash to `data_hash`, so a truncated or mixed cache is refused
                   in one line instead of failing later;
- `skipped.csv`    rows that were not cached and why; `duplicates.csv` near-duplicate pairs;
- `boxes.csv`      (optional) id, label, x, y, w, h in cache pixels.
`PreparedData` opens one; `write_cache` writes one from arrays in memory (tests, `combine`).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write, atomic_write_bytes, read_json
from ..errors import CxrError
from ..runs import write_manifest
from ..safeio import csv_text, restore_cells

IMAGES = "images.u8.npy"
INDEX = "index.csv"
LABELS = "labels.json"
MANIFEST = "manifest.json"
SKIPPED = "skipped.csv"
DUPLICATES = "duplicates.csv"
BOXES = "boxes.csv"

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("id", "patient", "view", "split", "source", "source_path")
SKIPPED_COLUMNS = ("source_path", "id", "patient", "reason")
BOX_COLUMNS = ("id", "label", "x", "y", "w", "h")
DUPLICATE_COLUMNS = (
    "id_a",
    "id_b",
    "patient_a",
    "patient_b",
    "source_a",
    "source_b",
    "distance",
    "method",
    "score",
    "scale",
    "x",
    "y",
)


def split_hash(index: pd.DataFrame) -> str:
    """A short hash of who is in which split (order-independent)."""
    rows = sorted(f"{i}\t{p}\t{s}" for i, p, s in zip(index["id"], index["patient"], index["split"]))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def data_hash(index_csv: bytes, labels_json: bytes) -> str:
    """A short hash identifying the cache's content (index rows include each image's fingerprint)."""
    return hashlib.sha256(index_csv + b"\0" + labels_json).hexdigest()[:16]


def check_no_leak(index: pd.DataFrame, where: str = "index") -> None:
    """Fail if one patient has images in two splits (the central promise of the cache)."""
    per_patient = index.groupby("patient")["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if len(leaking):
        example = leaking.index[0]
        raise CxrError(f"{where}: {len(leaking)} patient(s) appear in more than one split (e.g. patient {example!r})")


def file_sizes(
    root: Path, names: tuple[str, ...] = (IMAGES, INDEX, LABELS, SKIPPED, DUPLICATES, BOXES, "counts.csv")
) -> dict[str, int]:
    """Bytes of each cache file present in `root` (the manifest's `files`, checked on open)."""
    return {name: (root / name).stat().st_size for name in names if (root / name).is_file()}


def check_complete(root: Path, manifest: dict[str, Any], index_bytes: bytes, labels_bytes: bytes) -> None:
    """Refuse a cache whose files differ from what its manifest recorded (truncated, mixed, edited)."""
    again = "run prepare again with --overwrite"
    for name, expected in (manifest.get("files") or {}).items():
        path = root / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != expected:
            what = "is missing" if actual is None else f"is {actual} bytes"
            raise CxrError(f"cache {root} is incomplete: {name} {what}, the manifest says {expected}; {again}")
    expected_hash = manifest.get("data_hash")
    if expected_hash and data_hash(index_bytes, labels_bytes) != expected_hash:
        raise CxrError(
            f"cache {root} is inconsistent: {INDEX} / {LABELS} do not match the manifest's data_hash "
            f"(changed after prepare, or from another prepare); {again}"
        )


def split_counts(index: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {
        s: {
            "images": int((index["split"] == s).sum()),
            "patients": int(index.loc[index["split"] == s, "patient"].nunique()),
        }
        for s in SPLITS
    }


def write_cache(
    out: Path,
    images: np.ndarray,
    index: pd.DataFrame,
    labels: list[str],
    manifest: dict[str, Any] | None = None,
    skipped: pd.DataFrame | None = None,
    boxes: pd.DataFrame | None = None,
    duplicates: pd.DataFrame | None = None,
) -> Path:
    """Write a complete cache from in-memory arrays (each file atomically; images last-but-one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, S, S) uint8, got {images.shape} {images.dtype}")
    if len(index) != len(images):
        raise ValueError(f"index has {len(index)} rows but there are {len(images)} images")
    missing = [c for c in REQUIRED_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks columns {missing}")
    absent = [l for l in labels if l not in index.columns]
    if absent:
        raise ValueError(f"index lacks label columns {absent}")
    check_no_leak(index, str(out))

    def save_images(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, images)

    (out / MANIFEST).unlink(missing_ok=True)  # from here on the folder is an unfinished cache
    atomic_write(out / IMAGES, save_images)
    index_bytes = csv_text(index, index=False).encode()
    labels_bytes = (json.dumps({"labels": list(labels)}, indent=2) + "\n").encode()
    atomic_write_bytes(out / INDEX, index_bytes)
    atomic_write_bytes(out / LABELS, labels_bytes)
    for frame, name, cols in (
        (skipped, SKIPPED, SKIPPED_COLUMNS),
        (duplicates, DUPLICATES, DUPLICATE_COLUMNS),
    ):
        frame = frame if frame is not None else pd.DataFrame(columns=list(cols))
        atomic_write_bytes(out / name, csv_text(frame, index=False).encode())
    if boxes is not None:
        atomic_write_bytes(out / BOXES, csv_text(boxes, index=False).encode())
    else:
        (out / BOXES).unlink(missing_ok=True)  # a box file of an earlier cache would not match
    fields = dict(manifest or {})
    fields.setdefault("source", "arrays")
    fields.update(
        files=file_sizes(out, (IMAGES, INDEX, LABELS, SKIPPED, DUPLICATES) + ((BOXES,) if boxes is not None else ())),
        size=int(images.shape[1]),
        count=len(index),
        labels=list(labels),
        splits=split_counts(index),
        split_hash=split_hash(index),
        data_hash=data_hash(index_bytes, labels_bytes),
    )
    write_manifest(out, **fields)  # last: a cache without a manifest is an unfinished one
    return out


class PreparedData:
    """A prepared cache, opened for reading. Images are memory-mapped lazily (per process)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise CxrError(f"{self.root}: no such data directory; run `cxrtool prepare` first")
        for name in (MANIFEST, INDEX, LABELS, IMAGES):
            if not (self.root / name).is_file():
                raise CxrError(
                    f"{self.root}: not a prepared cache (no {name}); run `cxrtool prepare` into it"
                    + (" (an interrupted prepare leaves no manifest: run it again)" if name == MANIFEST else "")
                )

        self.manifest: dict[str, Any] = read_json(self.root / MANIFEST)
        index_bytes, labels_bytes = (self.root / INDEX).read_bytes(), (self.root / LABELS).read_bytes()
        check_complete(self.root, self.manifest, index_bytes, labels_bytes)
        self.labels: list[str] = list(read_json(self.root / LABELS)["labels"])
        self.index: pd.DataFrame = restore_cells(  # undo the quote csv_text puts before formula-like text
            pd.read_csv(
                io.BytesIO(index_bytes),
                dtype={"id": str, "patient": str, "view": str, "split": str, "source": str, "source_path": str},
                keep_default_na=True,
            )
        )
        for col in ("view", "source"):
            self.index[col] = self.index[col].fillna("")
        self._images: np.ndarray | None = None

    # ---- images
    @property
    def images(self) -> np.ndarray:
        """(N, S, S) uint8 memmap; opened on first use so that worker processes open their own."""
        if self._images is None:
            try:
                self._images = np.load(self.root / IMAGES, mmap_mode="r")
            except (OSError, ValueError) as exc:  # a truncated file (a cache older than `files`)
                raise CxrError(
                    f"cache {self.root} is incomplete: {IMAGES} cannot be opened ({exc}); run prepare again with --overwrite"
                ) from None
            if len(self._images) != len(self.index):
                raise CxrError(
                    f"{self.root}: {IMAGES} has {len(self._images)} images but {INDEX} has {len(self.index)} rows; "
                    "prepare again with --overwrite"
                )
        return self._images

    def __getstate__(self):  # do not pickle the memmap into DataLoader workers
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    @property
    def size(self) -> int:
        return int(self.manifest.get("size") or self.images.shape[1])

    def __len__(self) -> int:
        return len(self.index)

    # ---- rows and targets
    def rows(self, split: str | None = None) -> np.ndarray:
        """Row numbers of a split ('train', 'val', 'test'), or of every image when split is None/'all'."""
        if split in (None, "all"):
            return np.arange(len(self.index))
        if split not in SPLITS:
            raise CxrError(f"--split: unknown split {split!r}; choose one of {', '.join(SPLITS)} or all")
        rows = np.flatnonzero(self.index["split"].to_numpy() == split)
        return rows

    def require_rows(self, split: str | None) -> np.ndarray:
        rows = self.rows(split)
        if len(rows) == 0:
            raise CxrError(f"{self.root}: the {split} split is empty; prepare with other --val-frac/--test-frac")
        return rows

    def targets(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, L) float32 labels in `self.labels` order; NaN where the source does not annotate."""
        frame = self.index[self.labels] if rows is None else self.index.iloc[rows][self.labels]
        return frame.to_numpy(dtype=np.float32, na_value=np.nan)

    def boxes(self) -> pd.DataFrame | None:
        """Lesion boxes in cache pixels (id, label, x, y, w, h), or None when the source had none."""
        path = self.root / BOXES
        if not path.is_file():
            return None
        return restore_cells(pd.read_csv(path, dtype={"id": str, "label": str}))

    @property
    def data_hash(self) -> str:
        return str(self.manifest.get("data_hash", ""))

    def require_labels(self, wanted: list[str], what: str) -> list[int]:
        """Column numbers of `wanted` labels here; error naming the missing ones (model vs data)."""
        missing = [l for l in wanted if l not in self.labels]
        if missing:
            raise CxrError(
                f"{self.root}: lacks the label(s) {', '.join(missing)} that {what} needs; this data has: {', '.join(self.labels)}"
            )
        return [self.labels.index(l) for l in wanted]
