"""The library calls behind `cxrtool pretrain` and `cxrtool finetune`.

`pretrain(cfg)` builds a network (ImageNet, a weights file, or random), `finetune(cfg)` takes
one from a parent run or checkpoint and gives it a head for the data's labels (rows of labels
the parent already knew are carried over), and `resume(run)` continues either from its
`checkpoints/last`. Each creates or reuses a run directory, writes `config.yaml` (the resolved
options, readable back with `--config`) and `manifest.json` (kind, arch, data folder and hash,
seed, parent, selection rule, versions), then hands a `TrainPlan` to `trainer.fit`.
Under torchrun only rank 0 creates and writes files; the others learn the run directory from it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import build_config, dump_config
from ..data.cache import PreparedData
from ..device import resolve_device
from ..errors import CxrError
from ..models.backbones import XRayClassifier
from ..models.checkpoint import CARD, apply_input_convention, load_checkpoint, load_state, read_card, resolve_checkpoint
from ..models.registry import create_model, read_state_dict
from ..models.weights import load_body_weights
from ..progress import info, result, set_quiet, warn
from ..runs import (RunPaths, atomic_write_json, holds_locks, lock_run, new_run_dir, read_manifest, resolve_run,
                    write_manifest)
from . import distributed as dist_utils
from .config import FinetuneConfig, TrainConfig
from .curves import read_metrics
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
            warn(f"every annotated training image is {'positive' if known[0] else 'negative'} for {label}: the network cannot learn it")
    return labels, columns


def check_validation(targets: np.ndarray, labels: list[str], select: str, dinfo: dist_utils.DistInfo,
                     announce: bool = True) -> dict[str, Any]:
    """Warn (once) when the validation split is too small to pick an epoch reliably; for the manifest."""
    counts = validation_counts(targets, labels)
    small = small_validation(counts)
    rule = select
    if select == "auroc" and not any(min(c.values()) > 0 for c in counts.values()):
        rule = "loss"  # no label has both classes: AUROC cannot rank the epochs
        if announce and dinfo.is_main:
            warn("no label has both classes in the validation split, so its AUROC is not computable: selecting by validation loss")
    elif small and announce and dinfo.is_main:
        warn(small_validation_message(small, select))
    return {"rule": rule, "requested": select, "validation_counts": counts, "small_validation": sorted(small)}


def _start(cfg: TrainConfig, kind: str) -> tuple[dist_utils.DistInfo, torch.device]:
    dinfo, device = dist_utils.setup(resolve_device(cfg.device))
    if not dinfo.is_main:
        set_quiet(True)  # one progress display: rank 0's
    _determinism_before.append((torch.are_deterministic_algorithms_enabled(),
                                torch.is_deterministic_algorithms_warn_only_enabled()))
    if device.type == "cpu":
        # Deterministic kernels cost nothing on the CPU and make resumed runs exact.
        torch.use_deterministic_algorithms(True, warn_only=True)
    return dinfo, device


_determinism_before: list[tuple[bool, bool]] = []


def _make_run_dir(out: Path | None, kind: str, arch: str, dinfo: dist_utils.DistInfo, overwrite: bool = False) -> Path:
    """Rank 0 creates and locks the run directory (runs/KIND-ARCH-TIME or --out); the others are told its name."""
    run_dir = new_run_dir(kind, arch, out, overwrite=overwrite) if dinfo.is_main else None
    return Path(dist_utils.broadcast_object(dinfo, str(run_dir) if run_dir else None))


def _train(cfg: TrainConfig, kind: str, data: PreparedData, model: XRayClassifier, labels: list[str],
           columns: list[int], train_rows: np.ndarray, val_rows: np.ndarray, dinfo: dist_utils.DistInfo,
           device: torch.device, run_dir: Path, manifest: dict[str, Any], callbacks: Sequence[EpochCallback],
           announce: bool = True) -> dict[str, Any]:
    """Write config + manifest into `run_dir`, then fit; shared by pretrain, finetune and folds."""
    selection = check_validation(data.targets(val_rows)[:, columns], labels, cfg.select, dinfo, announce)
    cfg = dataclasses.replace(cfg, data=data.root.resolve(), out=run_dir.resolve(), labels=labels, select=selection["rule"])
    if dinfo.is_main:
        dump_config(cfg, RunPaths(run_dir).config)
        write_manifest(run_dir, kind=kind, arch=cfg.arch, data=str(data.root.resolve()), data_hash=data.data_hash,
                       labels=labels, seed=cfg.seed, weights=cfg.weights, selection=selection,
                       train_images=len(train_rows), val_images=len(val_rows), world_size=dinfo.world_size,
                       weights_load=model.weights_report, **manifest)
    dist_utils.barrier(dinfo)
    card_extra = {k: manifest[k] for k in ("parent", "fold") if k in manifest}
    callbacks = tensorboard_callbacks(cfg, run_dir, data, labels, train_rows, dinfo.is_main, callbacks)
    plan = TrainPlan(cfg, run_dir, data, labels, columns, train_rows, val_rows, model, device, dinfo,
                     card_extra=card_extra, callbacks=callbacks)
    return fit(plan)


def _report(run_dir: Path, summary: dict[str, Any]) -> None:
    best = summary.get("best") or {}
    result(f"run: {run_dir}")
    if best:
        result(f"best epoch {best['epoch']} (by {summary['select']}): val loss {best['val_loss']:.4f}, "
               f"val AUROC {best['val_auroc_mean']:.3f}")


def _finish(dinfo: dist_utils.DistInfo) -> None:
    """Leave the process group and give the caller back its determinism setting."""
    dist_utils.teardown(dinfo)
    if _determinism_before:
        enabled, warn_only = _determinism_before.pop()
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@holds_locks
def pretrain(cfg: TrainConfig, callbacks: Sequence[EpochCallback] = (), overwrite: bool = False) -> Path:
    """Train `cfg.arch` on the data's train split; returns the run directory (`overwrite`: replace a finished run)."""
    dinfo, device = _start(cfg, "pretrain")
    try:
        data = PreparedData(cfg.data)
        train_rows, val_rows = data.require_rows("train"), data.require_rows("val")
        labels, columns = select_labels(data, cfg.labels, train_rows)
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.arch, len(labels), cfg.weights, cfg.allow_partial)
        run_dir = _make_run_dir(cfg.out, "pretrain", cfg.arch, dinfo, overwrite)
        summary = _train(cfg, "pretrain", data, model, labels, columns, train_rows, val_rows, dinfo, device,
                         run_dir, {"parent": None}, callbacks)
        if dinfo.is_main:
            _report(run_dir, summary)
        return run_dir
    finally:
        _finish(dinfo)


