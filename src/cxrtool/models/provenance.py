"""Which weights an artifact was made of, and whether they are still the run's: stale evaluations.

An evaluation records the SHA-256 of the weights file it scored (`metrics.json`'s `weights`) and
the cache's data hash. A run trained further (`--resume`, `--overwrite`) gets new best weights,
and an evaluation of the old ones then describes a model that is no longer there: `report`,
`compare`, `predict` and `cam` call `evaluation_status` and say so (compare refuses it unless
told). An evaluation made before this record existed is judged by its thresholds.json, which has
held the weights' hash all along; with neither, its status is "unknown".

Class activation maps are recorded the same way, map by map: each row of `cams.csv` and of
`box_scores_per_image.csv` names the checkpoint (best/last) and the weights' hash it was made of,
since one cam folder gathers the maps of several calls. `cam_status` counts the maps whose
weights are no longer the run's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import read_json
from ..errors import CxrError
from .checkpoint import WEIGHTS

CURRENT, STALE, UNKNOWN = "current", "stale", "unknown"


def weights_sha256(checkpoint: Path) -> str:
    """SHA-256 of a checkpoint folder's weights file."""
    digest = hashlib.sha256()
    with open(Path(checkpoint) / WEIGHTS, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_record(checkpoint: Path, which: str) -> dict[str, str]:
    """metrics.json's `weights`: the checkpoint scored (best/last), its folder and its weights' hash."""
    return {"checkpoint": which, "path": str(Path(checkpoint).resolve()), "sha256": weights_sha256(checkpoint)}


def _recorded_sha(folder: Path, metrics: dict[str, Any]) -> str | None:
    sha = (metrics.get("weights") or {}).get("sha256")
    if sha:
        return str(sha)
    thresholds = folder / "thresholds.json"  # older evaluations: the thresholds name their weights
    if thresholds.is_file():
        try:
            return read_json(thresholds).get("model_sha256")
        except (CxrError, AttributeError):
            return None
    return None


def evaluation_status(folder: Path, metrics: dict[str, Any]) -> tuple[str, str]:
    """(current | stale | unknown, a one-line reason) for the evaluation in `folder`.

    The weights it scored are compared with the run's checkpoint of the same kind (best/last) as
    it is now: the run is the evaluation folder's parent when that holds checkpoints (so a moved
    run still checks), else the run metrics.json names. A cross-validation run's evaluation is
    compared by its out-of-fold predictions file instead.
    """
    folder = Path(folder)
    runs = [folder.parent, Path(str(metrics.get("run") or folder.parent))]
    if metrics.get("split") == "out-of-fold":
        recorded = metrics.get("oof_sha256")
        oof = next((r / "oof_predictions.csv" for r in runs if (r / "oof_predictions.csv").is_file()), None)
        if not recorded or oof is None:
            return UNKNOWN, f"{folder}: records no hash of the out-of-fold predictions it scored"
        if file_sha256(oof) != recorded:
            return STALE, f"{folder}: scored other out-of-fold predictions than {oof} holds now (the run was redone)"
        return CURRENT, ""
    which = str(metrics.get("checkpoint") or (metrics.get("weights") or {}).get("checkpoint") or "best")
    recorded = _recorded_sha(folder, metrics)
    if not recorded:
        return UNKNOWN, f"{folder}: records no hash of the weights it scored (an older evaluation); evaluate again"
    checkpoint = next(
        (r / "checkpoints" / which for r in runs if (r / "checkpoints" / which / WEIGHTS).is_file()), None
    )
    if checkpoint is None:
        return UNKNOWN, f"{folder}: the run's {which} weights are not there to compare with"
    if weights_sha256(checkpoint) != recorded:
        return STALE, (
            f"{folder}: stale: it scored earlier weights than {checkpoint} holds now (the run was trained further); "
            f"evaluate again with --overwrite"
        )
    return CURRENT, ""


def cam_status(table: Path, run: Path) -> tuple[str, str]:
    """(current | stale | unknown, a one-line reason) for the maps listed in `table` (cams.csv or
    box_scores_per_image.csv of RUN/cam): stale when any was made of weights other than the ones
    `run`'s checkpoint of the same kind holds now; unknown when the file records no weights."""
    try:
        frame = pd.read_csv(table, usecols=lambda c: c in ("checkpoint", "weights_sha256"), dtype=str)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return UNKNOWN, f"{table}: cannot be read"
    if "weights_sha256" not in frame.columns or frame["weights_sha256"].isna().all():
        return UNKNOWN, f"{table}: records no hash of the weights its maps were made of (an older cam)"
    current: dict[str, str | None] = {}
    stale = 0
    for which, sha in zip(
        frame.get("checkpoint", pd.Series(["best"] * len(frame))).fillna("best"), frame["weights_sha256"]
    ):
        if which not in current:
            folder = Path(run) / "checkpoints" / str(which)
            current[which] = weights_sha256(folder) if (folder / WEIGHTS).is_file() else None
        stale += int(isinstance(sha, str) and current[which] is not None and sha != current[which])
    if stale:
        return STALE, (
            f"{table}: stale: {stale} of {len(frame)} map(s) were made of earlier weights than the run holds now "
            "(it was trained further); run cam again with --overwrite"
        )
    return CURRENT, ""
