"""Patient cross-validation: `cxrtool finetune --folds K`.

On a small collection one split's test AUROC swings by +-0.1 between seeds, so K-fold
cross-validation scores every image exactly once with a model that never saw its patient:
- all images of the cache (train, val and test splits alike) are cut into K folds grouped by
  patient (patients sharing a file or a near-duplicate film, as listed in duplicates.csv, count
  as one) and stratified on every label: multi-label iterative stratification (data/stratify.py),
  so each finding's prevalence is about the same in every fold; missing labels are fine;
- for fold k the held-out fold is the test set; from the remaining patients a validation part
  (`--val-frac`, again grouped and stratified) picks the epoch, and the rest trains;
- each fold is a complete finetune run in `fold-k/`, started afresh from the same parent.
The top directory gets `oof_predictions.csv` (id, patient, fold, prob_<label>, true_<label>),
`cv_summary.json` and `cv_summary.csv` (AUROC per fold and label, mean and standard deviation over
folds, and the pooled out-of-fold AUROC with a patient-bootstrap 95% interval), and a manifest
with `kind: "cv"` so `evaluate` can report the out-of-fold predictions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write_json, atomic_write_text
from ..config import dump_config
from ..data.cache import DUPLICATES, PreparedData
from ..data.splits import links_from_shared_keys, patient_groups
from ..data.stratify import iterative_group_folds
from ..errors import CxrError
from ..evaluate.metrics import bootstrap_label_metrics, fold_aurocs, per_label_auroc, percentile_interval
from ..formatting import fmt
from ..inference import predict_probs
from ..models.checkpoint import load_checkpoint
from ..progress import info, print_table, result
from ..runs import OOF_PREDICTIONS as OOF
from ..runs import write_manifest
from ..safeio import csv_text, restore_cells
from . import distributed as dist_utils
from .config import FinetuneConfig
from .steps import finish_training, make_run_dir, select_labels, start_training, train_run
from .trainer import EpochCallback, small_validation, validation_counts
from .transfer import finetune_model

N_BOOT = 1000


def assign_folds(groups: np.ndarray, targets: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) per image: no group in two folds, every label's classes spread evenly."""
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise CxrError(
            f"--folds: {k} folds need at least {k} patients; the data has {n_groups} (patients sharing a film count as one)"
        )
    try:
        return iterative_group_folds(targets, groups, k, seed)
    except ValueError as exc:
        raise CxrError(f"--folds: {exc}") from None


def leakage_groups(data: PreparedData) -> np.ndarray:
    """Per cache row, the group of patients that must stay on one side of a fold: those sharing
    identical bytes or a near-duplicate radiograph (duplicates.csv), as prepare's split grouped them."""
    index = data.index
    patients = index["patient"].astype(str).tolist()
    links = []
    if "file_hash" in index.columns:
        links += links_from_shared_keys(patients, index["file_hash"].fillna("").astype(str).tolist())
    path = data.root / DUPLICATES
    if path.is_file():
        pairs = restore_cells(pd.read_csv(path, dtype=str, keep_default_na=False))
        if {"id_a", "id_b"} <= set(pairs.columns):
            patient_of = dict(zip(index["id"].astype(str), patients))
            links += [
                (patient_of[a], patient_of[b])
                for a, b in zip(pairs["id_a"], pairs["id_b"])
                if a in patient_of and b in patient_of
            ]
    return patient_groups(patients, links).astype(str)


