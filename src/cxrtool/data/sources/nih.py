"""NIH ChestX-ray14 as NIH ships it: a label file, images in any sub-folder, optional lists and boxes.

The label file is `Data_Entry_2017.csv` or `Data_Entry_2017_v2020.csv` (gzipped or not) anywhere
under the root, or the one `--labels` names. Its header has a comma inside
`OriginalImage[Width,Height]` (and in the pixel-spacing field), so a CSV reader sees those as two
columns each: columns are found by name, and only the ones used are required. Images are found
by file name anywhere under the root (NIH splits them over images_001/images ... images_012/images);
rows whose file is absent are listed as skipped (a user with 2 of the 12 archives is normal).
`train_val_list.txt` / `test_list.txt` are used when present. `BBox_List_2017.csv` boxes are in
1024-pixel coordinates of the image file and are carried through the crop into cache pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import parse_list, require
from ...errors import CxrError, did_you_mean
from ..boxes import NIH_BOX_FILE, NIH_BOX_SPACE, read_nih_boxes
from ..imageio import IMAGE_SUFFIXES
from ..labels import COVID_LABEL, NIH_LABELS, NO_FINDING, canonical, conflicting_rows, count_summary, examples
from ..walk import walk_files
from .base import PrepareOptions, SourceTable
from .registry import Source, SourceOption, register_source

LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")

COLUMNS = {  # our name: the label file's header name
    "image": "Image Index",
    "findings": "Finding Labels",
    "patient": "Patient ID",
    "age": "Patient Age",
    "sex": "Patient Gender",
    "view": "View Position",
}
REQUIRED = ("image", "findings", "patient")


@dataclass(kw_only=True)
class PrepareNihConfig(PrepareOptions):
    root: Path
    out: Path = Path("data/nih")
    labels_file: Path | None = None
    views: list[str] | None = None  # None: every view
    findings: list[str] | None = None  # None: the 14 NIH labels, in NIH order

    def __post_init__(self) -> None:
        super().__post_init__()
        self.root = Path(self.root)
        require(self.root.is_dir(), f"{self.root}: no such folder (ROOT of the NIH data)")
        if self.labels_file is not None:
            self.labels_file = Path(self.labels_file)
            require(self.labels_file.is_file(), f"{self.labels_file}: label file not found (--labels)")
        if self.views is not None:
            self.views = [v.upper() for v in parse_list(self.views, "--views")]
        if self.findings is not None:
            self.findings = [canonical(f) for f in parse_list(self.findings, "--findings")]
            require(len(set(self.findings)) == len(self.findings), "--findings: a finding is given twice")


def find_file(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` (or name.gz) at the root, else anywhere below it."""
    candidates = [n for name in names for n in (name, name + ".gz")]
    for name in candidates:
        if (root / name).is_file():
            return root / name
    for dirpath, files in walk_files(root):
        for name in candidates:
            if name in files:
                return dirpath / name
    return None


def image_files(root: Path) -> dict[str, Path]:
    """File name -> path for every image file under root (the first one wins on a repeated name)."""
    found: dict[str, Path] = {}
    for dirpath, files in walk_files(root):  # links followed, each folder once (loops end)
        for name in files:
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.setdefault(name, dirpath / name)
    return found


