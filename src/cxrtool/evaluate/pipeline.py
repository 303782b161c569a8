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

from ..atomic import atomic_write_json
from ..data.cache import PreparedData
from ..data.labels import needs_any_class
from ..data.lineage import check_seen, content_keys
from ..errors import CxrError
from ..inference import predictions_table, write_predictions
from ..models.provenance import weights_record
from ..progress import info, warn
from ..run_locks import holds_locks
from ..runs import RunNeed, is_cv_run, is_seeds_run, resolve_run
from .by_source import add_within_source
from .config import EvaluateConfig
from .cross_validation import evaluate_cv_run
from .external import drop_lineage_copies
from .inputs import EvaluationInputs, Scores, resolve_evaluation
from .metrics import label_report
from .outputs import image_keys as frame_keys
from .outputs import score, write_outputs
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
    inputs = resolve_evaluation(cfg, run)  # everything below reads this, never the run's files
    data, out, seen = inputs.data, inputs.out, inputs.seen
    probs = inputs.model.probs(data, inputs.rows, f"evaluate {cfg.split}")
    scores = Scores(inputs.labels, inputs.targets, probs, inputs.frame)
    what = f"{inputs.scored} of {data.root}" + (
        f" (in-sample: {seen['seen']} images seen in training)" if seen["in_sample"] else ""
    )
    metrics = score(cfg, scores.labels, scores.targets, probs, scores.patients, what=what, run=run)
    metrics.update(
        checkpoint=cfg.checkpoint,
        weights=weights_record(inputs.model.loaded.folder, cfg.checkpoint),
        data=str(data.root),
        data_hash=data.data_hash,
        data_changed=inputs.data_changed,
        split=cfg.split,
        scored=inputs.scored,
        in_sample=seen["in_sample"],
        lineage=seen,
        tta=cfg.tta,
    )
    metrics["operating_points"] = operating_points(inputs, scores, metrics)
    if cfg.shortcuts is not False:
        metrics["shortcuts"] = _shortcuts(inputs, scores, metrics)
        add_within_source(inputs, scores, metrics)
    if cfg.external is not None:
        metrics["external"] = _external(inputs, scores)

    metrics["labels"].update(unmatched_entries(inputs.unmatched, data, inputs.rows))
    keys = {**frame_keys(scores.frame), **({"seen": inputs.seen_mask.astype(int)} if seen["in_sample"] else {})}
    write_predictions(out / "predictions.csv", predictions_table(keys, scores.labels, probs, targets=scores.targets))
    write_outputs(out, metrics, scores.labels, scores.targets, probs)  # metrics.json is written once, complete
    return metrics


def _shortcuts(inputs: EvaluationInputs, scores: Scores, metrics: dict) -> dict | None:
    """Metadata-only baselines fitted on the run's own train part, scored on the rows evaluated."""
    cfg, data = inputs.cfg, inputs.data
    fit_rows = inputs.part_rows("train")
    result = None
    if len(fit_rows):
        result = shortcut_baselines(
            data.index,
            scores.labels,
            fit_rows,
            data.targets(fit_rows)[:, inputs.cols],
            inputs.rows,
            scores.targets,
            metrics["labels"],
            cfg.bootstrap,
            cfg.seed,
        )
    if result is None and cfg.shortcuts:
        warn(
            f"--shortcuts: {data.root} has no metadata (view, sex, age, source) that varies in its train split; no baselines"
        )
    return result


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


def operating_points(inputs: EvaluationInputs, scores: Scores, metrics: dict) -> dict:
    """Choose thresholds on the val split, write out/thresholds.json, and report them on this split.

    Each label's entry in `metrics` gets `operating_points` (sensitivity and specificity with
    patient-bootstrap intervals at the val-chosen thresholds); the return value says where the
    thresholds come from and whether the reported split contains the one they were chosen on.
    """
    cfg, data, out = inputs.cfg, inputs.data, inputs.out
    val_rows = inputs.part_rows("val")
    if len(val_rows) == 0:
        warn(f"{data.root}: no val split to choose operating points on; none are reported or written")
        return {"chosen_on": None, "reason": f"{data.root} has no val split"}
    if cfg.split == "val":
        val_targets, val_probs = scores.targets, scores.probs
    else:
        val_targets = data.targets(val_rows)[:, inputs.cols]
        val_probs = inputs.model.probs(data, val_rows, "evaluate val (operating points)")
    chosen, reasons = choose_thresholds(val_targets, val_probs, scores.labels, cfg.sensitivity)
    val_patients = data.index["patient"].iloc[val_rows].nunique()
    doc = thresholds_document(
        chosen,
        reasons,
        cfg.sensitivity,
        inputs.run,
        cfg.checkpoint,
        inputs.model.loaded.folder,
        data,
        "val",
        len(val_rows),
        val_patients,
    )
    atomic_write_json(out / FILE, doc)
    for label, points in report_at_thresholds(
        chosen, scores.targets, scores.probs, scores.labels, scores.patients, cfg.bootstrap, cfg.seed
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


def _external(inputs: EvaluationInputs, scores: Scores) -> dict:
    """Score the model on every image of another prepared collection that is not a copy of an
    image in the run's lineage (evaluate/external.py), on the labels both share."""
    cfg, data, labels = inputs.cfg, inputs.data, scores.labels
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
    ext_rows, copies = drop_lineage_copies(ext, inputs.run, inputs.out)
    # Copies found by the search are dropped first; the seen-image check then covers what is left.
    ext_seen, ext_mask = check_seen(
        inputs.lineage, content_keys(ext, ext_rows), cfg.allow_seen, f"--external {ext.root}"
    )
    ext_probs = inputs.model.probs(ext, ext_rows, "evaluate external")[:, model_cols]
    ext_targets = ext.targets(ext_rows)[:, [ext.labels.index(l) for l in shared]]
    ext_frame = ext.index.iloc[ext_rows]
    rep = label_report(ext_targets, ext_probs, shared, ext_frame["patient"].to_numpy(), cfg.bootstrap, cfg.seed)
    # The internal mean over the shared labels only, so that the two means are comparable.
    internal = label_report(
        scores.targets[:, model_cols], scores.probs[:, model_cols], shared, scores.patients, cfg.bootstrap, cfg.seed
    )["mean"]
    write_predictions(
        inputs.out / "external_predictions.csv",
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
