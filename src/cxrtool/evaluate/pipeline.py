"""`cxrtool evaluate`: honest numbers for a trained run on held-out patients.

A run's checkpoint is scored on a split of a prepared cache (the test split of the data it was
trained on, by default): per label ROC AUC and precision-recall AUC with 95% intervals from a
patient bootstrap, the mean AUROC with its interval, sensitivity and specificity (with intervals)
at operating points chosen on the validation split (`cxrtool.evaluate.thresholds`), calibration (ECE and
a reliability plot). Beside them, optionally: published AUROCs
(`--compare chexnet`), metadata-only shortcut baselines (on by default where the index has
metadata), and the same model scored on another collection (`--external DATA`, without its copies
of the images of the run's lineage: evaluate/external.py). A cross-validation
run (one holding `oof_predictions.csv`) is scored from its out-of-fold predictions instead, and a
run trained once per seed (`finetune --seeds N`) seed by seed, with the spread (evaluate/seeds.py).

Everything goes to `RUN/eval/` (`RUN/eval-<split>/` for other splits; `--out` to choose):
metrics.json, thresholds.json, per_label.csv/.md, predictions.csv, roc.png, reliability.png, and
shortcuts.csv, external.csv, external_predictions.csv, external_duplicates.csv, folds.csv where they apply. The training
checkpoint is only read: `cxrtool predict` finds the thresholds in thresholds.json. The folder and
what goes in it are shared with cross-validation runs (evaluate/outputs.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_write_json
from ..data.cache import PreparedData
from ..data.labels import needs_any_class
from ..data.lineage import Lineage, check_data_hash, check_seen, content_keys, read_lineage, scored_rows
from ..device import resolve_device
from ..errors import CxrError
from ..inference import predict_probs, predictions_table, resolve_data, write_predictions
from ..models.checkpoint import load_checkpoint, resolve_checkpoint
from ..models.provenance import weights_record
from ..progress import info, warn
from ..run_locks import holds_locks
from ..runs import RunNeed, is_cv_run, is_seeds_run, resolve_run
from .by_source import add_within_source
from .config import EvaluateConfig
from .cross_validation import evaluate_cv_run
from .external import drop_lineage_copies
from .metrics import label_report
from .outputs import image_keys as frame_keys
from .outputs import prepare_out, score, write_outputs
from .published import published_results
from .seeds import evaluate_seeds_run
from .shortcuts import shortcut_baselines
from .thresholds import FILE, choose_thresholds, report_at_thresholds, thresholds_document


@holds_locks
def evaluate_run(cfg: EvaluateConfig) -> dict:
    """Score a run and write its evaluation folder; returns the metrics (as in metrics.json)."""
    run = resolve_run(cfg.run, need=_need(cfg) if cfg.run is None else None)
    if is_cv_run(run):
        return evaluate_cv_run(cfg, run)
    if is_seeds_run(run):
        return evaluate_seeds_run(cfg, run, _evaluate_model)
    return _evaluate_model(cfg, run)


def _need(cfg: EvaluateConfig) -> RunNeed | None:
    """With no run given: the newest run that has the published labels or the data's labels asked for."""
    if cfg.compare is not None:
        names = sorted({label for result in published_results(cfg.compare) for label in result.auroc})
        return needs_any_class(names, f"a label of the published {cfg.compare} table")
    if cfg.data is not None:
        return needs_any_class(PreparedData(cfg.data).labels, f"a label of {cfg.data}")
    return None


