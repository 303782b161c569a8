"""The epoch loop shared by pretrain, finetune and each cross-validation fold.

`fit(plan)` trains `plan.model` on `plan.train_rows`, validates on `plan.val_rows` after each
epoch, and keeps the run directory current: `metrics.csv`, `curves.png`, `checkpoints/last`
(weights plus optimiser, scheduler and counters, so `--resume` continues exactly) and
`checkpoints/best` (the epoch chosen by `--select`). Everything random is drawn from generators
seeded by (seed, epoch), so an epoch's batches, augmentations and dropout masks do not depend on
whether the run was interrupted before it. A non-finite loss stops the run with one line naming
the epoch and step; the checkpoint of the last finished epoch is left untouched.

A training step never waits on the host: the augmentation draws its parameters on the device,
the loss is summed on the device, and the first non-finite step is recorded there too. The host
reads them (one synchronisation, plus one all-reduce under torchrun) every `READ_EVERY` steps
and at the end of the epoch; the progress bar advances by batch and shows the loss when read.
Validation runs through the inference engine (`cxrtool.inference`), as evaluate does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..data.augment import augment_batch
from ..data.cache import PreparedData
from ..data.dataset import CacheDataset, collate_batch
from ..data.pool import default_workers
from ..data.tensors import to_model_input
from ..device import amp_dtype as device_amp_dtype
from ..device import fast_paths
from ..errors import CxrError
from ..evaluate.metrics import per_label_auroc
from ..inference import InferenceEngine
from ..models.checkpoint import model_card, save_checkpoint
from ..progress import info, progress_bar
from ..runs import RunPaths
from . import distributed as dist_utils
from .config import SMALL_VALIDATION, TrainConfig
from .curves import plot_curves, write_metrics
from .losses import masked_bce, per_image_bce
from .samplers import SeededBatchSampler, balancing_weights, epoch_seed

EpochCallback = Callable[[int, dict], None]
PLOT_EVERY_S = 60.0
READ_EVERY = 50  # steps between reads of the device-side loss (and the non-finite check)


class NonFiniteLoss(CxrError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainPlan:
    """What one `fit` call trains: the model, the rows, where to write, and how to resume."""

    cfg: TrainConfig
    run_dir: Path
    data: PreparedData
    labels: list[str]
    label_columns: list[int]
    train_rows: np.ndarray
    val_rows: np.ndarray
    model: torch.nn.Module
    device: torch.device
    dist: dist_utils.DistInfo = field(default_factory=dist_utils.DistInfo)
    card_extra: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None  # loaded from checkpoints/last when resuming
    history: list[dict] = field(default_factory=list)  # metrics rows of finished epochs
    callbacks: Sequence[EpochCallback] = ()


def validation_counts(targets: np.ndarray, labels: list[str]) -> dict[str, dict[str, int]]:
    """Positives and negatives per label among annotated validation images."""
    out = {}
    for j, label in enumerate(labels):
        y = targets[:, j]
        y = y[~np.isnan(y)]
        out[label] = {"positive": int((y >= 0.5).sum()), "negative": int((y < 0.5).sum())}
    return out


def small_validation(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The labels whose validation split has fewer than SMALL_VALIDATION of either class."""
    return {l: c for l, c in counts.items() if min(c["positive"], c["negative"]) < SMALL_VALIDATION}


def small_validation_message(small: dict[str, dict[str, int]], select: str) -> str:
    label, c = min(small.items(), key=lambda kv: min(kv[1].values()))
    cls = "positive" if c["positive"] <= c["negative"] else "negative"
    more = f" (and {len(small) - 1} more label(s))" if len(small) > 1 else ""
    advice = (
        "choosing the best epoch on it is noisy; consider --select last"
        if select != "last"
        else "keeping the last epoch (--select last)"
    )
    return f"the validation split has only {c[cls]} {cls} image(s) of {label}{more}, fewer than {SMALL_VALIDATION}: {advice}"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _set_train_mode(model: torch.nn.Module, freeze_backbone: bool) -> None:
    model.train()
    if freeze_backbone:  # frozen means frozen: batch-norm statistics stay as they were too
        _unwrap(model).body.eval()


