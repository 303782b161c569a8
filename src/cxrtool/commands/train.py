"""`cxrtool pretrain` and `cxrtool finetune` (see docs/pretrain.md and docs/finetune.md).

The options the two commands share are declared once, in `SHARED_OPTIONS`: a row gives the
option's flags, its help and the default each command shows; `with_options` (commands/options.py)
adds the rows to each command's own parameters, so adding an option to both is a one-row change.
Options left out stay None so that values from `--config FILE.yaml` are not overridden by
defaults; `cxrtool.train.config` holds the defaults and the checks. `--resume [RUN]` continues an
interrupted run (the run given, else `--out`, else the newest run of that kind). An `--out` that
holds no finished epoch is started again; one with finished epochs needs `--resume` or
`--overwrite`. With `--resume`, only `--epochs`, `--workers` and `--device` may differ from the
run's config.yaml; any other option given must equal it (train/resume_options.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .options import SharedOption, config_values, with_options
from .support import quiet_option, user_errors

KINDS = ("pretrain", "finetune")


def _both(value: str) -> dict[str, str]:
    return dict.fromkeys(KINDS, value)


SHARED_OPTIONS: tuple[SharedOption, ...] = (
    SharedOption(
        "data",
        Path | None,
        ("--data",),
        "Prepared cache to train on.",
        {"pretrain": "data/nih", "finetune": "data/covid"},
    ),
    SharedOption(
        "arch",
        str | None,
        ("--arch",),
        {
            "pretrain": "densenet121, resnet50, cxr-resnet50, resnet18 or tiny-cnn.",
            "finetune": "Architecture, only with --from none.",
        },
        {"pretrain": "densenet121", "finetune": "the parent's, or densenet121"},
    ),
    SharedOption(
        "weights",
        str | None,
        ("--weights",),
        {
            "pretrain": "imagenet, none, or a weights file.",
            "finetune": "With --from none: imagenet, none or a weights file.",
        },
        {"pretrain": "imagenet", "finetune": "none"},
    ),
    SharedOption(
        "out",
        Path | None,
        ("--out",),
        "Run directory (new or empty).",
        {"pretrain": "runs/pretrain-ARCH-TIME", "finetune": "runs/finetune-ARCH-TIME"},
    ),
    SharedOption(
        "labels", str | None, ("--labels",), "Comma-separated labels to train on.", _both("all of the data's")
    ),
    SharedOption(
        "epochs", int | None, ("--epochs",), "Maximum number of epochs.", {"pretrain": "20", "finetune": "100"}
    ),
    SharedOption("batch_size", int | None, ("--batch-size",), "Images per step (per process).", _both("16")),
    SharedOption("lr", float | None, ("--lr",), "Adam learning rate.", {"pretrain": "0.001", "finetune": "0.0001"}),
    SharedOption("weight_decay", float | None, ("--weight-decay",), "Adam weight decay.", _both("0")),
    SharedOption(
        "plateau_patience",
        int | None,
        ("--plateau-patience",),
        "Epochs without a lower validation loss before the learning rate drops 10x.",
        {"pretrain": "1", "finetune": "5"},
    ),
    SharedOption(
        "early_stop",
        int | None,
        ("--early-stop",),
        "Stop after N epochs without improvement (0: never).",
        {"pretrain": "5", "finetune": "10"},
    ),
    SharedOption(
        "select",
        str | None,
        ("--select",),
        "Best epoch by validation loss, mean validation AUROC, or the last epoch.",
        {"pretrain": "loss", "finetune": "auroc"},
    ),
    SharedOption(
        "augment",
        str | None,
        ("--augment",),
        {
            "pretrain": "none, flip or paper (flip, rotation, shift/scale, brightness/contrast).",
            "finetune": "none, flip or paper.",
        },
        _both("paper"),
    ),
    SharedOption(
        "image_size",
        int | None,
        ("--image-size",),
        "Network input side in pixels.",
        {"pretrain": "224", "finetune": "the parent's, or 224"},
    ),
    SharedOption("device", str | None, ("--device",), "auto, cpu, cuda or mps.", _both("auto")),
    SharedOption("seed", int | None, ("--seed",), "Random seed (initialisation, batches, augmentation).", _both("0")),
    SharedOption("workers", int | None, ("--workers",), "Data-loading processes.", _both("half the cores, at most 4")),
    SharedOption(
        "oversample",
        bool | None,
        ("--oversample/--no-oversample",),
        {
            "pretrain": "Draw positives and negatives of each label equally often.",
            "finetune": "Balance positives and negatives by sampling (the report's remedy for COVID-19's imbalance).",
        },
    ),
    SharedOption(
        "allow_partial",
        bool,
        ("--allow-partial",),
        "Accept weights that fit the backbone only in part (listed in the manifest).",
        value_if_absent=False,
    ),
    SharedOption(
        "tensorboard",
        bool | None,
        ("--tensorboard",),
        "Log losses, AUROCs, learning rate and images/s to RUN/tensorboard (needs pip install tensorboard).",
    ),
    SharedOption(
        "resume",
        bool,
        ("--resume",),
        {kind: f"Continue an interrupted run (RUN, --out, or the newest {kind} run)." for kind in KINDS},
        to_config=False,
        value_if_absent=False,
    ),
    SharedOption(
        "overwrite",
        bool,
        ("--overwrite",),
        "Start again in an --out that holds a finished run, replacing it.",
        to_config=False,
        value_if_absent=False,
    ),
    SharedOption(
        "config", Path | None, ("--config",), "YAML file of options (a run's config.yaml works).", to_config=False
    ),
    SharedOption("quiet", bool, ("--quiet", "-q"), "No progress bars.", to_config=False, value_if_absent=False),
)


def run_training(kind: str, run: Path | None, own_config: dict[str, Any], shared: dict[str, Any]) -> None:
    """Resume a run, or build the kind's config (defaults < --config file < options) and train."""
    from ..config import build_config, parse_list  # lazy: keeps cxrtool --help fast
    from ..train import FinetuneConfig, TrainConfig, finetune, pretrain

    quiet_option(shared["quiet"])
    if _resume_or_none(kind, run, own_config, shared) is not None:
        return
    options = config_values(SHARED_OPTIONS, shared)
    if options["labels"]:
        options["labels"] = parse_list(options["labels"], "--labels")
    options["allow_partial"] = options["allow_partial"] or None  # False means "not given": the file may say true
    cls, train = (TrainConfig, pretrain) if kind == "pretrain" else (FinetuneConfig, finetune)
    train(build_config(cls, shared["config"], **own_config, **options), overwrite=shared["overwrite"])


