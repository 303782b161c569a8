"""`compare`'s arms on the same patients: what each was scored on, and each against the reference.

Every evaluation folder holds `metrics.json` and `predictions.csv` (one row per image: id,
patient, prob_<label>, true_<label>, and fold for a cross-validation run). `read_scored_set`
reads them into a `ScoredSet`: the data hash of the cache it was scored on (metrics.json, or the
run's manifest for a cross-validation run), the image ids and the test patients, and a short set
id (a hash of the data hash and the sorted image ids) that names the test set in every row.

Two arms are paired only when they were scored on the same test set: the same data hash and the
same images (hence the same patients). Otherwise `compare` refuses with one line naming the two
arms and how the sets differ, unless `--allow-different-test-sets`: then such an arm is tabulated
with its own set id and no paired difference.

`differences` gives, for every other arm, the paired difference in AUROC against the reference
(evaluate/paired.py): on the single split, per label and for the mean over the estimable labels,
with the patient-bootstrap interval and p-value and DeLong's beside it; between cross-validated
twins on the same folds, the mean over folds of the per-fold difference with a t-interval.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CxrError
from ..runs import read_manifest
from ..safeio import restore_cells
from .metrics import fold_aurocs
from .paired import fold_difference, not_estimable, paired_report

DIFF_COLUMNS = [
    "arm",
    "reference",
    "kind",
    "label",
    "status",
    "test_set",
    "ref_auroc",
    "arm_auroc",
    "diff",
    "low",
    "high",
    "p",
    "interval",
    "replicates",
    "skipped_replicates",
    "delong_low",
    "delong_high",
    "delong_p",
    "positive_patients",
    "negative_patients",
    "folds",
    "labels",
]
MEAN = "mean"  # the row of the mean over the estimable labels
# The columns compare's arms.csv gets from the pairing (the compared label's differences).
PAIRING_COLUMNS = [
    "test_set",
    "cv_test_set",
    "reference",
    "diff",
    "diff_low",
    "diff_high",
    "diff_p",
    "diff_delong_p",
    "diff_skipped_replicates",
    "cv_diff",
    "cv_diff_low",
    "cv_diff_high",
    "cv_diff_p",
    "seeds",
    "seeds_mean",
    "seeds_sd",
    "seeds_min",
    "seeds_max",
]


@dataclass
class ScoredSet:
    """One arm's evaluation as compare pairs it: the images, their patients, labels and scores."""

    arm: str
    option: str  # "--arm NAME" or "--cv NAME", for messages
    data_hash: str | None
    frame: pd.DataFrame
    labels: list[str]

    @property
    def ids(self) -> set[str]:
        return set(self.frame["id"])

    @property
    def patients(self) -> set[str]:
        return set(self.frame["patient"])

    @property
    def set_id(self) -> str:
        text = f"{self.data_hash}\n" + "\n".join(sorted(self.ids))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def evaluation_dir(run: Path) -> Path:
    """The folder holding the evaluation's metrics.json: RUN/eval, or the folder given."""
    run = Path(run)
    return run if (run / "metrics.json").is_file() else run / "eval"


def _data_hash(run: Path, metrics: dict) -> str | None:
    if metrics.get("data_hash"):
        return str(metrics["data_hash"])
    for folder in (Path(run), Path(str(metrics.get("run", "")))):
        if (folder / "manifest.json").is_file():
            return read_manifest(folder).get("data_hash")
    return None


def read_scored_set(arm: str, option: str, run: Path, metrics: dict) -> ScoredSet:
    """The arm's predictions.csv and data hash; a missing or malformed file is one line."""
    path = evaluation_dir(run) / "predictions.csv"
    if not path.is_file():
        raise CxrError(
            f"{option}: {path} not found; compare pairs arms image by image: evaluate the run again "
            f"(cxrtool evaluate {run} --overwrite)"
        )
    try:
        frame = restore_cells(pd.read_csv(path, dtype={"id": str, "patient": str}))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CxrError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("id", "patient") if c not in frame.columns]
    if missing:
        raise CxrError(f"{path}: lacks the column(s) {', '.join(missing)} ({option})")
    if frame["id"].duplicated().any():
        raise CxrError(f"{path}: the image id {frame['id'][frame['id'].duplicated()].iloc[0]!r} appears twice")
    labels = [c[5:] for c in frame.columns if c.startswith("prob_") and f"true_{c[5:]}" in frame.columns]
    return ScoredSet(arm, option, _data_hash(run, metrics), frame, labels)


