"""`cxrtool evaluate` on a cross-validation run: scoring its out-of-fold predictions.

A cross-validation run (`finetune --folds K`) holds `oof_predictions.csv`: every image scored
once, by the fold model that did not see its patient (columns id, patient, fold, prob_<label>,
true_<label>). Pooling them gives one AUROC per label over the whole collection, with a patient
bootstrap interval; the per-fold AUROCs show how much one split's number would have swung.
Shortcut baselines are cross-fitted with the same folds (each fold scored by metadata predictors
fitted on the other folds), so the model and its baselines are compared like for like. There is
no single model here, so no thresholds are stored and `--external`/`--tta` do not apply.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CxrError
from ..inference import predictions_table, resolve_data, write_predictions
from ..progress import info, warn
from ..runs import OOF_PREDICTIONS
from ..safeio import restore_cells
from .metrics import fold_aurocs
from .outputs import image_keys, prepare_out, score, write_outputs
from .shortcuts import cross_fitted_baselines


def read_oof(path: Path) -> tuple[pd.DataFrame, list[str], np.ndarray, np.ndarray]:
    """The OOF table, its labels (prob_ column order), targets (NaN = blank) and probabilities."""
    try:
        frame = restore_cells(pd.read_csv(path, dtype={"id": str, "patient": str}))
    except FileNotFoundError:
        raise CxrError(
            f"{path}: not found; the cross-validation run has not finished (no out-of-fold predictions yet)"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CxrError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("id", "patient", "fold") if c not in frame.columns]
    if missing:
        raise CxrError(f"{path}: lacks the column(s) {', '.join(missing)}")
    labels = [c[len("prob_") :] for c in frame.columns if c.startswith("prob_")]
    if not labels:
        raise CxrError(f"{path}: has no prob_<label> columns")
    no_truth = [l for l in labels if f"true_{l}" not in frame.columns]
    if no_truth:
        raise CxrError(f"{path}: lacks true_{no_truth[0]} (every prob_<label> needs its true_<label>)")
    if frame.empty:
        raise CxrError(f"{path}: holds no predictions")
    probs = frame[[f"prob_{l}" for l in labels]].to_numpy(dtype=np.float64)
    targets = frame[[f"true_{l}" for l in labels]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(probs).all():
        raise CxrError(f"{path}: has blank or non-numeric probabilities")
    return frame, labels, targets, probs


def evaluate_cv_run(cfg, run: Path) -> dict:
    if cfg.external is not None:
        raise CxrError(
            f"--external: {run} is a cross-validation run with one model per fold; "
            "evaluate one fold's own run (e.g. RUN/fold-1) against the external data"
        )
    if cfg.tta:
        warn("--tta: ignored for a cross-validation run (its out-of-fold probabilities are already computed)")
    if cfg.data is not None or cfg.split != "test":
        info(
            "a cross-validation run is scored on its out-of-fold predictions (every image once); --split does not apply"
        )
    # Out-of-fold predictions are not a split: RUN/eval (or --out), whatever --split says.
    out = prepare_out(dataclasses.replace(cfg, split="test"), run)
    frame, labels, targets, probs = read_oof(run / OOF_PREDICTIONS)
    folds = frame["fold"].to_numpy()
    metrics = score(
        cfg,
        labels,
        targets,
        probs,
        frame["patient"].to_numpy(),
        what=f"out-of-fold predictions of {frame['fold'].nunique()} folds",
        run=run,
    )
    metrics.update(split="out-of-fold", cv=cv_summary(labels, targets, probs, folds))
    if cfg.shortcuts is not False:
        metrics["shortcuts"] = _cv_shortcuts(cfg, run, frame, labels, targets, folds, metrics["labels"])
    write_predictions(
        out / "predictions.csv", predictions_table({**image_keys(frame), "fold": folds}, labels, probs, targets=targets)
    )
    write_outputs(out, metrics, labels, targets, probs)
    return metrics


def _cv_shortcuts(
    cfg, run: Path, frame: pd.DataFrame, labels: list[str], targets: np.ndarray, folds: np.ndarray, model_labels: dict
) -> dict | None:
    """Cross-fitted metadata baselines, when the run's data (with metadata) is still there."""
    try:
        data = resolve_data(cfg.data, run)
    except CxrError as exc:
        if cfg.shortcuts:
            raise
        info(f"no shortcut baselines: {exc}")
        return None
    position = pd.Series(np.arange(len(data.index)), index=data.index["id"].astype(str).to_numpy())
    position = position[~position.index.duplicated()]
    found = frame["id"].astype(str).isin(position.index).to_numpy()
    if not found.all():
        message = f"{(~found).sum()} out-of-fold image id(s) are not in {data.root}/index.csv (e.g. {frame['id'][~found].iloc[0]!r})"
        if cfg.shortcuts:
            raise CxrError(f"--shortcuts: {message}; pass --data with the run's cache")
        warn(f"no shortcut baselines: {message}")
        return None
    rows = position.loc[frame["id"].astype(str)].to_numpy()
    result = cross_fitted_baselines(data.index, labels, rows, folds, targets, model_labels, cfg.bootstrap, cfg.seed)
    if result is None and cfg.shortcuts:
        warn(f"--shortcuts: {data.root} has no metadata (view, sex, age, source) that varies; no baselines")
    return result


def cv_summary(labels: list[str], targets: np.ndarray, probs: np.ndarray, folds: np.ndarray) -> dict:
    """metrics.json's "cv": per-fold AUROC per label and mean, and the mean and spread of the fold means."""
    per = fold_aurocs(targets, probs, folds)
    out = {}
    for fold, images, values, mean in zip(per.folds, per.images, per.auroc, per.fold_mean):
        out[str(fold)] = {
            "images": images,
            "mean_auroc": float(mean) if np.isfinite(mean) else None,
            "auroc": {l: (float(v) if np.isfinite(v) else None) for l, v in zip(labels, values)},
        }
    fold_mean, fold_sd = per.mean_spread()
    return {"folds": out, "fold_mean": fold_mean, "fold_sd": fold_sd}