@torch.no_grad()
def evaluate_rows(
    engine: InferenceEngine, dataset: CacheDataset, positions: np.ndarray, batch_size: int, workers: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, targets, per-image losses) for dataset positions, in the order given."""
    probs, targets, losses = [], [], []
    for batch in engine.batches(dataset, batch_size, positions=positions, workers=workers):
        logits = engine.forward(batch.x, "logits")
        y = batch.extra[0].to(engine.device, non_blocking=True)
        probs.append(torch.sigmoid(logits).cpu().numpy())
        losses.append(per_image_bce(logits, y).cpu().numpy())
        targets.append(y.cpu().numpy())
    n_labels = dataset.targets.shape[1]
    if not probs:
        return np.zeros((0, n_labels), np.float32), np.zeros((0, n_labels), np.float32), np.zeros(0, np.float32)
    return np.concatenate(probs), np.concatenate(targets), np.concatenate(losses)


def _selection_score(select: str, row: dict) -> float:
    """Higher is better; NaN means 'not computable this epoch'."""
    if select == "auroc":
        return row["val_auroc_mean"]
    return -row["val_loss"]


def fit(plan: TrainPlan) -> dict[str, Any]:
    """Train for the planned epochs (or until early stopping); returns a summary of the run."""
    cfg, device, dinfo = plan.cfg, plan.device, plan.dist
    paths = RunPaths(plan.run_dir)
    model = plan.model.to(device)
    amp, channels_last = fast_paths(device)
    amp_dtype = device_amp_dtype(device) if amp else None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.freeze_backbone:
        for p in model.body.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    net: torch.nn.Module = model
    if dinfo.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.1, patience=cfg.plateau_patience
    )
    # Only float16 needs loss scaling (cards without bfloat16); its inf check does read the device each step.
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    train_set = CacheDataset(plan.data, plan.train_rows, plan.label_columns)
    val_set = CacheDataset(plan.data, plan.val_rows, plan.label_columns)
    weights = balancing_weights(train_set.targets) if cfg.oversample else None
    sampler = SeededBatchSampler(
        len(train_set),
        cfg.batch_size,
        cfg.seed,
        shuffle=True,
        weights=weights,
        rank=dinfo.rank,
        world_size=dinfo.world_size,
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        collate_fn=collate_batch,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )
    val_positions = np.arange(len(val_set))[dinfo.rank :: dinfo.world_size]
    val_engine = InferenceEngine(model, device, cfg.image_size, prepare=False)  # the model is placed above
    val_workers = min(cfg.workers, default_workers("read", device.type))

    # Counters that --resume restores.
    start_epoch, best_score, best_epoch, monitor_best, bad_epochs = 1, -math.inf, 0, math.inf, 0
    history = list(plan.history)
    if plan.state is not None:
        optimizer.load_state_dict(plan.state["optimizer"])
        scheduler.load_state_dict(plan.state["scheduler"])
        if plan.state.get("scaler"):
            scaler.load_state_dict(plan.state["scaler"])
        start_epoch = int(plan.state["epoch"]) + 1
        best_score, best_epoch = float(plan.state["best_score"]), int(plan.state["best_epoch"])
        monitor_best, bad_epochs = float(plan.state["monitor_best"]), int(plan.state["bad_epochs"])
        if plan.state.get("stopped_early"):
            start_epoch = cfg.epochs + 1
    stopped_early = bool(plan.state and plan.state.get("stopped_early"))

    def checkpoint_card(epoch: int, row: dict) -> dict:
        metrics = {k: v for k, v in row.items() if k.startswith("val_")}
        return model_card(
            model,
            plan.labels,
            cfg.image_size,
            plan.data.size,
            data_hash=plan.data.data_hash,
            data_dir=str(Path(plan.data.root).resolve()),
            epoch=epoch,
            metrics=metrics,
            select=cfg.select,
            **plan.card_extra,
        )

    # curves.png is redrawn at most every PLOT_EVERY_S seconds (drawing costs more than a tiny
    # epoch) and always when the loop ends, however it ends.
    plotted, last_plot = len(history), time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            sampler.set_epoch(epoch)
            torch.manual_seed(epoch_seed(cfg.seed, epoch, salt=2 + dinfo.rank))  # dropout and the like
            # Drawn on the training device: no parameter is copied from the host during a step.
            aug_gen = torch.Generator(device=device).manual_seed(epoch_seed(cfg.seed, epoch, salt=1000 + dinfo.rank))
            _set_train_mode(net, cfg.freeze_backbone)
            tally = LossTally(device)
            step = 0
            started = time.perf_counter()
            with progress_bar(sampler.num_images() * dinfo.world_size, f"epoch {epoch}/{cfg.epochs}") as bar:
                for step, (images, targets, _rows) in enumerate(loader, start=1):
                    x = to_model_input(images, cfg.image_size, device, channels_last)
                    x = augment_batch(x, cfg.augment, aug_gen)
                    targets = targets.to(device, non_blocking=True)
                    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                        logits = net(x)
                    loss = masked_bce(logits, targets)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    tally.add(loss, len(images), step)
                    bar.advance(len(images) * dinfo.world_size)
                    if step % READ_EVERY == 0:
                        _read_tally(tally, dinfo, bar, epoch, paths, history, cfg.lr)
            if step:
                _read_tally(tally, dinfo, bar, epoch, paths, history, cfg.lr)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            loss_sum, seen, elapsed = dist_utils.all_sum(dinfo, [tally.loss_sum, float(tally.seen), elapsed], device)
            probs, targets_np, losses = evaluate_rows(
                val_engine, val_set, val_positions, cfg.batch_size * 2, val_workers
            )
            probs, targets_np, losses = dist_utils.gather_arrays(dinfo, probs, targets_np, losses)
            aurocs = per_label_auroc(targets_np, probs) if len(probs) else np.full(len(plan.labels), np.nan)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / max(seen, 1),
                "val_loss": float(np.mean(losses)) if len(losses) else math.nan,
            }
            row.update({f"val_auroc_{l}": float(a) for l, a in zip(plan.labels, aurocs)})
            row["val_auroc_mean"] = float(np.nanmean(aurocs)) if np.isfinite(aurocs).any() else math.nan
            row["lr"] = optimizer.param_groups[0]["lr"]
            row["images_per_s"] = seen / (elapsed / dinfo.world_size) if elapsed > 0 else math.nan
            scheduler.step(row["val_loss"])

            # Selection and early stopping (identical on every rank: the metrics were gathered).
            score = _selection_score(cfg.select, row)
            improved = cfg.select == "last" or (math.isfinite(score) and score > best_score) or best_epoch == 0
            if improved:
                best_score, best_epoch = (score if math.isfinite(score) else best_score), epoch
            # With --select last, early stopping still watches the validation loss.
            progressed = row["val_loss"] < monitor_best if cfg.select == "last" else improved
            bad_epochs = 0 if progressed else bad_epochs + 1
            if cfg.select == "last":
                monitor_best = min(monitor_best, row["val_loss"])
            stopped_early = cfg.early_stop > 0 and bad_epochs >= cfg.early_stop
            history.append(row)

            if dinfo.is_main:
                write_metrics(paths.metrics, history, plan.labels)  # before the checkpoint: resume trims newer rows
                card = checkpoint_card(epoch, row)
                if improved:
                    save_checkpoint(paths.checkpoint("best"), model, card)
                state = {
                    "epoch": epoch,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "monitor_best": monitor_best,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                    "rng": {"torch": torch.get_rng_state()},
                    "sampler": {"seed": cfg.seed, "next_epoch": epoch + 1},
                }
                save_checkpoint(paths.checkpoint("last"), model, {**card, "best_epoch": best_epoch}, state=state)
                if time.perf_counter() - last_plot > PLOT_EVERY_S:
                    plot_curves(pd.DataFrame(history), paths.curves, title=plan.run_dir.name)
                    plotted, last_plot = len(history), time.perf_counter()
                info(
                    f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                    f"val AUROC {row['val_auroc_mean']:.3f}{' (best)' if improved else ''}, lr {row['lr']:.2g}, "
                    f"{row['images_per_s']:.1f} images/s"
                )
            dist_utils.barrier(dinfo)
            for callback in plan.callbacks:
                callback(epoch, row)
            if stopped_early:
                info(f"early stop: no improvement of the selection metric for {cfg.early_stop} epochs")
                break
    finally:
        if dinfo.is_main and len(history) > plotted:
            plot_curves(pd.DataFrame(history), paths.curves, title=plan.run_dir.name)

    return {
        "best_epoch": best_epoch,
        "select": cfg.select,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "history": history,
        "best": next((r for r in history if r["epoch"] == best_epoch), None),
    }


class LossTally:
    """The epoch's loss, summed on the device, and its first non-finite step, recorded there too.

    `add` only queues device work (no `.item()`), so a step never waits for the GPU; `read`
    synchronises once and is called every READ_EVERY steps and at the end of the epoch.
    """

    def __init__(self, device: torch.device):
        wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.device = device
        self.total = torch.zeros((), device=device, dtype=wide)  # sum of (batch mean loss x images)
        self.bad_step = torch.zeros((), device=device, dtype=torch.int64)  # 0: every loss so far finite
        self.bad_value = torch.zeros((), device=device)
        self.seen = 0
        self.loss_sum = 0.0  # the host's copy of `total` as of the last read

    def add(self, loss: torch.Tensor, n: int, step: int) -> None:
        value = loss.detach().float()
        self.total += value.to(self.total.dtype) * n
        first = (self.bad_step == 0) & ~torch.isfinite(value)
        self.bad_step = torch.where(first, torch.full_like(self.bad_step, step), self.bad_step)
        self.bad_value = torch.where(first, value, self.bad_value)
        self.seen += n

    def read(self) -> tuple[float, int, float]:
        """(loss sum, first non-finite step or 0, its value): the one host synchronisation."""
        dtype = self.total.dtype
        total, bad_step, bad_value = torch.stack(
            [self.total, self.bad_step.to(dtype), self.bad_value.to(dtype)]
        ).tolist()
        self.loss_sum = total
        return total, int(bad_step), bad_value


def _read_tally(
    tally: LossTally, dinfo: dist_utils.DistInfo, bar, epoch: int, paths: RunPaths, history: list[dict], lr: float
) -> None:
    """Read the device-side loss; show it, and stop the run if any process saw a non-finite loss."""
    total, bad_step, bad_value = tally.read()
    if dinfo.enabled:  # every process must agree to stop, and on where
        total, seen, worst = dist_utils.all_sum(
            dinfo, [total, float(tally.seen), float(bad_step > 0)], device=tally.device
        )
        first = dist_utils.all_min(dinfo, bad_step if bad_step > 0 else 2**62, tally.device) if worst else 0
        bad_step = first if worst else 0
    else:
        seen = tally.seen
    if bad_step:
        value = bad_value if not math.isfinite(bad_value) else math.nan  # another process's value is not known here
        raise NonFiniteLoss(_non_finite_message(epoch, bad_step, value, paths, history, lr))
    bar.update(status=f"loss {total / max(seen, 1):.4f}")


def _non_finite_message(epoch: int, step: int, value: float, paths: RunPaths, history: list[dict], lr: float) -> str:
    where = f"epoch {epoch}, step {step}: the training loss is {value} (not finite); training stopped"
    if history:
        return (
            f"{where}. The last good checkpoint is {paths.checkpoint('last')} (epoch {history[-1]['epoch']}); "
            f"start again with a lower --lr (now {lr:g})"
        )
    return f"{where} before any epoch finished (no checkpoint written); start again with a lower --lr (now {lr:g})"