def how_they_differ(a: ScoredSet, b: ScoredSet) -> str | None:
    """How two arms' test sets differ, in a few words (None when they are the same)."""
    parts = []
    if a.data_hash != b.data_hash:
        parts.append(f"data hash {str(a.data_hash)[:12]} vs {str(b.data_hash)[:12]}")
    if a.patients != b.patients:
        parts.append(f"{len(a.patients)} vs {len(b.patients)} test patients, {len(a.patients & b.patients)} in common")
    elif a.ids != b.ids:
        parts.append(f"the same patients but {len(a.ids)} vs {len(b.ids)} images, {len(a.ids & b.ids)} in common")
    if not parts:
        shared = [l for l in a.labels if l in b.labels]
        other = b.frame.set_index("id").loc[a.frame["id"]]
        for l in shared:
            if not np.array_equal(_truth(a.frame, [l]), _truth(other, [l]), equal_nan=True):
                parts.append(f"the same images with different {l} labels")
                break
    return "; ".join(parts) or None


def _truth(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    return frame[[f"true_{l}" for l in labels]].apply(pd.to_numeric, errors="coerce").to_numpy(float)


def check_same_sets(reference: ScoredSet, others: list[ScoredSet], allow: bool) -> dict[str, str]:
    """Arm name -> how its test set differs from the reference's; refused unless `allow`."""
    differ = {}
    for s in others:
        why = how_they_differ(reference, s)
        if why and not allow:
            raise CxrError(
                f"{s.option} and {reference.option} were scored on different test sets ({why}); compare arms "
                "evaluated on the same patients, or pass --allow-different-test-sets to list them unpaired"
            )
        if why:
            differ[s.arm] = why
    return differ


def _aligned(ref: ScoredSet, arm: ScoredSet, labels: list[str]):
    """Targets, both arms' probabilities and the patients, in the reference's image order."""
    other = arm.frame.set_index("id").loc[ref.frame["id"]]
    truth = _truth(ref.frame, labels)
    p_ref = ref.frame[[f"prob_{l}" for l in labels]].to_numpy(float)
    p_arm = other[[f"prob_{l}" for l in labels]].to_numpy(float)
    return truth, p_ref, p_arm, ref.frame["patient"].to_numpy()


def _row(arm: str, reference: str, kind: str, label: str, test_set: str, **fields) -> dict:
    return {"arm": arm, "reference": reference, "kind": kind, "label": label, "test_set": test_set, **fields}


def split_differences(ref: ScoredSet, arms: list[ScoredSet], differ: dict[str, str], n_boot: int, seed: int):
    """Rows of the paired single-split differences, arm by arm (per label, then the mean)."""
    rows = []
    for arm in arms:
        if arm.arm in differ:
            rows.append(
                _row(
                    arm.arm,
                    ref.arm,
                    "test split",
                    MEAN,
                    arm.set_id,
                    status=f"not paired: a different test set ({differ[arm.arm]})",
                )
            )
            continue
        labels = [l for l in ref.labels if l in arm.labels]
        truth, p_ref, p_arm, patients = _aligned(ref, arm, labels)
        rep = paired_report(truth, p_ref, p_arm, patients, labels, n_boot, seed)
        interval = f"patient bootstrap {n_boot} (same draw for both arms)"
        for label in [*labels, MEAN]:
            e = rep["mean"] if label == MEAN else rep["labels"][label]
            status = e.get("not_estimable", "ok")
            fields = {k: v for k, v in e.items() if k in DIFF_COLUMNS}
            if label == MEAN and "labels" in e:
                fields["labels"] = len(e["labels"])
            rows.append(
                _row(arm.arm, ref.arm, "test split", label, ref.set_id, status=status, interval=interval, **fields)
            )
    return rows


def fold_differences(ref: ScoredSet, arms: list[ScoredSet], differ: dict[str, str]):
    """Rows of the k-fold differences: per fold AUROC(arm) - AUROC(ref), mean and t-interval over folds."""
    rows = []
    for arm in arms:
        why = differ.get(arm.arm)
        if why is None and "fold" in ref.frame and "fold" in arm.frame:
            folds_arm = arm.frame.set_index("id").loc[ref.frame["id"], "fold"].to_numpy()
            if not np.array_equal(ref.frame["fold"].to_numpy(), folds_arm):
                why = "the same images in different folds (give both runs the same --folds and --seed)"
        if why:
            rows.append(_row(arm.arm, ref.arm, "k-fold", MEAN, arm.set_id, status=f"not paired: {why}"))
            continue
        labels = [l for l in ref.labels if l in arm.labels]
        truth, p_ref, p_arm, patients = _aligned(ref, arm, labels)
        folds = ref.frame["fold"].to_numpy()
        a_ref, a_arm = fold_aurocs(truth, p_ref, folds).auroc, fold_aurocs(truth, p_arm, folds).auroc
        ok = [j for j, l in enumerate(labels) if not not_estimable(truth[:, j], patients)]
        interval = f"t over {len(np.unique(folds))} folds"
        for j, label in enumerate(labels):
            why = not_estimable(truth[:, j], patients)
            fields = fold_difference(a_ref[:, j], a_arm[:, j]) if not why else {}
            rows.append(
                _row(
                    arm.arm,
                    ref.arm,
                    "k-fold",
                    label,
                    ref.set_id,
                    status=why or fields.pop("not_estimable", "ok"),
                    interval=interval,
                    ref_auroc=float(np.nanmean(a_ref[:, j])) if not why else None,
                    arm_auroc=float(np.nanmean(a_arm[:, j])) if not why else None,
                    **{k: v for k, v in fields.items() if k in DIFF_COLUMNS},
                )
            )
        if ok:
            fields = fold_difference(a_ref[:, ok].mean(axis=1), a_arm[:, ok].mean(axis=1))
            status = fields.pop("not_estimable", "ok")
            fields = {k: v for k, v in fields.items() if k in DIFF_COLUMNS}
            rows.append(
                _row(
                    arm.arm,
                    ref.arm,
                    "k-fold",
                    MEAN,
                    ref.set_id,
                    status=status,
                    interval=interval,
                    labels=len(ok),
                    **fields,
                )
            )
    return rows


def differences_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=DIFF_COLUMNS)