def resolve_parent(parent: str | None) -> Path | None:
    """--from: None -> the newest run under ./runs; 'none' -> no parent; else a run or checkpoint."""
    if parent == "none":
        return None
    if parent is None:
        return resolve_checkpoint(resolve_run(None), "best")
    path = Path(parent)
    if not path.exists():
        raise CxrError(f"--from: {parent}: no such run or checkpoint (give a run directory, a checkpoint folder, or none)")
    try:
        return resolve_checkpoint(path, "best")
    except CxrError as exc:
        raise CxrError(f"--from: {exc}") from None


def transfer_model(checkpoint: Path, labels: list[str], seed: int,
                   allow_partial: bool = False) -> tuple[XRayClassifier, dict[str, Any]]:
    """The parent's network with a head for `labels`; head rows of labels it already had are kept.

    The parent's body goes through the same matching as any weights file (counted, and refused
    when partial unless `allow_partial`); its head may differ, since the labels do.
    """
    card = read_card(checkpoint)
    model = create_model(card["arch"], int(card["num_labels"]), "none")
    apply_input_convention(model, card, checkpoint / CARD)  # e.g. an imported one-channel network
    state = read_state_dict(checkpoint)
    model.weights_report = load_body_weights(model, state, f"--from {checkpoint}", allow_partial).manifest()
    old_labels = list(card["labels"])
    old_weight, old_bias = state.get("head.weight"), state.get("head.bias")
    torch.manual_seed(seed)
    model.reset_head(len(labels))
    fits = old_weight is not None and old_bias is not None and old_weight.shape[1:] == model.head.weight.shape[1:]
    with torch.no_grad():
        for j, label in enumerate(labels):
            if fits and label in old_labels and old_labels.index(label) < len(old_weight):
                k = old_labels.index(label)
                model.head.weight[j].copy_(old_weight[k])
                model.head.bias[j].copy_(old_bias[k])
    return model.train(), card


def finetune_model(cfg: FinetuneConfig, labels: list[str]) -> tuple[XRayClassifier, FinetuneConfig, Path | None]:
    """The starting network for finetune and the config with arch/image size/parent resolved."""
    checkpoint = resolve_parent(cfg.parent)
    if checkpoint is None:
        arch = cfg.arch or "densenet121"
        torch.manual_seed(cfg.seed)
        model = create_model(arch, len(labels), cfg.weights, cfg.allow_partial)
        return model, dataclasses.replace(cfg, arch=arch, parent="none", image_size=cfg.image_size or 224), None
    card = read_card(checkpoint)
    if cfg.arch is not None and cfg.arch != card["arch"]:
        raise CxrError(f"--arch: the parent {checkpoint} is a {card['arch']}; --arch applies only with --from none")
    model, card = transfer_model(checkpoint, labels, cfg.seed, cfg.allow_partial)
    resolved = dataclasses.replace(cfg, arch=card["arch"], parent=str(checkpoint.resolve()),
                                   image_size=cfg.image_size or int(card.get("image_size", 224)))
    return model, resolved, checkpoint.resolve()