def _evaluate_model(cfg: EvaluateConfig, run: Path) -> dict:
    device = resolve_device(cfg.device)
    out = prepare_out(cfg, run)
    model, card = load_checkpoint(run, cfg.checkpoint, device)
    data = resolve_data(cfg.data, run)
    lineage = read_lineage(run)
    data_changed = check_data_hash(run, data, lineage) if cfg.data is None else False
    rows, scored = scored_rows(lineage, data, cfg.split)
    seen, seen_mask = check_seen(
        lineage, content_keys(data, rows), cfg.allow_seen, f"evaluate {run}: its {scored} of {data.root}"
    )
    labels, unmatched = match_labels(list(card["labels"]), data, run, imported=bool(card.get("source")))
    if labels != list(card["labels"]):
        model = only_outputs(model, [list(card["labels"]).index(l) for l in labels])
    cols = data.require_labels(labels, f"the model in {run}")
    targets = data.targets(rows)[:, cols]
    image_size = int(card["image_size"])
    trained_size = (card.get("preprocessing") or {}).get("cache_size")
    if trained_size and int(trained_size) != data.size:
        warn(
            f"{data.root}: cached at {data.size} px but the model was trained on a {trained_size}-px cache; "
            f"images are resized to {image_size} px either way, but detail differs (prepare with --size {trained_size})"
        )
    probs = predict_probs(
        model, data, rows, image_size, cfg.batch_size, device, cfg.tta, description=f"evaluate {cfg.split}"
    )
    frame = data.index.iloc[rows]
    what = f"{scored} of {data.root}" + (
        f" (in-sample: {seen['seen']} images seen in training)" if seen["in_sample"] else ""
    )
    metrics = score(cfg, labels, targets, probs, frame["patient"].to_numpy(), what=what, run=run)
    metrics.update(
        checkpoint=cfg.checkpoint,
        weights=weights_record(resolve_checkpoint(run, cfg.checkpoint), cfg.checkpoint),
        data=str(data.root),
        data_hash=data.data_hash,
        data_changed=data_changed,
        split=cfg.split,
        scored=scored,
        in_sample=seen["in_sample"],
        lineage=seen,
        tta=cfg.tta,
    )
    metrics["operating_points"] = operating_points(
        cfg,
        run,
        out,
        model,
        card,
        data,
        cols,
        labels,
        metrics,
        targets,
        probs,
        frame["patient"].to_numpy(),
        device,
        part_rows(lineage, data, "val"),
    )

    shortcuts = cfg.shortcuts
    if shortcuts is not False:
        fit_rows = part_rows(lineage, data, "train")
        result = None
        if len(fit_rows):
            result = shortcut_baselines(
                data.index,
                labels,
                fit_rows,
                data.targets(fit_rows)[:, cols],
                rows,
                targets,
                metrics["labels"],
                cfg.bootstrap,
                cfg.seed,
            )
        if result is None and shortcuts:
            warn(
                f"--shortcuts: {data.root} has no metadata (view, sex, age, source) that varies in its train split; no baselines"
            )
        metrics["shortcuts"] = result
        add_within_source(cfg, metrics, data, frame, labels, targets, probs, model, card, device)
    if cfg.external is not None:
        metrics["external"] = _external(
            cfg, run, model, card, data, out, labels, targets, probs, frame, device, lineage
        )

    metrics["labels"].update(unmatched_entries(unmatched, data, rows))
    keys = {**frame_keys(frame), **({"seen": seen_mask.astype(int)} if seen["in_sample"] else {})}
    write_predictions(out / "predictions.csv", predictions_table(keys, labels, probs, targets=targets))
    write_outputs(out, metrics, labels, targets, probs)  # metrics.json is written once, complete
    return metrics


def match_labels(model_labels: list[str], data, run: Path, imported: bool = False) -> tuple[list[str], dict[str, str]]:
    """The model's labels the data annotates (matched by name), and why each other label cannot
    be scored: the model's that the data lacks, and (for a model imported from another toolkit,
    whose label set was not chosen on this data) the data's that the model lacks. No shared label
    at all is an error."""
    shared = [l for l in model_labels if l in data.labels]
    if not shared:
        data.require_labels(model_labels, f"the model in {run}")  # the one-line error naming them
    unmatched = {l: "the data does not annotate this label" for l in model_labels if l not in shared}
    if imported:
        unmatched.update({l: "the model has no output for this label" for l in data.labels if l not in model_labels})
    if unmatched:
        info(f"scoring the {len(shared)} label(s) that the model and {data.root} share (matched by name)")
    return shared, unmatched


def only_outputs(model, columns: list[int]):
    """The model with only the outputs `columns` (the labels scored), for every pass evaluate makes."""

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @property
        def num_labels(self) -> int:
            return len(columns)

        def forward(self, x):
            return self.model(x)[:, columns]

    return Outputs()


def unmatched_entries(unmatched: dict[str, str], data, rows: np.ndarray) -> dict[str, dict]:
    """Per-label entries that say 'not computable' for labels only one side has."""
    out = {}
    for label, reason in unmatched.items():
        y = data.targets(rows)[:, data.labels.index(label)] if label in data.labels else np.zeros(0)
        y = y[~np.isnan(y)]
        out[label] = {
            "n": len(y),
            "positives": int((y == 1).sum()),
            "negatives": int((y == 0).sum()),
            "not_computable": reason,
        }
    return out


