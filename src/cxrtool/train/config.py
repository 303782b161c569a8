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

from ..config import require
from ..data.pool import cap_workers, default_workers
from ..device import DEVICE_CHOICES
from ..errors import CxrError
from ..models.registry import check_image_size, get_spec
from .tensorboard import require_tensorboard

SELECT_CHOICES = ("loss", "auroc", "last")
AUGMENT_CHOICES = ("none", "flip", "paper")
SMALL_VALIDATION = 20  # fewer validation examples of a class than this makes "best epoch" noisy


@dataclass
class TrainConfig:
    """Options of one training run (pretrain defaults)."""

    data: Path = Path("data/nih")
    arch: str = "densenet121"
    weights: str = "imagenet"
    out: Path | None = None
    labels: list[str] | None = None  # None: every label of the data
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    plateau_patience: int = 1
    early_stop: int = 5  # 0: never stop early
    select: str = "loss"
    augment: str = "paper"
    image_size: int = 224
    device: str = "auto"
    seed: int = 0
    workers: int = -1  # -1: default_workers("train")
    oversample: bool = False
    freeze_backbone: bool = False
    allow_partial: bool = False  # start from weights that fit the backbone only in part
    tensorboard: bool = False  # log to RUN/tensorboard (needs the tensorboard package)

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

    parent: str | None = None  # --from: a run, a checkpoint, or "none"; None: the newest run
    data: Path = Path("data/covid")
    arch: str | None = None  # None: the parent's architecture (densenet121 with --from none)
    weights: str = "none"
    image_size: int | None = None  # None: the parent's input size (224 with --from none)
    epochs: int = 100
    lr: float = 1e-4
    plateau_patience: int = 5
    early_stop: int = 10
    select: str = "auroc"
    folds: int = 0  # >= 2: patient cross-validation over all images of the data
    seeds: int = 1  # >= 2: train the arm once per seed (seed, seed+1, ...) in RUN/seed-1..N
    val_frac: float = 0.2  # the validation carve-out of each fold's training part

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
