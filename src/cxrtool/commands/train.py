"""`cxrtool pretrain` and `cxrtool finetune` (see docs/pretrain.md and docs/finetune.md).

Options left out stay None so that values from `--config FILE.yaml` are not overridden by
defaults; `cxrtool.train.config` holds the defaults and the checks. `--resume [RUN]` continues
an interrupted run (the run given, else `--out`, else the newest run of that kind). An `--out`
that holds no finished epoch is started again; one with finished epochs needs `--resume` or
`--overwrite`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cli import quiet_option, user_errors

HELP_SELECT = "Best epoch by validation loss, mean validation AUROC, or the last epoch."
HELP_TENSORBOARD = "Log losses, AUROCs, learning rate and images/s to RUN/tensorboard (needs pip install tensorboard)."


def _common(data: Optional[Path], arch: Optional[str], weights: Optional[str], out: Optional[Path],
            labels: Optional[str], epochs: Optional[int], batch_size: Optional[int], lr: Optional[float],
            weight_decay: Optional[float], plateau_patience: Optional[int], early_stop: Optional[int],
            select: Optional[str], augment: Optional[str], image_size: Optional[int], device: Optional[str],
            seed: Optional[int], workers: Optional[int], oversample: Optional[bool]) -> dict:
    from ..config import parse_list

    return dict(data=data, arch=arch, weights=weights, out=out, labels=parse_list(labels, "--labels") if labels else None,
                epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, plateau_patience=plateau_patience,
                early_stop=early_stop, select=select, augment=augment, image_size=image_size, device=device, seed=seed,
                workers=workers, oversample=oversample)


def _resume_or_none(kind: str, resume: bool, run: Optional[Path], out: Optional[Path], epochs, workers, device) -> Optional[Path]:
    from ..errors import CxrError

    if not resume:
        if run is not None:
            raise CxrError(f"{run}: a run directory is given only with --resume (to continue it); use --out for a new run")
        return None
    from ..train import resume as resume_run

    return resume_run(run or out, kind=kind, epochs=epochs, workers=workers, device=device)


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    @user_errors
    def pretrain_command(
        run: Optional[Path] = typer.Argument(None, help="With --resume: the run to continue (default --out, else the newest pretrain run)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared cache to train on. (default: data/nih)"),
        arch: Optional[str] = typer.Option(None, "--arch", help="densenet121, resnet50, cxr-resnet50, resnet18 or tiny-cnn. (default: densenet121)"),
        weights: Optional[str] = typer.Option(None, "--weights", help="imagenet, none, or a weights file. (default: imagenet)"),
        out: Optional[Path] = typer.Option(None, "--out", help="Run directory (new or empty). (default: runs/pretrain-ARCH-TIME)"),
        labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated labels to train on. (default: all of the data's)"),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum number of epochs. (default: 20)"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (per process). (default: 16)"),
        lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate. (default: 0.001)"),
        weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Adam weight decay. (default: 0)"),
        plateau_patience: Optional[int] = typer.Option(None, "--plateau-patience", help="Epochs without a lower validation loss before the learning rate drops 10x. (default: 1)"),
        early_stop: Optional[int] = typer.Option(None, "--early-stop", help="Stop after N epochs without improvement (0: never). (default: 5)"),
        select: Optional[str] = typer.Option(None, "--select", help=HELP_SELECT + " (default: loss)"),
        augment: Optional[str] = typer.Option(None, "--augment", help="none, flip or paper (flip, rotation, shift/scale, brightness/contrast). (default: paper)"),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="Network input side in pixels. (default: 224)"),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or mps. (default: auto)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (initialisation, batches, augmentation). (default: 0)"),
        workers: Optional[int] = typer.Option(None, "--workers", help="Data-loading processes. (default: half the cores, at most 4)"),
        oversample: Optional[bool] = typer.Option(None, "--oversample/--no-oversample", help="Draw positives and negatives of each label equally often."),
        allow_partial: bool = typer.Option(False, "--allow-partial", help="Accept weights that fit the backbone only in part (listed in the manifest)."),
        tensorboard: Optional[bool] = typer.Option(None, "--tensorboard", help=HELP_TENSORBOARD),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (RUN, --out, or the newest pretrain run)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start again in an --out that holds a finished run, replacing it."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML file of options (a run's config.yaml works)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Train a network on a prepared cache (NIH ChestX-ray14: 14 findings, multi-label)."""
        quiet_option(quiet)
        if _resume_or_none("pretrain", resume, run, out, epochs, workers, device) is not None:
            return
        from ..config import build_config
        from ..train import TrainConfig, pretrain

        options = _common(data, arch, weights, out, labels, epochs, batch_size, lr, weight_decay, plateau_patience,
                          early_stop, select, augment, image_size, device, seed, workers, oversample)
        pretrain(build_config(TrainConfig, config, allow_partial=allow_partial or None, tensorboard=tensorboard, **options), overwrite=overwrite)

    @app.command("finetune")
    @user_errors
    def finetune_command(
        run: Optional[Path] = typer.Argument(None, help="With --resume: the run to continue (default --out, else the newest finetune run)."),
        parent: Optional[str] = typer.Option(None, "--from", help="Run or checkpoint to start from, or none. (default: the newest run under ./runs)"),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared cache to train on. (default: data/covid)"),
        arch: Optional[str] = typer.Option(None, "--arch", help="Architecture, only with --from none. (default: the parent's, or densenet121)"),
        weights: Optional[str] = typer.Option(None, "--weights", help="With --from none: imagenet, none or a weights file. (default: none)"),
        out: Optional[Path] = typer.Option(None, "--out", help="Run directory (new or empty). (default: runs/finetune-ARCH-TIME)"),
        labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated labels to train on. (default: all of the data's)"),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum number of epochs. (default: 100)"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (per process). (default: 16)"),
        lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate. (default: 0.0001)"),
        weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Adam weight decay. (default: 0)"),
        plateau_patience: Optional[int] = typer.Option(None, "--plateau-patience", help="Epochs without a lower validation loss before the learning rate drops 10x. (default: 5)"),
        early_stop: Optional[int] = typer.Option(None, "--early-stop", help="Stop after N epochs without improvement (0: never). (default: 10)"),
        select: Optional[str] = typer.Option(None, "--select", help=HELP_SELECT + " (default: auroc)"),
        augment: Optional[str] = typer.Option(None, "--augment", help="none, flip or paper. (default: paper)"),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="Network input side. (default: the parent's, or 224)"),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or mps. (default: auto)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed. (default: 0)"),
        workers: Optional[int] = typer.Option(None, "--workers", help="Data-loading processes. (default: half the cores, at most 4)"),
        oversample: Optional[bool] = typer.Option(None, "--oversample/--no-oversample", help="Balance positives and negatives by sampling (the report's remedy for COVID-19's imbalance)."),
        freeze_backbone: Optional[bool] = typer.Option(None, "--freeze-backbone/--train-backbone", help="Train only the new head."),
        folds: Optional[int] = typer.Option(None, "--folds", help="K-fold patient cross-validation over all images (0: use the data's splits). (default: 0)"),
        val_frac: Optional[float] = typer.Option(None, "--val-frac", help="With --folds: share of each fold's training patients kept for validation. (default: 0.2)"),
        allow_partial: bool = typer.Option(False, "--allow-partial", help="Accept weights that fit the backbone only in part (listed in the manifest)."),
        tensorboard: Optional[bool] = typer.Option(None, "--tensorboard", help=HELP_TENSORBOARD),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (RUN, --out, or the newest finetune run)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start again in an --out that holds a finished run, replacing it."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML file of options (a run's config.yaml works)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Transfer a trained network to new labels (e.g. COVID-19), or train from scratch / ImageNet."""
        quiet_option(quiet)
        if _resume_or_none("finetune", resume, run, out, epochs, workers, device) is not None:
            return
        from ..config import build_config
        from ..train import FinetuneConfig, finetune

        options = _common(data, arch, weights, out, labels, epochs, batch_size, lr, weight_decay, plateau_patience,
                          early_stop, select, augment, image_size, device, seed, workers, oversample)
        finetune(build_config(FinetuneConfig, config, parent=parent, freeze_backbone=freeze_backbone, folds=folds,
                              val_frac=val_frac, allow_partial=allow_partial or None, tensorboard=tensorboard, **options), overwrite=overwrite)
