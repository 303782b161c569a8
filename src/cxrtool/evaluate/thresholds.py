"""Operating points chosen on the validation split, reported elsewhere, and found again by predict.

A threshold chosen on the split it is reported on gives the best sensitivity/specificity that
split allows: an in-sample maximum, optimistic on a few dozen positives. So `cxrtool evaluate`
chooses each label's thresholds on the validation split (Youden's J, and the most specific
threshold that keeps sensitivity >= a target, 0.9 by default) and reports sensitivity and
specificity at them on the evaluated split, with patient-bootstrap intervals. The thresholds go to
the evaluation's own `thresholds.json` (never into the training checkpoint), with the split and
data they were chosen on and a hash of the model's weights, so that `cxrtool predict` can say
which thresholds it uses, where they came from, and refuse ones chosen for other weights.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import CxrError
from ..models.provenance import weights_sha256
from ..runs import run_of
from ..safeio import read_json_file
from .metrics import bootstrap_operating_point, not_computable_reason, sensitivity_point, youden_point

FORMAT = "cxrtool-thresholds/1"
FILE = "thresholds.json"
YOUDEN = "youden"


def sensitivity_key(target: float) -> str:
    """'sens90' for 0.9: the name of the fixed-sensitivity operating point."""
    return f"sens{round(100 * float(target))}"


def choose_thresholds(
    targets: np.ndarray, probs: np.ndarray, labels: list[str], sensitivity: float
) -> tuple[dict, dict]:
    """Per label {youden: t, sensNN: t} chosen on (validation) targets/probs; and why others have none."""
    chosen, reasons = {}, {}
    for j, label in enumerate(labels):
        reason = not_computable_reason(targets[:, j])
        if reason is not None:
            reasons[label] = reason
            continue
        chosen[label] = {
            YOUDEN: youden_point(targets[:, j], probs[:, j])["threshold"],
            sensitivity_key(sensitivity): sensitivity_point(targets[:, j], probs[:, j], sensitivity)["threshold"],
        }
    return chosen, reasons


def report_at_thresholds(
    chosen: dict,
    targets: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    patients: np.ndarray,
    n_boot: int,
    seed: int,
) -> dict:
    """Per label and operating point: sensitivity/specificity (with intervals) at the given thresholds."""
    out = {}
    for j, label in enumerate(labels):
        points = {}
        for name, threshold in (chosen.get(label) or {}).items():
            points[name] = bootstrap_operating_point(targets[:, j], probs[:, j], threshold, patients, n_boot, seed)
        out[label] = points
    return out


def thresholds_document(
    chosen: dict,
    reasons: dict,
    sensitivity: float,
    run: Path,
    checkpoint: str,
    checkpoint_dir: Path,
    data,
    split: str,
    images: int,
    patients: int,
) -> dict:
    """The content of thresholds.json."""
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": str(run),
        "checkpoint": checkpoint,
        "model_sha256": weights_sha256(checkpoint_dir),
        "chosen_on": split,
        "data": str(data.root),
        "data_hash": data.data_hash,
        "images": int(images),
        "patients": int(patients),
        "methods": {
            YOUDEN: "maximises sensitivity + specificity - 1",
            sensitivity_key(sensitivity): f"the highest threshold with sensitivity >= {sensitivity:g}",
        },
        "rule": "positive when probability >= threshold",
        "labels": chosen,
        "not_chosen": reasons,
    }


# ---------------------------------------------------------------- predict's side


def read_thresholds(path: Path) -> dict:
    try:
        doc = read_json_file(path)  # size and depth limits as every JSON input
    except CxrError as exc:
        raise CxrError(f"--thresholds {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CxrError(f"--thresholds {path}: not a thresholds file written by cxrtool evaluate (format {FORMAT})")
    return doc


def find_thresholds(
    source: Path, checkpoint_dir: Path, explicit: Path | None = None
) -> tuple[Path | None, dict | None, str]:
    """The thresholds predict should use: (file, document, a note on where they come from or why none).

    `explicit` (--thresholds FILE) must belong to the same weights. Otherwise the newest
    RUN/eval*/thresholds.json chosen on the validation split for these weights is used.
    """
    sha = weights_sha256(checkpoint_dir)
    if explicit is not None:
        doc = read_thresholds(explicit)
        if doc.get("model_sha256") != sha:
            raise CxrError(
                f"--thresholds {explicit}: chosen for other weights than {checkpoint_dir} (model_sha256 differs); "
                f"evaluate this model to get its own"
            )
        return Path(explicit), doc, f"from {explicit}, chosen on the {doc.get('chosen_on')} split of {doc.get('data')}"
    run = run_of(source) or Path(source)
    found, stale = [], []
    for path in run.glob(f"eval*/{FILE}"):
        try:
            doc = read_thresholds(path)
        except CxrError:
            continue
        if doc.get("chosen_on") != "val":
            continue
        (found if doc.get("model_sha256") == sha else stale).append((path.stat().st_mtime, path, doc))
    if found:
        _, path, doc = max(found, key=lambda t: t[0])
        return path, doc, f"from {path}, chosen on the val split of {doc.get('data')}"
    if stale:
        return (
            None,
            None,
            (
                f"the thresholds in {stale[0][1].parent} were chosen for earlier weights of this run; "
                f"run `cxrtool evaluate {run} --overwrite` again: probabilities only"
            ),
        )
    return (
        None,
        None,
        f"no evaluation of {run} has chosen thresholds yet (run `cxrtool evaluate {run}`): probabilities only",
    )


def pick_operating_point(doc: dict, name: str, labels: list[str], path: Path) -> dict[str, float]:
    """{label: threshold} for one operating point (youden, sens90, ...) of a thresholds document."""
    available = list(dict.fromkeys(k for v in doc["labels"].values() for k in v))
    if available and name not in available:
        raise CxrError(f"--operating-point {name}: {path} holds {', '.join(available)}")
    return {l: float(v[name]) for l, v in doc["labels"].items() if l in labels and v.get(name) is not None}
