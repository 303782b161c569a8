"""The steps every training entry point shares: pretrain, finetune, resume and each fold.

`start_training` joins the process group and picks the device, `make_run_dir` creates (rank 0)
and shares the run directory, `train_run` writes config.yaml and manifest.json and fits, and
`finish_training` leaves the group and restores the caller's determinism setting. `select_labels`
and `check_validation` check the labels and the validation split before any epoch runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import dump_config
from ..data.cache import PreparedData
from ..data.lineage import record_training
from ..device import resolve_device
from ..errors import CxrError
from ..models.backbones import XRayClassifier
from ..progress import set_quiet, warn
from ..run_locks import new_run_dir
from ..runs import RunPaths, write_manifest
from . import distributed as dist_utils
from .config import TrainConfig
from .tensorboard import tensorboard_callbacks
from .trainer import EpochCallback, TrainPlan, fit, small_validation, small_validation_message, validation_counts


def select_labels(data: PreparedData, wanted: list[str] | None, rows: np.ndarray) -> tuple[list[str], list[int]]:
    """The labels to train on (default: all of the data's) and their columns; each must be annotated."""
    labels = list(wanted or data.labels)
    columns = data.require_labels(labels, "--labels")
    targets = data.targets(rows)[:, columns]
    for j, label in enumerate(labels):
        known = targets[~np.isnan(targets[:, j]), j]
        if len(known) == 0:
            raise CxrError(f"{data.root}: no image in the train split is annotated for {label}; drop it with --labels")
        if known.min() == known.max() and dist_utils.env_info().is_main:
            warn(
                f"every annotated training image is {'positive' if known[0] else 'negative'} for {label}: the network cannot learn it"
            )
    return labels, columns


def check_validation(
    targets: np.ndarray, labels: list[str], select: str, dinfo: dist_utils.DistInfo, announce: bool = True
) -> dict[str, Any]:
    """Warn (once) when the validation split is too small to pick an epoch reliably; for the manifest."""
    counts = validation_counts(targets, labels)
    small = small_validation(counts)
    rule = select
    if select == "auroc" and not any(min(c.values()) > 0 for c in counts.values()):
        rule = "loss"  # no label has both classes: AUROC cannot rank the epochs
        if announce and dinfo.is_main:
            warn(
                "no label has both classes in the validation split, so its AUROC is not computable: selecting by validation loss"
            )
    elif small and announce and dinfo.is_main:
        warn(small_validation_message(small, select))
    return {"rule": rule, "requested": select, "validation_counts": counts, "small_validation": sorted(small)}


def start_training(cfg: TrainConfig, kind: str) -> tuple[dist_utils.DistInfo, torch.device]:
    """Join the process group (under torchrun), pick the device, and make CPU kernels deterministic."""
    dinfo, device = dist_utils.setup(resolve_device(cfg.device))
    if not dinfo.is_main:
        set_quiet(True)  # one progress display: rank 0's
    _determinism_before.append(
        (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    )
    if device.type == "cpu":
        # Deterministic kernels cost nothing on the CPU and make resumed runs exact.
        torch.use_deterministic_algorithms(True, warn_only=True)
    return dinfo, device


_determinism_before: list[tuple[bool, bool]] = []


def make_run_dir(out: Path | None, kind: str, arch: str, dinfo: dist_utils.DistInfo, overwrite: bool = False) -> Path:
    """Rank 0 creates and locks the run directory (runs/KIND-ARCH-TIME or --out); the others are told its name."""
    run_dir = new_run_dir(kind, arch, out, overwrite=overwrite) if dinfo.is_main else None
    return Path(dist_utils.broadcast_object(dinfo, str(run_dir) if run_dir else None))


def train_run(
    cfg: TrainConfig,
    kind: str,
    data: PreparedData,
    model: XRayClassifier,
    labels: list[str],
    columns: list[int],
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    dinfo: dist_utils.DistInfo,
    device: torch.device,
    run_dir: Path,
    manifest: dict[str, Any],
    callbacks: Sequence[EpochCallback],
    announce: bool = True,
) -> dict[str, Any]:
    """Write config + manifest into `run_dir`, then fit; shared by pretrain, finetune and folds."""
    selection = check_validation(data.targets(val_rows)[:, columns], labels, cfg.select, dinfo, announce)
    cfg = dataclasses.replace(
        cfg, data=data.root.resolve(), out=run_dir.resolve(), labels=labels, select=selection["rule"]
    )
    if dinfo.is_main:
        dump_config(cfg, RunPaths(run_dir).config)
        # The images this run (and, copied from its parent, every ancestor) trains and validates on.
        lineage = record_training(run_dir, data, train_rows, val_rows, manifest.get("parent"), cfg.weights)
        write_manifest(
            run_dir,
            kind=kind,
            arch=cfg.arch,
            data=str(data.root.resolve()),
            data_hash=data.data_hash,
            labels=labels,
            seed=cfg.seed,
            weights=cfg.weights,
            selection=selection,
            train_images=len(train_rows),
            val_images=len(val_rows),
            world_size=dinfo.world_size,
            weights_load=model.weights_report,
            lineage=lineage,
            **manifest,
        )
    dist_utils.barrier(dinfo)
    card_extra = {k: manifest[k] for k in ("parent", "fold") if k in manifest}
    callbacks = tensorboard_callbacks(cfg, run_dir, data, labels, train_rows, dinfo.is_main, callbacks)
    plan = TrainPlan(
        cfg,
        run_dir,
        data,
        labels,
        columns,
        train_rows,
        val_rows,
        model,
        device,
        dinfo,
        card_extra=card_extra,
        callbacks=callbacks,
    )
    return fit(plan)


def finish_training(dinfo: dist_utils.DistInfo) -> None:
    """Leave the process group and give the caller back its determinism setting."""
    dist_utils.teardown(dinfo)
    if _determinism_before:
        enabled, warn_only = _determinism_before.pop()
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
