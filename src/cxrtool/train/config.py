"""Options of `cxrtool pretrain` and `cxrtool finetune`, validated where they are made.

`TrainConfig` holds everything one training run needs; `FinetuneConfig` adds where the weights
come from (`--from`), freezing, oversampling, patient cross-validation (`--folds`) and one run per
seed (`--seeds`), and
changes the defaults to the report's transfer settings (up to 100 epochs, best epoch by
validation AUROC, early stopping after 10 epochs without improvement). Each check raises a
one-line `CxrError` naming the option, so a typo fails before any data is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import parse_list, require
from ..data.pool import cap_workers, default_workers
from ..device import DEVICE_CHOICES
from ..errors import CxrError
from ..models.archs import arch_choices, check_image_size, get_spec
from ..optionspec import option
from .tensorboard import require_tensorboard

SELECT_CHOICES = ("loss", "auroc", "last")
AUGMENT_CHOICES = ("none", "flip", "paper")
SMALL_VALIDATION = 20  # fewer validation examples of a class than this makes "best epoch" noisy


@dataclass
class TrainConfig:
    """Options of one training run (pretrain defaults)."""

    data: Path = option(Path("data/nih"), help="Prepared cache to train on. (default: data/nih)")
    arch: str = option(
        "densenet121",
        help=f"{arch_choices()}. (default: densenet121)",  # the names of the registry (models/archs.py)
    )
    weights: str = option("imagenet", help="imagenet, none, or a weights file. (default: imagenet)")
    out: Path | None = option(None, help="Run directory (new or empty). (default: runs/pretrain-ARCH-TIME)")
    labels: list[str] | None = option(
        None, help="Comma-separated labels to train on. (default: all of the data's)", type=str, parse=parse_list
    )  # None: every label of the data
    epochs: int = option(20, help="Maximum number of epochs. (default: 20)")
    batch_size: int = option(16, help="Images per step (per process). (default: 16)")
    lr: float = option(1e-3, help="Adam learning rate. (default: 0.001)")
    weight_decay: float = option(0.0, help="Adam weight decay. (default: 0)")
    plateau_patience: int = option(
        1, help="Epochs without a lower validation loss before the learning rate drops 10x. (default: 1)"
    )
    early_stop: int = option(5, help="Stop after N epochs without improvement (0: never). (default: 5)")
    select: str = option(
        "loss",
        help="Best epoch by validation loss, mean validation AUROC, or the last epoch. (default: loss)",
        choices=SELECT_CHOICES,
    )
    augment: str = option(
        "paper",
        help="none, flip or paper (flip, rotation, shift/scale, brightness/contrast). (default: paper)",
        choices=AUGMENT_CHOICES,
    )
    image_size: int = option(224, help="Network input side in pixels. (default: 224)")
    device: str = option("auto", help="auto, cpu, cuda or mps. (default: auto)", choices=DEVICE_CHOICES)
    seed: int = option(0, help="Random seed (initialisation, batches, augmentation). (default: 0)")
    workers: int = option(
        -1, help="Data-loading processes. (default: half the cores, at most 4)"
    )  # -1: default_workers("train")
    oversample: bool = option(
        False,
        help="Draw positives and negatives of each label equally often.",
        flags=("--oversample/--no-oversample",),
    )
    freeze_backbone: bool = False  # an option of finetune only
    allow_partial: bool = option(
        False, help="Accept weights that fit the backbone only in part (listed in the manifest)."
    )  # start from weights that fit the backbone only in part
    tensorboard: bool = option(
        False,
        help="Log losses, AUROCs, learning rate and images/s to RUN/tensorboard (needs pip install tensorboard).",
    )

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.out = Path(self.out) if self.out is not None else None
        if self.arch is not None:
            get_spec(self.arch)  # unknown names fail here, with "did you mean"
        self.weights = str(self.weights)
        if self.weights not in ("imagenet", "none") and not Path(self.weights).exists():
            raise CxrError(f"--weights: {self.weights}: no such file; use imagenet, none or a weights file")
        if isinstance(self.labels, str):
            self.labels = [x.strip() for x in self.labels.split(",") if x.strip()]
        if self.labels is not None:
            require(len(self.labels) > 0, "--labels: give at least one label")
            self.labels = [str(x) for x in self.labels]
        require(int(self.epochs) >= 1, f"--epochs: must be at least 1 (got {self.epochs})")
        require(
            int(self.batch_size) >= 2,
            f"--batch-size: must be at least 2 for batch normalisation (got {self.batch_size})",
        )
        require(float(self.lr) > 0, f"--lr: must be positive (got {self.lr})")
        require(float(self.weight_decay) >= 0, f"--weight-decay: must not be negative (got {self.weight_decay})")
        require(
            int(self.plateau_patience) >= 0, f"--plateau-patience: must not be negative (got {self.plateau_patience})"
        )
        require(
            int(self.early_stop) >= 0, f"--early-stop: must not be negative; 0 turns it off (got {self.early_stop})"
        )
        require(
            self.select in SELECT_CHOICES, f"--select: choose one of {', '.join(SELECT_CHOICES)} (got {self.select!r})"
        )
        require(
            self.augment in AUGMENT_CHOICES,
            f"--augment: choose one of {', '.join(AUGMENT_CHOICES)} (got {self.augment!r})",
        )
        if self.image_size is not None:
            # The architecture's own minimum too (densenet121: 29 px). A finetune's arch may come from
            # its parent: transfer.py resolves it with dataclasses.replace, which checks again.
            check_image_size(self.arch, int(self.image_size))
        require(
            str(self.device).split(":")[0] in DEVICE_CHOICES,
            f"--device: choose one of {', '.join(DEVICE_CHOICES)} (got {self.device!r})",
        )
        if self.tensorboard:
            require_tensorboard()
        if int(self.workers) < 0:
            self.workers = default_workers("train")
        self.epochs, self.batch_size, self.workers = int(self.epochs), int(self.batch_size), int(self.workers)
        self.workers = cap_workers(self.workers)
        self.lr, self.weight_decay = float(self.lr), float(self.weight_decay)


@dataclass
class FinetuneConfig(TrainConfig):
    """Options of `finetune`: the report's transfer defaults plus the parent and the folds."""

    # The options whose default or help differ from pretrain's are declared again (a field keeps
    # its place in the order of the base class).
    parent: str | None = option(
        None,
        help="Run or checkpoint to start from, or none. (default: the newest run under ./runs)",
        flags=("--from",),
    )  # a run, a checkpoint, or "none"; None: the newest run
    data: Path = option(Path("data/covid"), help="Prepared cache to train on. (default: data/covid)")
    arch: str | None = option(
        None, help="Architecture, only with --from none. (default: the parent's, or densenet121)"
    )  # None: the parent's architecture (densenet121 with --from none)
    weights: str = option("none", help="With --from none: imagenet, none or a weights file. (default: none)")
    out: Path | None = option(None, help="Run directory (new or empty). (default: runs/finetune-ARCH-TIME)")
    image_size: int | None = option(
        None, help="Network input side in pixels. (default: the parent's, or 224)"
    )  # None: the parent's input size (224 with --from none)
    epochs: int = option(100, help="Maximum number of epochs. (default: 100)")
    lr: float = option(1e-4, help="Adam learning rate. (default: 0.0001)")
    plateau_patience: int = option(
        5, help="Epochs without a lower validation loss before the learning rate drops 10x. (default: 5)"
    )
    early_stop: int = option(10, help="Stop after N epochs without improvement (0: never). (default: 10)")
    select: str = option(
        "auroc",
        help="Best epoch by validation loss, mean validation AUROC, or the last epoch. (default: auroc)",
        choices=SELECT_CHOICES,
    )
    augment: str = option("paper", help="none, flip or paper. (default: paper)", choices=AUGMENT_CHOICES)
    oversample: bool = option(
        False,
        help="Balance positives and negatives by sampling (the report's remedy for COVID-19's imbalance).",
        flags=("--oversample/--no-oversample",),
    )
    freeze_backbone: bool = option(
        False, help="Train only the new head.", flags=("--freeze-backbone/--train-backbone",)
    )
    folds: int = option(
        0, help="K-fold patient cross-validation over all images (0: use the data's splits). (default: 0)"
    )  # >= 2: patient cross-validation over all images of the data
    seeds: int = option(
        1,
        help="Train N times with seeds --seed, --seed+1, ... into RUN/seed-1..N (training variance). (default: 1)",
    )
    val_frac: float = option(
        0.2,
        help="With --folds: share of each fold's training patients kept for validation. (default: 0.2)",
    )  # the validation carve-out of each fold's training part

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            int(self.folds) == 0 or int(self.folds) >= 2,
            f"--folds: give 2 or more folds, or 0 for the data's own splits (got {self.folds})",
        )
        require(0.05 <= float(self.val_frac) <= 0.5, f"--val-frac: must be between 0.05 and 0.5 (got {self.val_frac})")
        self.folds = int(self.folds)
        require(int(self.seeds) >= 1, f"--seeds: give 1 or more runs (got {self.seeds})")
        self.seeds = int(self.seeds)
        if self.seeds > 1 and self.folds:
            raise CxrError("--seeds with --folds: not supported; cross-validate once per seed with --seed S instead")
        if self.parent is not None:
            self.parent = str(self.parent)
        if self.parent not in (None, "none") and self.weights not in ("none",):
            raise CxrError("--weights: the weights come from --from; give --weights only with --from none")