def operating_points(
    cfg: EvaluateConfig,
    run: Path,
    out: Path,
    model,
    card: dict,
    data,
    cols: list[int],
    labels: list[str],
    metrics: dict,
    targets: np.ndarray,
    probs: np.ndarray,
    patients: np.ndarray,
    device,
    val_rows: np.ndarray,
) -> dict:
    """Choose thresholds on the val split, write out/thresholds.json, and report them on this split.

    Each label's entry in `metrics` gets `operating_points` (sensitivity and specificity with
    patient-bootstrap intervals at the val-chosen thresholds); the return value says where the
    thresholds come from and whether the reported split contains the one they were chosen on.
    """
    if len(val_rows) == 0:
        warn(f"{data.root}: no val split to choose operating points on; none are reported or written")
        return {"chosen_on": None, "reason": f"{data.root} has no val split"}
    if cfg.split == "val":
        val_targets, val_probs = targets, probs
    else:
        val_targets = data.targets(val_rows)[:, cols]
        val_probs = predict_probs(
            model,
            data,
            val_rows,
            int(card["image_size"]),
            cfg.batch_size,
            device,
            cfg.tta,
            description="evaluate val (operating points)",
        )
    chosen, reasons = choose_thresholds(val_targets, val_probs, labels, cfg.sensitivity)
    val_patients = data.index["patient"].iloc[val_rows].nunique()
    doc = thresholds_document(
        chosen,
        reasons,
        cfg.sensitivity,
        run,
        cfg.checkpoint,
        resolve_checkpoint(run, cfg.checkpoint),
        data,
        "val",
        len(val_rows),
        val_patients,
    )
    atomic_write_json(out / FILE, doc)
    for label, points in report_at_thresholds(
        chosen, targets, probs, labels, patients, cfg.bootstrap, cfg.seed
    ).items():
        metrics["labels"][label]["operating_points"] = points
    for label, reason in reasons.items():
        info(f"{label}: no operating point ({reason.replace('this split', 'the val split')})")
    in_sample = cfg.split in ("val", "all")
    result = {
        "chosen_on": "val",
        "reported_on": cfg.split,
        "file": str(out / FILE),
        "sensitivity_target": cfg.sensitivity,
        "names": list(doc["methods"]),
        "in_sample": in_sample,
        "not_chosen": reasons,
    }
    if in_sample:
        result["note"] = (
            f"in-sample: the thresholds were chosen on the val split, which the {cfg.split} split is or contains; optimistic"
        )
    return result


def _external(
    cfg: EvaluateConfig,
    run: Path,
    model,
    card: dict,
    data,
    out: Path,
    labels: list[str],
    targets: np.ndarray,
    probs: np.ndarray,
    frame: pd.DataFrame,
    device,
    lineage: Lineage,
) -> dict:
    """Score the model on every image of another prepared collection that is not a copy of an
    image in the run's lineage (evaluate/external.py), on the labels both share."""
    ext = PreparedData(cfg.external)
    shared = [l for l in labels if l in ext.labels]
    if not shared:
        raise CxrError(
            f"{ext.root}: shares no label with the model (model: {', '.join(labels)}; "
            f"data: {', '.join(ext.labels)}); --external needs at least one"
        )
    if ext.data_hash and ext.data_hash == data.data_hash:
        warn(f"--external {ext.root}: is the same collection as the internal data; this is not an external test")
    if len(shared) < len(labels):
        info(f"--external: scoring the {len(shared)} shared label(s): {', '.join(shared)}")
    model_cols = [labels.index(l) for l in shared]
    if len(ext) == 0:
        raise CxrError(f"{ext.root}: holds no images (--external)")
    ext_rows, copies = drop_lineage_copies(ext, run, out)
    # Copies found by the search are dropped first; the seen-image check then covers what is left.
    ext_seen, ext_mask = check_seen(lineage, content_keys(ext, ext_rows), cfg.allow_seen, f"--external {ext.root}")
    ext_probs = predict_probs(
        model, ext, ext_rows, int(card["image_size"]), cfg.batch_size, device, cfg.tta, description="evaluate external"
    )[:, model_cols]
    ext_targets = ext.targets(ext_rows)[:, [ext.labels.index(l) for l in shared]]
    ext_frame = ext.index.iloc[ext_rows]
    rep = label_report(ext_targets, ext_probs, shared, ext_frame["patient"].to_numpy(), cfg.bootstrap, cfg.seed)
    # The internal mean over the shared labels only, so that the two means are comparable.
    internal = label_report(
        targets[:, model_cols], probs[:, model_cols], shared, frame["patient"].to_numpy(), cfg.bootstrap, cfg.seed
    )["mean"]
    write_predictions(
        out / "external_predictions.csv",
        predictions_table(
            {**frame_keys(ext_frame), **({"seen": ext_mask.astype(int)} if ext_seen["in_sample"] else {})},
            shared,
            ext_probs,
            targets=ext_targets,
        ),
    )
    for e in rep["labels"].values():
        e.pop("calibration", None)
    return {
        "data": str(ext.root),
        "data_hash": ext.data_hash,
        "images": len(ext_rows),
        "patients": int(ext_frame["patient"].nunique()),
        "labels": rep["labels"],
        "mean": rep["mean"],
        "internal_mean": internal,
        "split": "all",
        "in_sample": ext_seen["in_sample"],
        "lineage": ext_seen,
        **copies,
    }


def part_rows(lineage: Lineage, data, role: str) -> np.ndarray:
    """The rows of the run's own `role` part (val: thresholds; train: shortcut baselines).

    A fold's run has its own validation and training parts inside the cache it was cut from; any
    other run (or a cache it was not cut from) uses the cache's split of that name.
    """
    if lineage.fold is None or data.data_hash != lineage.data_hash or not lineage.recorded:
        return data.rows(role)
    return scored_rows(lineage, data, role, announce=False)[0]
