"""Any labelled X-ray set described by one CSV: an image path column, label columns, a patient column.

Paths are relative to `--root` (the CSV's folder by default) or absolute, and must lie under the
root (`../../etc/passwd` or an absolute path elsewhere is refused unless `--allow-outside-root`;
the check is on the path as written, so links inside the root may point anywhere). A header that
names a column twice is refused (pandas would silently rename one). Label cells are 1/0
(also true/false, yes/no, positive/negative); a blank cell, or -1 (CheXpert's "uncertain"), means
not annotated (NaN). Without a patient column every image is its own patient, which is only safe
when each patient has one image: the run says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import parse_list, require
from ...errors import CxrError, did_you_mean
from ..imageio import file_problem
from ..labels import canonical, conflicting_rows, examples
from .base import PrepareOptions, SourceTable, unique_ids
from .registry import Source, SourceOption, register_source

POSITIVE = {"1", "1.0", "true", "yes", "y", "positive", "pos"}
NEGATIVE = {"0", "0.0", "false", "no", "n", "negative", "neg"}
UNKNOWN = {"", "nan", "-1", "-1.0", "uncertain", "na", "n/a"}


@dataclass(kw_only=True)
class PrepareFolderConfig(PrepareOptions):
    csv: Path
    image_col: str = "image"
    label_cols: list[str] | None = None
    patient_col: str | None = None
    view_col: str | None = None
    image_root: Path | None = None  # --root; default: the CSV's folder
    name: str = "folder"
    out: Path = Path("data/folder")
    allow_outside_root: bool = False  # --allow-outside-root: accept paths that leave --root

    def __post_init__(self) -> None:
        super().__post_init__()
        self.csv = Path(self.csv)
        require(self.csv.is_file(), f"{self.csv}: no such CSV file")
        require(
            self.label_cols is not None, "--label-cols: name the label columns, e.g. --label-cols COVID-19,Pneumonia"
        )
        self.label_cols = parse_list(self.label_cols, "--label-cols")
        self.image_root = Path(self.image_root) if self.image_root is not None else self.csv.parent
        require(self.image_root.is_dir(), f"{self.image_root}: no such folder (--root)")
        require(bool(self.name.strip()) and "/" not in self.name, f"--name: {self.name!r} is not a usable dataset name")


def parse_label(value: object, row: int, column: str, csv: Path) -> float:
    text = str(value).strip().lower()
    if text in POSITIVE:
        return 1.0
    if text in NEGATIVE:
        return 0.0
    if text in UNKNOWN:
        return np.nan
    raise CxrError(
        f"{csv}: row {row}, column {column!r}: {value!r} is not a label (use 1/0, or leave it blank for not annotated)"
    )


def image_path(text: str, root: Path) -> Path:
    """A CSV cell as a file: relative to root unless absolute; Windows separators read as '/'."""
    path = Path(text) if Path(text).is_absolute() else root / text
    if "\\" in text and not path.is_file():
        # A CSV written on Windows ("images\\a.png") names a sub-folder, not a file with a backslash.
        posix = text.replace("\\", "/")
        path = Path(posix) if Path(posix).is_absolute() else root / posix
    return path


def outside_root(path: Path, root: Path) -> bool:
    """Whether `path`, as written (".." folded, links not followed), leaves `root`."""
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    return os.path.commonpath([base, full]) != base


def check_header(csv: Path) -> None:
    """Refuse a header that names a column twice (pandas would read the second as 'Mass.1')."""
    try:
        header = pd.read_csv(csv, dtype=str, header=None, nrows=1, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CxrError(f"{csv}: cannot read ({str(exc).splitlines()[0]})") from None
    seen: set[str] = set()
    for name in header.iloc[0].astype(str) if len(header) else []:
        if name in seen:
            raise CxrError(f"{csv}: the column {name!r} appears twice in the header; rename or remove one of them")
        seen.add(name)


def check_inside_root(images: pd.Series, paths: pd.Series, cfg: PrepareFolderConfig) -> None:
    """Refuse rows whose path leaves --root, unless --allow-outside-root."""
    if cfg.allow_outside_root:
        return
    outside = paths.map(lambda p: outside_root(p, cfg.image_root)).to_numpy(dtype=bool)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise CxrError(
            f"{cfg.csv}: row {first + 2}: {images.iloc[first]!r} is outside --root {cfg.image_root} "
            f"({int(outside.sum())} row(s) are); move the files under the root, give another --root, "
            "or pass --allow-outside-root"
        )


def read_folder(cfg: PrepareFolderConfig) -> SourceTable:
    check_header(cfg.csv)
    try:
        frame = pd.read_csv(cfg.csv, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CxrError(f"{cfg.csv}: cannot read ({str(exc).splitlines()[0]})") from None
    if frame.empty:
        raise CxrError(f"{cfg.csv}: the CSV has a header but no rows; is it the complete file?")
    wanted = {"--image-col": [cfg.image_col], "--label-cols": list(cfg.label_cols or [])}
    if cfg.patient_col:
        wanted["--patient-col"] = [cfg.patient_col]
    if cfg.view_col:
        wanted["--view-col"] = [cfg.view_col]
    for option, cols in wanted.items():
        for col in cols:
            if col not in frame.columns:
                raise CxrError(
                    f"{cfg.csv}: no column {col!r} ({option}); the columns are: "
                    f"{', '.join(frame.columns)}.{did_you_mean(col, list(frame.columns))}"
                )
    labels = [canonical(c) for c in cfg.label_cols or []]
    if len(set(labels)) != len(labels):
        raise CxrError(f"--label-cols: two columns name the same label ({', '.join(labels)})")
    notes = []
    images = frame[cfg.image_col].str.strip()
    if cfg.patient_col:
        patients = frame[cfg.patient_col].str.strip()
        blank = patients == ""
        patients = patients.where(~blank, images)
        if blank.any():
            notes.append(f"{int(blank.sum())} rows have no patient id; each of them is its own patient")
    else:
        patients = images
        notes.append(
            "no --patient-col: each image is its own patient, so one patient's images may land in different splits"
        )
    paths = images.map(lambda p: image_path(p, cfg.image_root))
    check_inside_root(images, paths, cfg)
    problems = paths.map(file_problem)  # a FIFO or device is named for what it is, never opened
    present = problems.isna()
    ids = unique_ids(images, patients)
    rows = pd.DataFrame(
        {
            "id": ids,
            "patient": patients,
            "view": frame[cfg.view_col].str.strip() if cfg.view_col else "",
            "path": paths.map(str),
            "source_path": images,
        }
    )
    for col in ("sex", "age"):
        if col in frame.columns:
            rows[col] = frame[col] if col == "sex" else pd.to_numeric(frame[col], errors="coerce")
    for col, label in zip(cfg.label_cols or [], labels):
        rows[label] = [parse_label(v, i + 2, col, cfg.csv) for i, v in enumerate(frame[col])]
    skipped = pd.DataFrame(
        {
            "source_path": images[~present],
            "id": ids[~present],
            "patient": patients[~present],
            "reason": [
                f"{why} (under {cfg.image_root})" if why == "file not found" else why for why in problems[~present]
            ],
        }
    )
    # One file listed twice with different labels: which is right is unknown, so neither is used.
    conflicting = conflicting_rows(paths.map(lambda p: str(p.resolve())), rows[labels]).to_numpy()
    warnings = []
    if conflicting.any():
        files = images[conflicting].drop_duplicates().tolist()
        warnings.append(
            f"{cfg.csv}: {len(files)} image(s) are listed more than once with different labels "
            f"({examples(files)}); they are skipped (see skipped.csv)"
        )
        skipped = pd.concat(
            [
                skipped,
                pd.DataFrame(
                    {
                        "source_path": images[conflicting & present.to_numpy()],
                        "id": ids[conflicting & present.to_numpy()],
                        "patient": patients[conflicting & present.to_numpy()],
                        "reason": [
                            f"listed more than once in {cfg.csv.name} with different labels (row {i + 2})"
                            for i in np.flatnonzero(conflicting & present.to_numpy())
                        ],
                    }
                ),
            ],
            ignore_index=True,
        )
    rows = rows[present.to_numpy() & ~conflicting].reset_index(drop=True)
    return SourceTable(
        name=cfg.name, rows=rows, labels=labels, skipped=skipped.reset_index(drop=True), notes=notes, warnings=warnings
    )


register_source(
    Source(
        name="folder",
        help="Any labelled set described by a CSV -> cache.",
        config=PrepareFolderConfig,
        read=read_folder,
        options=(
            SourceOption("csv", Path, "CSV with one row per image.", argument=True),
            SourceOption("image_col", str | None, "Column with the image path (default: image).", ("--image-col",)),
            SourceOption(
                "label_cols",
                str | None,
                "Label columns, comma-separated (cells 1/0, blank = not annotated).",
                ("--label-cols",),
            ),
            SourceOption(
                "patient_col", str | None, "Column with the patient id (strongly advised).", ("--patient-col",)
            ),
            SourceOption("view_col", str | None, "Column with the view (PA, AP, ...).", ("--view-col",)),
            SourceOption(
                "root",
                Path | None,
                "Folder the image paths are relative to (default: the CSV's folder).",
                ("--root",),
                field="image_root",
            ),
            SourceOption("name", str | None, "Dataset name for the `source` column (default: folder).", ("--name",)),
            SourceOption(
                "allow_outside_root",
                bool,
                "Accept image paths that lead outside --root (../x, /elsewhere/x).",
                ("--allow-outside-root",),
                switch=True,
            ),
        ),
        examples=(
            "cxrtool prepare folder ~/data/mine/labels.csv --label-cols Mass,Nodule --patient-col patient --out data/mine",
        ),
        # CheXpert-style CSVs (and other collections) name NIH's Effusion so.
        label_aliases={"pleural effusion": "Effusion", "effusions": "Effusion"},
        cache_source=lambda cfg: cfg.name,  # --name: the cache is that dataset's
        rank=30,
    )
)
