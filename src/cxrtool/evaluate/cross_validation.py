"""`cxrtool evaluate` on a cross-validation run: scoring its out-of-fold predictions.

A cross-validation run (`finetune --folds K`) holds `oof_predictions.csv`: every image scored
once, by the fold model that did not see its patient (columns id, patient, fold, prob_<label>,
true_<label>). The headline AUROC of each label (and of the mean) is the mean of the per-fold
AUROCs, with a t-interval over the K folds (`fold_interval`): each fold's model ranks only its own
fold's images. The pooled out-of-fold AUROC (one ranking over every image, with a patient
bootstrap interval) is kept beside it, labelled: it pools K differently calibrated models, so a
score offset between folds drags it down (per-fold 0.89, 0.86, 0.86 can pool to 0.69) although
no single model ranks worse.
Shortcut baselines are cross-fitted with the same folds (each fold scored by metadata predictors
fitted on the other folds), so the model and its baselines are compared like for like. There is
no single model here, so no thresholds are stored and `--external`/`--tta` do not apply.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import CxrError
from ..inference import predictions_table, resolve_data, write_predictions
from ..models.provenance import file_sha256
from ..progress import info, warn
from ..runs import OOF_PREDICTIONS
from ..safeio import restore_cells
from .metrics import fold_aurocs, not_estimable_reason
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
            "evaluate one fold's own run (e.g. RUN/fold-1: it scores its own held-out fold) against the external data"
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
    # The predictions' hash: report and compare tell an evaluation of an earlier CV run (evaluation_status).
    metrics.update(
        split="out-of-fold",
        oof_sha256=file_sha256(run / OOF_PREDICTIONS),
        cv=cv_summary(labels, targets, probs, folds, frame["patient"].to_numpy()),
    )
    headline_from_folds(metrics, int(frame["fold"].nunique()))
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


def fold_interval(values, level: float = 0.95) -> dict:
    """Mean of per-fold values with a t-interval over the folds: mean +- t(K-1) * SD / sqrt(K).

    The folds' models share most of their training patients, so the K values are not independent
    and no unbiased estimate of this variance exists (Bengio and Grandvalet 2004); the t-interval
    over folds is the usual approximation and tends to be too narrow rather than too wide. With
    fewer than two folds there is no interval.
    """
    finite = np.array([float(v) for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    out: dict = {"folds": len(finite), "estimate": float(finite.mean()) if len(finite) else None}
    out["sd"] = float(finite.std(ddof=1)) if len(finite) > 1 else None
    if len(finite) > 1:
        half = float(stats.t.ppf(0.5 + level / 2, len(finite) - 1)) * out["sd"] / np.sqrt(len(finite))
        out["low"], out["high"] = out["estimate"] - half, out["estimate"] + half
    return out


POOLED_NOTE = "pools the out-of-fold scores of {k} differently calibrated fold models"


def cv_summary(
    labels: list[str], targets: np.ndarray, probs: np.ndarray, folds: np.ndarray, patients: np.ndarray | None = None
) -> dict:
    """metrics.json's "cv": per-fold AUROC per label, and per label and for the mean the headline,
    the mean of the per-fold AUROCs with a t-interval over folds (`fold_interval`).

    A label is averaged over the folds where its AUROC is estimable (enough patients of each class
    in the fold, see MIN_POSITIVE_PATIENTS); the mean over labels uses, in every fold, the labels
    estimable in every fold, so each fold's mean is over the same labels.
    """
    per = fold_aurocs(targets, probs, folds)
    folds = np.asarray(folds)
    groups = None if patients is None else np.asarray(patients).astype(str)
    estimable = np.zeros(per.auroc.shape, dtype=bool)
    for i, fold in enumerate(per.folds):
        held = folds == fold
        for j in range(len(labels)):
            estimable[i, j] = np.isfinite(per.auroc[i, j]) and (
                not_estimable_reason(targets[held, j], None if groups is None else groups[held]) is None
            )
    everywhere = [j for j in range(len(labels)) if estimable[:, j].all()]
    fold_means = [float(np.mean(per.auroc[i, everywhere])) if everywhere else None for i in range(len(per.folds))]
    out = {}
    for i, (fold, images) in enumerate(zip(per.folds, per.images)):
        out[str(fold)] = {
            "images": images,
            "mean_auroc": fold_means[i],
            "auroc": {l: (float(v) if np.isfinite(v) else None) for l, v in zip(labels, per.auroc[i])},
            "not_estimable": [l for j, l in enumerate(labels) if np.isfinite(per.auroc[i, j]) and not estimable[i, j]],
        }
    by_label = {l: fold_interval(per.auroc[estimable[:, j], j]) for j, l in enumerate(labels)}
    headline = fold_interval(fold_means)
    return {
        "folds": out,
        "labels": by_label,
        "mean": {**headline, "labels": [labels[j] for j in everywhere]},
        "interval": "t-interval over folds: mean +- t(K-1) * SD / sqrt(K)",
        # Kept for readers of earlier metrics.json files: the mean and SD of the fold means.
        "fold_mean": headline["estimate"],
        "fold_sd": headline["sd"],
    }


def headline_from_folds(metrics: dict, k: int) -> None:
    """Make the mean of per-fold AUROCs each label's (and the mean's) AUROC; keep the pooled one, labelled."""
    note = POOLED_NOTE.format(k=k)
    cv = metrics["cv"]
    for label, e in metrics["labels"].items():
        if e.get("not_computable"):
            continue
        e["pooled_auroc"], e["pooled_auroc_low"], e["pooled_auroc_high"] = (
            e.get("auroc"),
            e.pop("auroc_low", None),
            e.pop("auroc_high", None),
        )
        e["pooled_note"] = note
        head = cv["labels"].get(label) or {}
        e["auroc"], e["auroc_folds"] = head.get("estimate"), head.get("folds")
        if head.get("low") is not None:
            e["auroc_low"], e["auroc_high"] = head["low"], head["high"]
        e["auroc_interval"] = "t over folds"
        if head.get("estimate") is None:
            e["not_estimable"] = e.get("not_estimable") or "not estimable in any fold"
    mean = metrics["mean"]
    mean["pooled"] = {
        "estimate": mean.get("estimate"),
        "low": mean.pop("low", None),
        "high": mean.pop("high", None),
        "skipped_replicates": mean.pop("skipped_replicates", None),
        "labels": mean.get("labels"),
        "note": note,
    }
    head = cv["mean"]
    left_out = mean.setdefault("left_out", {})
    for label in mean.get("labels") or []:
        if label not in head["labels"]:  # estimable pooled, but too few patients of a class in some fold
            n = (cv["labels"].get(label) or {}).get("folds") or 0
            left_out[label] = f"not estimable in every fold ({n} of {k})"
    mean.update(estimate=head["estimate"], labels=head["labels"], folds=head["folds"], interval="t over folds")
    if head.get("low") is not None:
        mean["low"], mean["high"] = head["low"], head["high"]
    metrics.update(mean_auroc=mean["estimate"], mean_auroc_low=mean.get("low"), mean_auroc_high=mean.get("high"))