@holds_locks
def finetune(cfg: FinetuneConfig, callbacks: Sequence[EpochCallback] = (), overwrite: bool = False) -> Path:
    """Transfer a parent network to the data's labels (or cross-validate with cfg.folds); returns the run."""
    if cfg.folds:
        from .folds import cross_validate

        return cross_validate(cfg, callbacks)
    dinfo, device = _start(cfg, "finetune")
    try:
        data = PreparedData(cfg.data)
        train_rows, val_rows = data.require_rows("train"), data.require_rows("val")
        labels, columns = select_labels(data, cfg.labels, train_rows)
        model, cfg, parent = finetune_model(cfg, labels)
        run_dir = _make_run_dir(cfg.out, "finetune", cfg.arch, dinfo, overwrite)
        summary = _train(cfg, "finetune", data, model, labels, columns, train_rows, val_rows, dinfo, device, run_dir,
                         {"parent": str(parent) if parent else None}, callbacks)
        if dinfo.is_main:
            _report(run_dir, summary)
        return run_dir
    finally:
        _finish(dinfo)


@holds_locks
def resume(run: Path | None = None, kind: str = "pretrain", epochs: int | None = None, workers: int | None = None,
           device: str | None = None, callbacks: Sequence[EpochCallback] = ()) -> Path:
    """Continue an interrupted run from its checkpoints/last (optionally for more `epochs`)."""
    run_dir = resolve_run(Path(run) if run is not None else _newest(kind))
    lock_run(run_dir)  # one writer at a time; dies with the process
    paths = RunPaths(run_dir)
    manifest = read_manifest(run_dir)
    if manifest.get("kind") == "cv" or "fold" in manifest:
        raise CxrError(f"{run_dir}: resuming a cross-validation run is not supported; start it again")
    cls = FinetuneConfig if manifest.get("kind") == "finetune" else TrainConfig
    if not paths.config.is_file():
        raise CxrError(f"{run_dir}: no config.yaml to resume from")
    last = resolve_checkpoint(run_dir, "last")
    state = load_state(last)
    # The parent's weights are already in checkpoints/last: do not ask for them again.
    cfg = build_config(cls, paths.config, epochs=epochs, workers=workers, device=device,
                       **({"parent": "none", "weights": "none"} if cls is FinetuneConfig else {"weights": "none"}))
    data = PreparedData(cfg.data)
    if data.data_hash != manifest.get("data_hash"):
        raise CxrError(f"{run_dir}: its data {cfg.data} changed since the run started (hash {data.data_hash} != {manifest.get('data_hash')}); start a new run")
    dinfo, dev = _start(cfg, str(manifest.get("kind")))
    try:
        labels = list(manifest.get("labels") or cfg.labels or data.labels)
        columns = data.require_labels(labels, "the run")
        model, _card = load_checkpoint(last)
        history = [r for r in read_metrics(paths.metrics).to_dict("records") if int(r["epoch"]) <= int(state["epoch"])]
        if dinfo.is_main:
            info(f"resuming {run_dir} after epoch {state['epoch']}")
            fields = {k: v for k, v in manifest.items() if k not in ("created", "environment")}
            fields["resumed"] = [*manifest.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
            if epochs is not None:
                dump_config(dataclasses.replace(build_config(cls, paths.config), epochs=cfg.epochs), paths.config)
            atomic_write_json(paths.manifest, {"created": manifest.get("created"), **fields,
                                               "environment": manifest.get("environment")})
        plan = TrainPlan(dataclasses.replace(cfg, labels=labels), run_dir, data, labels, columns,
                         data.require_rows("train"), data.require_rows("val"), model, dev, dinfo,
                         card_extra={k: manifest[k] for k in ("parent",) if k in manifest}, state=state,
                         history=history, callbacks=tensorboard_callbacks(cfg, run_dir, data, labels, [], dinfo.is_main,
                                                                          callbacks, grid=False))
        summary = fit(plan)
        if dinfo.is_main:
            _report(run_dir, summary)
        return run_dir
    finally:
        _finish(dinfo)


def _newest(kind: str) -> Path:
    """The newest run of `kind` under ./runs (what a bare `--resume` continues)."""
    from ..runs import DEFAULT_RUNS_ROOT, is_run_dir

    root = DEFAULT_RUNS_ROOT
    runs = [p for p in root.glob(f"{kind}-*") if is_run_dir(p)] if root.is_dir() else []
    if not runs:
        raise CxrError(f"--resume: no {kind} run under {root}/ to continue; give the run directory")
    found = max(runs, key=lambda p: (p / "manifest.json").stat().st_mtime)
    info(f"resuming the newest {kind} run: {found}")
    return found
