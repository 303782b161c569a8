"""NIH's lesion box file, `BBox_List_2017.csv`, read in one place for `prepare nih` and `cam --boxes`.

The file's header is `Image Index,Finding Label,Bbox [x,y,w,h],,,`: six fields for six values, but
named badly, so the columns are read by position. Coordinates are in NIH's 1024-pixel space
(`NIH_BOX_SPACE`), and the file spells Infiltration as 'Infiltrate'; `box_label` reconciles that
spelling (and any case) with the label file's. What to do with a row whose numbers are missing is
the caller's choice: prepare drops it, cam refuses the file naming the row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import CxrError
from .labels import canonical

NIH_BOX_FILE = "BBox_List_2017.csv"
NIH_BOX_SPACE = 1024.0  # NIH images are 1024 x 1024 and so are the coordinates in its box file
NIH_BOX_HEADER = ("image index", "finding label")  # the first two header fields, lower case
BOX_ALIASES = {"infiltrate": "Infiltration"}  # NIH's box file and its label file disagree


def box_label(name: object) -> str:
    """The canonical spelling of a box's finding (the box file's 'Infiltrate' is Infiltration)."""
    text = str(name).strip()
    return BOX_ALIASES.get(text.lower(), canonical(text))


def is_nih_box_header(line: str) -> bool:
    """Whether a file's first line is the header of NIH's box file."""
    return [c.strip().lower() for c in line.split(",")][:2] == list(NIH_BOX_HEADER)


def read_nih_boxes(path: Path) -> pd.DataFrame:
    """NIH's box file -> id, label, x, y, w, h, one row per line, in NIH's 1024-pixel space.

    Ids are stripped strings, labels in canonical spelling; a coordinate that is not a number is
    NaN. An unreadable file is a one-line CxrError naming it.
    """
    try:
        raw = pd.read_csv(
            path,
            header=None,
            skiprows=1,
            usecols=range(6),
            dtype=str,
            names=["id", "label", "x", "y", "w", "h"],
            encoding="utf-8-sig",
        )
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise CxrError(f"{path}: cannot read the box file ({str(exc).splitlines()[0]})") from None
    raw["id"] = raw["id"].fillna("").str.strip()
    raw["label"] = [box_label(l) for l in raw["label"]]
    for col in ("x", "y", "w", "h"):
        raw[col] = pd.to_numeric(raw[col], errors="coerce")
    return raw
