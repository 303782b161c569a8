"""Whether an evaluation can stand in a table: it scored the run's current weights and unseen images.

`compare` takes evaluations as they are on disk. One made of earlier weights (the run was trained
further after it) describes a model that is gone, and one made with `evaluate --allow-seen` scored
images the network trained or validated on. `check_evaluations` refuses both, in one line naming
the arm, unless `--allow-stale` / `--allow-seen` is given; then the arm's status says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import read_json
from ..errors import CxrError
from ..models.provenance import STALE, UNKNOWN, evaluation_status
from ..progress import warn


def evaluation_folder(path: Path) -> Path | None:
    """The folder holding an evaluation's metrics.json: `path` itself or RUN/eval."""
    path = Path(path)
    return next((p for p in (path, path / "eval") if (p / "metrics.json").is_file()), None)


def check_evaluation(path: Path, option: str, allow_stale: bool = False, allow_seen: bool = False) -> str:
    """'ok', 'stale' or 'in-sample' (the latter two only when allowed); raises otherwise."""
    folder = evaluation_folder(path)
    if folder is None:
        return "ok"  # the caller says that there is no evaluation
    metrics: dict[str, Any] = read_json(folder / "metrics.json")
    if not isinstance(metrics, dict):
        return "ok"
    labels = []
    state, why = evaluation_status(folder, metrics)
    if state == STALE:
        if not allow_stale:
            raise CxrError(f"{option}: {why}, or pass --allow-stale to tabulate it labelled stale")
        warn(f"{option}: {why} (--allow-stale: labelled stale)")
        labels.append("stale")
    elif state == UNKNOWN:
        warn(f"{option}: {why}")
    lineage = metrics.get("lineage") or {}
    if metrics.get("in_sample"):
        seen = f"{lineage.get('seen')} of {lineage.get('images')}" if lineage else "some"
        line = f"{option}: {folder} scored {seen} images its run trained or validated on (evaluate --allow-seen)"
        if not allow_seen:
            raise CxrError(f"{line}; evaluate unseen images, or pass --allow-seen to tabulate it labelled in-sample")
        warn(f"{line}; labelled in-sample")
        labels.append("in-sample")
    return ", ".join(labels) or "ok"


def check_evaluations(items: list[tuple[str, str, str]], allow_stale: bool, allow_seen: bool) -> dict[str, str]:
    """{arm name: status} for (name, path, option) items: see `check_evaluation`."""
    out: dict[str, str] = {}
    for name, path, option in items:
        status = check_evaluation(Path(path), option, allow_stale, allow_seen)
        if status != "ok":
            out[name] = status
    return out
