"""What every raw-data source shares with `prepare`: its options, the table it yields, unique ids.

A source module (nih.py, covid.py, folder.py) reads a publisher's layout into a `SourceTable`
for data/prepare.py's `build_cache`; its config extends `PrepareOptions`. Both sides import
these from here, below them both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ...config import config_to_dict, require
from ..cache import SKIPPED_COLUMNS
from ..neardup.hashing import DEFAULT_MAX_DISTANCE
from ..pool import cap_workers, default_workers


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
        self.workers = cap_workers(self.workers)
        require(0 <= self.val_frac < 1, f"--val-frac: {self.val_frac}; give a fraction in [0, 1)")
        require(0 <= self.test_frac < 1, f"--test-frac: {self.test_frac}; give a fraction in [0, 1)")
        require(self.val_frac + self.test_frac < 1, "--val-frac + --test-frac must leave images for training (sum < 1)")
        require(
            0 <= self.max_distance <= 256,
            f"--max-distance: {self.max_distance}; give 0..256 (bits of the 256-bit fingerprint)",
        )

    def settings(self) -> dict[str, Any]:
        """What decides the cache's content (not where it goes or how fast it is made)."""
        values = config_to_dict(self)
        # allow_outside_root only permits a CSV; what is cached from it is the same either way.
        for key in ("out", "workers", "overwrite", "allow_outside_root"):
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


def unique_ids(ids: pd.Series, qualifier: pd.Series) -> pd.Series:
    """Make ids unique: a repeated id gets '@' + its qualifier (e.g. the patient), then a counter."""
    ids = ids.astype(str)
    repeated = ids.duplicated(keep=False)
    out = ids.where(~repeated, ids + "@" + qualifier.astype(str))
    counter = out.groupby(out).cumcount()
    return out.where(counter == 0, out + "#" + counter.astype(str))