def carve_validation(
    positions: np.ndarray, patients: np.ndarray, targets: np.ndarray, val_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `positions` into (train, validation) by patient, about `val_frac` of them validating."""
    n_splits = max(2, round(1.0 / val_frac))
    if len(np.unique(patients[positions])) < n_splits:
        raise CxrError("--folds: too few patients outside a fold to carve a validation part; use fewer --folds")
    mask = assign_folds(patients[positions], targets[positions], n_splits, seed) == 0
    return positions[~mask], positions[mask]


def fold_summary(oof: pd.DataFrame, labels: list[str], k: int, seed: int) -> dict[str, Any]:
    """AUROC per fold, its mean and spread, and the pooled out-of-fold AUROC with a patient bootstrap."""
    probs = oof[[f"prob_{l}" for l in labels]].to_numpy(float)
    trues = oof[[f"true_{l}" for l in labels]].to_numpy(float)
    per = fold_aurocs(trues, probs, oof["fold"].to_numpy(), fold_ids=range(1, k + 1))
    per_fold = [
        {"fold": f, "images": n, **{l: float(a) for l, a in zip(labels, auc)}, "mean": float(mean)}
        for f, n, auc, mean in zip(per.folds, per.images, per.auroc, per.fold_mean)
    ]
    spread = {**{l: per.label_spread(j) for j, l in enumerate(labels)}, "mean": per.mean_spread()}
    pooled = per_label_auroc(trues, probs)
    boot = bootstrap_label_metrics(trues, probs, groups=oof["patient"].to_numpy(), n_boot=N_BOOT, seed=seed)["auroc"]
    computable = [j for j in range(len(labels)) if np.isfinite(pooled[j])]
    pooled_entry: dict[str, Any] = {}
    for j, label in enumerate(labels):
        low, high = percentile_interval(boot[:, j])
        pooled_entry[label] = {"auroc": float(pooled[j]), "low": low, "high": high}
    if computable:
        reps = boot[:, computable]
        low, high = percentile_interval(reps[np.isfinite(reps).all(axis=1)].mean(axis=1))
        pooled_entry["mean"] = {"auroc": float(np.mean(pooled[computable])), "low": low, "high": high}
    return {
        "folds": k,
        "per_fold": per_fold,
        "fold_mean": {c: _nan_if_none(m) for c, (m, _) in spread.items()},
        "fold_std": {c: _nan_if_none(sd) for c, (_, sd) in spread.items()},
        "pooled_oof": pooled_entry,
        "bootstrap": {"unit": "patient", "replicates": N_BOOT, "level": 0.95},
    }


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def _summary_csv(summary: dict[str, Any], labels: list[str]) -> str:
    rows = [{"fold": str(r["fold"]), **{l: r[l] for l in [*labels, "mean"]}} for r in summary["per_fold"]]
    rows.append({"fold": "mean", **summary["fold_mean"]})
    rows.append({"fold": "std", **summary["fold_std"]})
    pooled = summary["pooled_oof"]
    rows.append({"fold": "pooled", **{l: pooled.get(l, {}).get("auroc") for l in [*labels, "mean"]}})
    rows.append({"fold": "pooled_low", **{l: pooled.get(l, {}).get("low") for l in [*labels, "mean"]}})
    rows.append({"fold": "pooled_high", **{l: pooled.get(l, {}).get("high") for l in [*labels, "mean"]}})
    return csv_text(pd.DataFrame(rows), index=False, float_format="%.4f")


def cross_validate(cfg: FinetuneConfig, callbacks: Sequence[EpochCallback] = ()) -> Path:
    """K patient-grouped folds, one finetune run each; returns the top cross-validation directory."""
    dinfo, device = start_training(cfg, "cv")
    try:
        data = PreparedData(cfg.data)
        rows = data.rows("all")
        labels, columns = select_labels(data, cfg.labels, rows)
        targets = data.targets(rows)[:, columns]
        patients = data.index["patient"].to_numpy().astype(str)[rows]
        # Folds are cut by patient group: a film filed under two patients must not train one fold's
        # model and be held out to score it.
        groups = leakage_groups(data)[rows]
        fold_of = assign_folds(groups, targets, cfg.folds, cfg.seed)
        _, resolved, parent = finetune_model(cfg, labels)  # resolves arch, image size and parent once
        root = make_run_dir(cfg.out, "cv", resolved.arch, dinfo)
        common = dict(
            kind="cv",
            arch=resolved.arch,
            data=str(data.root.resolve()),
            data_hash=data.data_hash,
            labels=labels,
            seed=cfg.seed,
            parent=str(parent) if parent else None,
            folds=cfg.folds,
            fold_runs=[f"fold-{k}" for k in range(1, cfg.folds + 1)],
            oof_predictions=OOF,
            images=len(rows),
            patients=len(np.unique(patients)),
            scheme="all images; held-out fold = test; validation carved by patient from the rest",
        )
        if dinfo.is_main:
            dump_config(dataclasses.replace(resolved, out=root, labels=labels), root / "config.yaml")
            write_manifest(root, **common, complete=False)
        warned = False
        oof_parts = []
        for k in range(1, cfg.folds + 1):
            held = np.flatnonzero(fold_of == k - 1)
            train_pos, val_pos = carve_validation(
                np.flatnonzero(fold_of != k - 1), groups, targets, cfg.val_frac, cfg.seed + k
            )
            if dinfo.is_main:
                info(
                    f"fold {k}/{cfg.folds}: {len(train_pos)} training, {len(val_pos)} validation, {len(held)} held-out images"
                )
            model, fold_cfg, _ = finetune_model(cfg, labels)
            fold_dir = root / f"fold-{k}"
            if dinfo.is_main:
                fold_dir.mkdir(parents=True, exist_ok=True)
            small = bool(small_validation(validation_counts(targets[val_pos], labels)))
            train_run(
                dataclasses.replace(fold_cfg, folds=0),
                "finetune",
                data,
                model,
                labels,
                columns,
                rows[train_pos],
                rows[val_pos],
                dinfo,
                device,
                fold_dir,
                {
                    "parent": str(parent) if parent else None,
                    "fold": k,
                    "folds": cfg.folds,
                    "cv_run": str(root.resolve()),
                    "test_images": len(held),
                },
                callbacks,
                announce=not warned,
            )
            warned = warned or small
            if dinfo.is_main:
                best, _card = load_checkpoint(fold_dir, "best", device=device)
                probs = predict_probs(
                    best,
                    data,
                    rows[held],
                    fold_cfg.image_size,
                    batch_size=cfg.batch_size * 2,
                    device=device,
                    description=f"fold {k} held-out",
                )
                part = pd.DataFrame(
                    {"id": data.index["id"].to_numpy()[rows[held]], "patient": patients[held], "fold": k}
                )
                for j, label in enumerate(labels):
                    part[f"prob_{label}"] = probs[:, j]
                for j, label in enumerate(labels):
                    part[f"true_{label}"] = targets[held, j]
                oof_parts.append(part)
                del best
            dist_utils.barrier(dinfo)
        if dinfo.is_main:
            oof = pd.concat(oof_parts, ignore_index=True)
            atomic_write_text(root / OOF, csv_text(oof, index=False, float_format="%.6g"))
            summary = fold_summary(oof, labels, cfg.folds, cfg.seed)
            atomic_write_json(root / "cv_summary.json", summary)
            atomic_write_text(root / "cv_summary.csv", _summary_csv(summary, labels))
            write_manifest(root, **common, complete=True, summary=summary)
            _print_summary(root, summary, labels)
        return root
    finally:
        finish_training(dinfo)


def _print_summary(root: Path, summary: dict[str, Any], labels: list[str]) -> None:
    na = "n/a"  # a fold where the label has one class only
    rows = [[r["fold"], r["images"], *[fmt(r[l], missing=na) for l in labels]] for r in summary["per_fold"]]
    rows.append(
        [
            "mean ± std",
            "",
            *[
                f"{fmt(summary['fold_mean'][l], missing=na)} ± {fmt(summary['fold_std'][l], missing=na)}"
                for l in labels
            ],
        ]
    )
    pooled = summary["pooled_oof"]
    rows.append(
        [
            "pooled OOF (95% CI)",
            "",
            *[
                f"{fmt(pooled[l]['auroc'], missing=na)} ({fmt(pooled[l]['low'], missing=na)}-{fmt(pooled[l]['high'], missing=na)})"
                for l in labels
            ],
        ]
    )
    print_table("cross-validation AUROC (held-out folds)", ["fold", "images", *labels], rows)
    result(f"run: {root}")