def headline(diffs: pd.DataFrame, arm: str, kind: str, label: str) -> dict:
    """The difference row of one arm, kind and label (the compared label, else the mean); {} if none."""
    for wanted in (label, MEAN):
        hit = diffs[(diffs["arm"] == arm) & (diffs["kind"] == kind) & (diffs["label"] == wanted)]
        if len(hit):
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in hit.iloc[0].items()}
    return {}


def pair_arms(
    split: list[tuple[str, str, dict]],
    cv: list[tuple[str, str, dict]],
    reference: str | None,
    allow_different: bool,
    n_boot: int,
    seed: int,
) -> tuple[str, pd.DataFrame, dict[str, str], dict[str, str]]:
    """Each arm against the reference: (reference, differences, set id per split arm, per CV arm).

    `split` and `cv` are (name, run, metrics) of the arms' single-split and cross-validation
    evaluations, in the order given.
    """
    names = [n for n, _, _ in split] + [n for n, _, _ in cv if n not in {m for m, _, _ in split}]
    reference = reference or (names[0] if names else None)
    if reference is not None and reference not in names:
        raise CxrError(f"--reference {reference}: no arm of that name (the arms: {', '.join(names)})")
    rows: list[dict] = []
    set_ids: list[dict[str, str]] = [{}, {}]
    for i, (kind, given, option) in enumerate((("test split", split, "--arm"), ("k-fold", cv, "--cv"))):
        if len(given) == 1 and not (evaluation_dir(Path(given[0][1])) / "predictions.csv").is_file():
            continue  # nothing to pair it with: an arm alone needs no predictions (and gets no set id)
        sets = [read_scored_set(n, f"{option} {n}", Path(run), m) for n, run, m in given]
        set_ids[i] = {s.arm: s.set_id for s in sets}
        if not sets:
            continue
        ref = next((s for s in sets if s.arm == reference), None)
        # Without the reference in this kind, the arms are still checked against one another.
        anchor = ref or sets[0]
        others = [s for s in sets if s is not anchor]
        differ = check_same_sets(anchor, others, allow_different)
        if ref is None:
            continue
        if kind == "test split":
            rows += split_differences(ref, others, differ, n_boot, seed)
        else:
            rows += fold_differences(ref, others, differ)
    return reference, differences_table(rows), set_ids[0], set_ids[1]


def fill_differences(
    arms: pd.DataFrame,
    diffs: pd.DataFrame,
    split_sets: dict[str, str],
    cv_sets: dict[str, str],
    reference: str | None,
    label: str,
) -> None:
    """Fill the arms table's test-set and difference columns (PAIRING_COLUMNS) for `label`."""
    arms["test_set"] = arms["arm"].map(split_sets)
    arms["cv_test_set"] = arms["arm"].map(cv_sets)
    arms["reference"] = reference
    for i, name in arms["arm"].items():
        d = headline(diffs, name, "test split", label) if len(diffs) else {}
        if d.get("status") == "ok":
            arms.loc[i, ["diff", "diff_low", "diff_high", "diff_p", "diff_delong_p", "diff_skipped_replicates"]] = [
                _nan(d.get(k)) for k in ("diff", "low", "high", "p", "delong_p", "skipped_replicates")
            ]
        c = headline(diffs, name, "k-fold", label) if len(diffs) else {}
        if c.get("status") == "ok":
            arms.loc[i, ["cv_diff", "cv_diff_low", "cv_diff_high", "cv_diff_p"]] = [
                _nan(c.get(k)) for k in ("diff", "low", "high", "p")
            ]


def _nan(value) -> float:
    return float("nan") if value is None else float(value)
