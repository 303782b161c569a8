"""`cxrtool pretrain` and `cxrtool finetune` (see docs/pretrain.md and docs/finetune.md).

Their options are the fields of `TrainConfig` and `FinetuneConfig` (train/config.py) that carry
`option(...)`; finetune declares again the fields whose default or help differ, so each command's
`--help` says its own defaults. Options left out stay None so that values from `--config
FILE.yaml` are not overridden by defaults. `--resume [RUN]` continues an interrupted run (the run
given, else `--out`, else the newest run of that kind). An `--out` that holds no finished epoch is
started again; one with finished epochs needs `--resume` or `--overwrite`. With `--resume`, only
`--epochs`, `--workers` and `--device` may differ from the run's config.yaml; any other option
given must equal it (train/resume_options.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from .configured import Extra, Given, add_command, config_file, flag, quiet


def pretrain_config() -> type:
    from ..train import TrainConfig  # lazy: the train package imports torch; keeps cxrtool --help fast

    return TrainConfig


def finetune_config() -> type:
    from ..train import FinetuneConfig  # lazy: the train package imports torch; keeps cxrtool --help fast

    return FinetuneConfig


def pretrain(given: Given) -> None:
    """Train a network on a prepared cache (NIH ChestX-ray14: 14 findings, multi-label)."""
    run_training("pretrain", given)


def finetune(given: Given) -> None:
    """Transfer a trained network to new labels (e.g. COVID-19), or train from scratch / ImageNet."""
    run_training("finetune", given)


def run_training(kind: str, given: Given) -> None:
    """Resume a run, or build the kind's config (defaults < --config file < options) and train."""
    from .. import train  # lazy: keeps cxrtool --help fast

    if _resume_or_none(kind, given) is not None:
        return
    getattr(train, kind)(given.config(), overwrite=given.extras["overwrite"])


def _resume_or_none(kind: str, given: Given) -> Path | None:
    from ..errors import CxrError  # lazy: keeps cxrtool --help fast

    run = given.extras["run"]
    if not given.extras["resume"]:
        if run is not None:
            raise CxrError(
                f"{run}: a run directory is given only with --resume (to continue it); use --out for a new run"
            )
        return None
    # lazy: keeps cxrtool --help fast
    from ..train import resume as resume_run
    from ..train.resume_options import given_options

    options = given_options(given.values, given.extras["config"])
    may_change = {name: options.pop(name, None) for name in ("epochs", "workers", "device")}
    target = run or options.get("out")
    if run is None:
        options.pop("out", None)  # --out (or the --config file's out) names the run to continue
    return resume_run(target, kind=kind, **may_change, given=options)


def _extras(kind: str) -> tuple[Extra, ...]:
    return (
        Extra(
            "run",
            Path | None,
            typer.Argument(help=f"With --resume: the run to continue (default --out, else the newest {kind} run)."),
        ),
        flag("resume", f"Continue an interrupted run (RUN, --out, or the newest {kind} run)."),
        flag("overwrite", "Start again in an --out that holds a finished run, replacing it."),
        config_file("YAML file of options (a run's config.yaml works)."),
        quiet(),
    )


def register(app: typer.Typer) -> None:
    add_command(app, "pretrain", pretrain, pretrain_config, *_extras("pretrain"))
    add_command(
        app,
        "finetune",
        finetune,
        finetune_config,
        *_extras("finetune"),
        first=("parent", "freeze_backbone", "folds", "val_frac", "seeds"),  # finetune's own options lead
    )