def read_label_file(path: Path) -> pd.DataFrame:
    """The label file with our column names (image, findings, patient, and age/sex/view when present)."""
    try:
        raw = pd.read_csv(path, dtype=str, index_col=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CxrError(f"{path}: cannot read the label file ({str(exc).splitlines()[0]})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    frame = pd.DataFrame(index=raw.index)
    for ours, theirs in COLUMNS.items():
        if theirs in raw.columns:
            frame[ours] = raw[theirs].fillna("").str.strip()
        elif ours in REQUIRED:
            raise CxrError(
                f"{path}: no column {theirs!r}; is this an NIH Data_Entry file? (columns: {', '.join(raw.columns[:8])})"
            )
    width = next((c for c in raw.columns if c.startswith("OriginalImage[Width")), None)
    if width is not None:
        frame["orig_width"] = pd.to_numeric(raw[width], errors="coerce")
    return frame


def _age(text: str) -> float:
    digits = "".join(ch for ch in str(text) if ch.isdigit())  # "058Y" in some copies
    return float(digits) if digits else np.nan


def _patient(text: str) -> str:
    text = str(text).strip()
    return str(int(text)) if text.isdigit() else text


def read_boxes(path: Path, labels: list[str]) -> pd.DataFrame:
    """BBox_List_2017.csv -> id, label, x, y, w, h (NIH's 1024-pixel space); other labels dropped.

    A row without all four numbers is dropped: boxes only score CAMs, so one bad line in NIH's
    file is no reason to refuse the whole prepare.
    """
    raw = read_nih_boxes(path).dropna()
    return raw[raw["label"].isin(labels)].reset_index(drop=True)


def read_list(path: Path | None) -> set[str]:
    if path is None:
        return set()
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def finding_set(cell: str) -> set[str]:
    """'Effusion|Mass' -> {'Effusion', 'Mass'} in canonical spelling; a blank cell -> set()."""
    return {canonical(t) for t in str(cell).split("|") if t.strip()}


def known_findings(findings: list[str]) -> set[str]:
    """Names a label file may use: the NIH findings, COVID-19, No Finding and the --findings asked for."""
    return set(NIH_LABELS) | set(findings) | {NO_FINDING, COVID_LABEL}


def check_rows(frame: pd.DataFrame, path: Path, findings: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """One row per image; images listed with conflicting findings set aside; unknown names reported.

    Returns (rows to use, skipped rows of conflicting images, warning lines).
    """
    warnings = []
    known = known_findings(findings)
    unknown: dict[str, int] = {}
    unsure_images = []
    for image, cell in zip(frame["image"], frame["findings"]):
        names = [t.strip() for t in str(cell).split("|") if t.strip()]
        odd = [t for t in names if canonical(t) not in known] or ([] if names else ["(blank)"])
        for t in odd:
            unknown[t] = unknown.get(t, 0) + 1
        if odd:
            unsure_images.append(image)
    if unknown:
        warnings.append(
            f"{path}: {len(unsure_images)} row(s) name findings that are not labels ({count_summary(unknown)}; "
            f"images {examples(unsure_images)}); their other findings are kept as unknown, not negative"
        )
    signature = frame["findings"].map(lambda cell: "|".join(sorted(finding_set(cell))))
    conflicting = conflicting_rows(frame["image"], signature)
    conflicts = pd.DataFrame(columns=["source_path", "id", "patient", "reason"])
    if conflicting.any():
        bad = frame[conflicting]
        listed = bad.groupby("image")["findings"].agg(lambda cells: " / ".join(repr(c) for c in cells))
        first = bad.drop_duplicates("image")
        conflicts = pd.DataFrame(
            {
                "source_path": first["image"],
                "id": first["image"],
                "patient": first["patient"].map(_patient),
                "reason": first["image"].map(
                    lambda i: f"listed more than once in {path.name} with different findings ({listed[i]})"
                ),
            }
        )
        warnings.append(
            f"{path}: {len(first)} image(s) are listed more than once with different findings "
            f"({examples(first['image'].tolist())}); they are skipped (see skipped.csv)"
        )
    frame = frame[~conflicting].drop_duplicates("image").reset_index(drop=True)
    return frame, conflicts.reset_index(drop=True), warnings


def read_nih(cfg: PrepareNihConfig) -> SourceTable:
    root = cfg.root
    label_path = cfg.labels_file or find_file(root, LABEL_FILES)
    if label_path is None:
        raise CxrError(f"{root}: no NIH label file ({' or '.join(LABEL_FILES)}, optionally .gz); pass --labels FILE")
    frame = read_label_file(label_path)
    if frame.empty:
        raise CxrError(f"{label_path}: the label file has a header but no rows; is it the complete file?")
    vocabulary = {t.strip() for cell in frame["findings"] for t in cell.split("|") if t.strip()} - {NO_FINDING}
    findings = cfg.findings or list(NIH_LABELS)
    for f in findings:
        if f not in NIH_LABELS and f not in vocabulary:
            choices = sorted(set(NIH_LABELS) | vocabulary)
            raise CxrError(
                f"--findings: {f!r} is neither an NIH finding nor found in {label_path}.{did_you_mean(f, choices)}"
            )
    notes = [f"label file: {label_path}"]
    if cfg.views:
        if "view" not in frame.columns:
            raise CxrError(f"{label_path}: no column 'View Position' to filter --views on")
        wanted = frame["view"].str.upper().isin(cfg.views)
        notes.append(f"--views {','.join(cfg.views)}: {int((~wanted).sum())} rows of other views left out")
        frame = frame[wanted]
    frame, conflicts, warnings = check_rows(frame, label_path, findings)

    files = image_files(root)
    present = frame["image"].isin(files.keys())
    missing = frame[~present]
    skipped = pd.DataFrame(
        {
            "source_path": missing["image"],
            "id": missing["image"],
            "patient": missing["patient"].map(_patient),
            "reason": f"image file not found under {root}",
        }
    )
    skipped = pd.concat([conflicts, skipped], ignore_index=True)
    frame = frame[present].reset_index(drop=True)
    tokens = frame["findings"].map(finding_set)
    known = known_findings(findings)
    unsure = tokens.map(lambda t: not t or bool(t - known))  # a typo or a blank: not a negative
    rows = pd.DataFrame(
        {
            "id": frame["image"],
            "patient": frame["patient"].map(_patient),
            "view": frame.get("view", pd.Series("", index=frame.index)),
            "path": frame["image"].map(lambda n: str(files[n])),
            "source_path": frame["image"].map(lambda n: files[n].relative_to(root).as_posix()),
        }
    )
    if "sex" in frame.columns:
        rows["sex"] = frame["sex"]
    if "age" in frame.columns:
        rows["age"] = frame["age"].map(_age)
    for f in findings:
        rows[f] = [1.0 if f in t else (np.nan if u else 0.0) for t, u in zip(tokens, unsure)]

    train_val = find_file(root, ("train_val_list.txt",))
    test = find_file(root, ("test_list.txt",))
    if test is not None:
        rows["in_test"] = rows["id"].isin(read_list(test))
        notes.append(
            f"official split: {test.name}"
            + (f" and {train_val.name}" if train_val else "")
            + "; validation carved from train_val by patient"
        )
        if train_val is not None:
            listed = read_list(train_val) | read_list(test)
            unlisted = ~rows["id"].isin(listed)
            if unlisted.any():
                notes.append(f"{int(unlisted.sum())} images are on neither official list; they join train/val")
    boxes = None
    box_path = find_file(root, (NIH_BOX_FILE,))
    if box_path is not None:
        boxes = read_boxes(box_path, findings)
        boxes = boxes[boxes["id"].isin(set(rows["id"]))].reset_index(drop=True)
    return SourceTable(
        name="nih",
        rows=rows,
        labels=findings,
        skipped=skipped,
        boxes=boxes,
        box_space=NIH_BOX_SPACE,
        notes=notes,
        warnings=warnings,
    )


register_source(
    Source(
        name="nih",
        help="NIH ChestX-ray14 -> cache (official lists when present, else a seeded patient split).",
        config=PrepareNihConfig,
        read=read_nih,
        options=(
            SourceOption(
                "root", Path, "Folder holding the NIH label file and images (any sub-folders).", argument=True
            ),
            SourceOption("views", str | None, "Keep only these views, e.g. PA,AP (default: all).", ("--views",)),
            SourceOption(
                "findings",
                str | None,
                "Label columns, comma-separated (default: the 14 NIH findings).",
                ("--findings",),
            ),
            SourceOption(
                "labels",
                Path | None,
                "The label file, if not Data_Entry_2017*.csv[.gz] under ROOT.",
                ("--labels",),
                field="labels_file",
            ),
        ),
        examples=("cxrtool prepare nih ~/data/ChestX-ray14 --out data/nih",),
        pre_pandemic=True,  # collected 1992-2015: every image is a COVID-19 negative
        rank=10,
    )
)