def _resume_or_none(kind: str, run: Path | None, own_config: dict[str, Any], shared: dict[str, Any]) -> Path | None:
    from ..errors import CxrError

    if not shared["resume"]:
        if run is not None:
            raise CxrError(
                f"{run}: a run directory is given only with --resume (to continue it); use --out for a new run"
            )
        return None
    # lazy: keeps cxrtool --help fast
    from ..train import resume as resume_run
    from ..train.resume_options import given_options

    options = {**config_values(SHARED_OPTIONS, shared), **own_config}
    options["allow_partial"] = options["allow_partial"] or None  # False means "not given"
    given = given_options(options, shared["config"])
    may_change = {name: given.pop(name, None) for name in ("epochs", "workers", "device")}
    target = run or given.get("out")
    if run is None:
        given.pop("out", None)  # --out (or the --config file's out) names the run to continue
    return resume_run(
        target,
        kind=kind,
        **may_change,
        given=given,
    )


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    @user_errors
    @with_options(SHARED_OPTIONS, "pretrain")
    def pretrain_command(
        run: Path | None = typer.Argument(
            None, help="With --resume: the run to continue (default --out, else the newest pretrain run)."
        ),
        **shared: Any,
    ) -> None:
        """Train a network on a prepared cache (NIH ChestX-ray14: 14 findings, multi-label)."""
        run_training("pretrain", run, {}, shared)

    @app.command("finetune")
    @user_errors
    @with_options(SHARED_OPTIONS, "finetune")
    def finetune_command(
        run: Path | None = typer.Argument(
            None, help="With --resume: the run to continue (default --out, else the newest finetune run)."
        ),
        parent: str | None = typer.Option(
            None, "--from", help="Run or checkpoint to start from, or none. (default: the newest run under ./runs)"
        ),
        freeze_backbone: bool | None = typer.Option(
            None, "--freeze-backbone/--train-backbone", help="Train only the new head."
        ),
        folds: int | None = typer.Option(
            None,
            "--folds",
            help="K-fold patient cross-validation over all images (0: use the data's splits). (default: 0)",
        ),
        val_frac: float | None = typer.Option(
            None,
            "--val-frac",
            help="With --folds: share of each fold's training patients kept for validation. (default: 0.2)",
        ),
        seeds: int | None = typer.Option(
            None,
            "--seeds",
            help="Train N times with seeds --seed, --seed+1, ... into RUN/seed-1..N (training variance). (default: 1)",
        ),
        **shared: Any,
    ) -> None:
        """Transfer a trained network to new labels (e.g. COVID-19), or train from scratch / ImageNet."""
        run_training(
            "finetune",
            run,
            dict(parent=parent, freeze_backbone=freeze_backbone, folds=folds, val_frac=val_frac, seeds=seeds),
            shared,
        )
