"""The library calls behind `cxrtool pretrain` and `cxrtool finetune`.

`pretrain(cfg)` builds a network (ImageNet, a weights file, or random), `finetune(cfg)` takes
one from a parent run or checkpoint and gives it a head for the data's labels (rows of labels
the parent already knew are carried over), and `resume(run)` continues either from its
`checkpoints/last`. Each creates or reuses a run directory, writes `config.yaml` (the resolved
options, readable back with `--config`) and `manifest.json` (kind, arch, data folder and hash,
seed, parent, selection rule, versions), then hands a `TrainPlan` to `trainer.fit`. These steps,
shared with each cross-validation fold, are in train/steps.py, and the starting network of a
finetune in train/transfer.py. Under torchrun only rank 0 creates and writes files; the others
learn the run directory from it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..atomic import atomic_write_json
from ..config import build_config, dump_config
from ..data.cache import PreparedData
from ..errors import CxrError
from ..models.backbones import XRayClassifier
from ..models.checkpoint import load_checkpoint, load_state, resolve_checkpoint
from ..models.registry import create_model
from ..progress import info, result
from ..run_locks import holds_locks, lock_run
from ..runs import DEFAULT_RUNS_ROOT, RunPaths, is_run_dir, read_manifest, resolve_run
from .config import FinetuneConfig, TrainConfig
from .curves import read_metrics
from .folds import cross_validate
from .resume_options import check_resume_options
from .seeds import train_seeds
from .steps import finish_training, make_run_dir, select_labels, start_training, train_run
from .tensorboard import tensorboard_callbacks
from .trainer import EpochCallback, TrainPlan, fit
from .transfer import finetune_model

# The config class an entry point takes: its model starter is handed the same class back.
C = TypeVar("C", bound=TrainConfig)


def _report(run_dir: Path, summary: dict[str, Any]) -> None:
    best = summary.get("best") or {}
    result(f"run: {run_dir}")
    if best:
        result(
            f"best epoch {best['epoch']} (by {summary['select']}): val loss {best['val_loss']:.4f}, "
            f"val AUROC {best['val_auroc_mean']:.3f}"
        )


@holds_locks
def pretrain(cfg: TrainConfig, callbacks: Sequence[EpochCallback] = (), overwrite: bool = False) -> Path:
    """Train `cfg.arch` on the data's train split; returns the run directory (`overwrite`: replace a finished run)."""
    return _train_new_run(cfg, "pretrain", _new_model, callbacks, overwrite)


@holds_locks
def finetune(cfg: FinetuneConfig, callbacks: Sequence[EpochCallback] = (), overwrite: bool = False) -> Path:
    """Transfer a parent network to the data's labels (or cross-validate with cfg.folds, or train
    once per seed with cfg.seeds); returns the run."""
    if cfg.folds:
        return cross_validate(cfg, callbacks)
    if cfg.seeds > 1:
        return train_seeds(
            cfg, lambda one: _train_new_run(one, "finetune", _transferred_model, callbacks, overwrite), overwrite
        )
    return _train_new_run(cfg, "finetune", _transferred_model, callbacks, overwrite)


def _new_model(cfg: TrainConfig, labels: list[str]) -> tuple[XRayClassifier, TrainConfig, dict[str, Any]]:
    """A pretrain's starting network (ImageNet, a weights file, or random, seeded); it has no parent."""
    torch.manual_seed(cfg.seed)
    return create_model(cfg.arch, len(labels), cfg.weights, cfg.allow_partial), cfg, {"parent": None}


def _transferred_model(cfg: FinetuneConfig, labels: list[str]) -> tuple[XRayClassifier, FinetuneConfig, dict[str, Any]]:
    """A finetune's starting network and its config with arch/image size resolved from the parent."""
    model, resolved, parent = finetune_model(cfg, labels)
    return model, resolved, {"parent": str(parent) if parent else None}


def _train_new_run(
    cfg: C,
    kind: str,
    start_model: Callable[[C, list[str]], tuple[XRayClassifier, C, dict[str, Any]]],
    callbacks: Sequence[EpochCallback],
    overwrite: bool,
) -> Path:
    """Train a new `kind` run on the data's train split and report it; returns the run directory.

    Only the starting network differs between pretrain and finetune: `start_model(cfg, labels)`
    gives it, the config with whatever it resolved, and the manifest's extra fields (the parent).
    """
    dinfo, device = start_training(cfg, kind)
    try:
        data = PreparedData(cfg.data)
        train_rows, val_rows = data.require_rows("train"), data.require_rows("val")
        labels, columns = select_labels(data, cfg.labels, train_rows)
        model, resolved, manifest = start_model(cfg, labels)
        run_dir = make_run_dir(resolved.out, kind, resolved.arch, dinfo, overwrite)
        summary = train_run(
            resolved,
            kind,
            data,
            model,
            labels,
            columns,
            train_rows,
            val_rows,
            dinfo,
            device,
            run_dir,
            manifest,
            callbacks,
        )
        if dinfo.is_main:
            _report(run_dir, summary)
        return run_dir
    finally:
        finish_training(dinfo)


@holds_locks
def resume(
    run: Path | None = None,
    kind: str = "pretrain",
    epochs: int | None = None,
    workers: int | None = None,
    device: str | None = None,
    callbacks: Sequence[EpochCallback] = (),
    given: dict[str, Any] | None = None,
) -> Path:
    """Continue an interrupted run from its checkpoints/last (optionally for more `epochs`).

    `given`: the other options the user passed with --resume (field name -> value); each must
    equal the run's config.yaml, else one line names those that differ (train/resume_options.py).
    """
    run_dir = resolve_run(Path(run) if run is not None else _newest(kind))
    lock_run(run_dir)  # one writer at a time; dies with the process
    paths = RunPaths(run_dir)
    manifest = read_manifest(run_dir)
    if manifest.get("kind") == "cv" or "fold" in manifest:
        raise CxrError(f"{run_dir}: resuming a cross-validation run is not supported; start it again")
    if manifest.get("kind") == "seeds":
        raise CxrError(f"{run_dir}: resume one of its seed runs (e.g. {run_dir / 'seed-1'}), or start it again")
    cls = FinetuneConfig if manifest.get("kind") == "finetune" else TrainConfig
    if not paths.config.is_file():
        raise CxrError(f"{run_dir}: no config.yaml to resume from")
    if given:
        check_resume_options(run_dir, paths.config, given, manifest, {f.name for f in dataclasses.fields(cls)})
    last = resolve_checkpoint(run_dir, "last")
    state = load_state(last)
    # The parent's weights are already in checkpoints/last: do not ask for them again.
    cfg = build_config(
        cls,
        paths.config,
        epochs=epochs,
        workers=workers,
        device=device,
        **({"parent": "none", "weights": "none"} if cls is FinetuneConfig else {"weights": "none"}),
    )
    data = PreparedData(cfg.data)
    if data.data_hash != manifest.get("data_hash"):
        raise CxrError(
            f"{run_dir}: its data {cfg.data} changed since the run started "
            f"(hash {data.data_hash} != {manifest.get('data_hash')}); start a new run"
        )
    dinfo, dev = start_training(cfg, str(manifest.get("kind")))
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
            atomic_write_json(
                paths.manifest,
                {"created": manifest.get("created"), **fields, "environment": manifest.get("environment")},
            )
        plan = TrainPlan(
            dataclasses.replace(cfg, labels=labels),
            run_dir,
            data,
            labels,
            columns,
            data.require_rows("train"),
            data.require_rows("val"),
            model,
            dev,
            dinfo,
            card_extra={k: manifest[k] for k in ("parent",) if k in manifest},
            state=state,
            history=history,
            callbacks=tensorboard_callbacks(cfg, run_dir, data, labels, [], dinfo.is_main, callbacks, grid=False),
        )
        summary = fit(plan)
        if dinfo.is_main:
            _report(run_dir, summary)
        return run_dir
    finally:
        finish_training(dinfo)


def _newest(kind: str) -> Path:
    """The newest run of `kind` under ./runs (what a bare `--resume` continues)."""
    root = DEFAULT_RUNS_ROOT
    runs = [p for p in root.glob(f"{kind}-*") if is_run_dir(p)] if root.is_dir() else []
    if not runs:
        raise CxrError(f"--resume: no {kind} run under {root}/ to continue; give the run directory")
    found = max(runs, key=lambda p: (p / "manifest.json").stat().st_mtime)
    info(f"resuming the newest {kind} run: {found}")
    return found
