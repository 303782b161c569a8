"""`--tensorboard`: watch pretrain and finetune in TensorBoard (optional extra `cxrtool[tensorboard]`).

An epoch callback (the trainer calls each with the epoch and its metrics row) that writes, under
RUN/tensorboard/, per epoch: the training and validation losses, each label's validation AUROC
and their mean, the learning rate and images/s; and once, before the first epoch, a grid of
augmented training images as the network sees them. `tensorboard --logdir runs` then shows every
run side by side. A resumed run appends to the same folder (TensorBoard orders by epoch). Only
the main process writes; without the flag nothing here is imported.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.augment import augment_batch
from ..data.tensors import to_model_input
from ..errors import CxrError
from ..owned import note_written
from .samplers import epoch_seed

LOG_DIR = "tensorboard"
GRID_IMAGES = 16


def require_tensorboard() -> None:
    """Fail in one line, before any work, when the tensorboard package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise CxrError("--tensorboard: needs the tensorboard package: pip install tensorboard")


class TensorBoardLogger:
    """Writes each epoch's row of metrics.csv as TensorBoard scalars (step = epoch)."""

    def __init__(self, run_dir: Path, labels: Sequence[str]):
        require_tensorboard()
        # lazy: optional extra (tensorboard)
        from torch.utils.tensorboard import SummaryWriter

        self.labels = list(labels)
        self.log_dir = Path(run_dir) / LOG_DIR
        note_written(self.log_dir, folder=True)  # TensorBoard names its own files: the folder is the run's
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def add_grid(self, images: torch.Tensor, tag: str = "train/augmented_images", step: int = 0) -> None:
        """(n, 1, S, S) floats in [0, 1] as one grid image."""
        # lazy: torchvision, only for the TensorBoard image grid
        from torchvision.utils import make_grid

        grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=math.ceil(math.sqrt(len(images))), padding=2)
        self.writer.add_image(tag, grid, global_step=step)
        self.writer.flush()

    def __call__(self, epoch: int, row: dict) -> None:
        def scalar(tag: str, key: str) -> None:
            value = row.get(key)
            if value is not None and np.isfinite(value):  # a NaN AUROC (one class) is left out
                self.writer.add_scalar(tag, float(value), global_step=epoch)

        scalar("loss/train", "train_loss")
        scalar("loss/val", "val_loss")
        scalar("auroc/mean", "val_auroc_mean")
        for label in self.labels:
            scalar(f"auroc/{label}", f"val_auroc_{label}")
        scalar("lr", "lr")
        scalar("images_per_s", "images_per_s")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def augmented_grid(data, rows: np.ndarray, image_size: int, augment: str, seed: int) -> torch.Tensor:
    """The first GRID_IMAGES training images, made into network input and augmented as in training."""
    chosen = np.sort(np.asarray(rows)[:GRID_IMAGES])
    x = to_model_input(torch.from_numpy(np.ascontiguousarray(data.images[chosen])), image_size)
    gen = torch.Generator().manual_seed(epoch_seed(seed, 1, salt=1000))  # epoch 1's augmentation stream
    return augment_batch(x, augment, gen)


def tensorboard_callbacks(
    cfg,
    run_dir: Path,
    data,
    labels: Sequence[str],
    train_rows: np.ndarray,
    is_main: bool,
    callbacks: Sequence = (),
    grid: bool = True,
) -> list:
    """`callbacks` plus a TensorBoard logger when cfg.tensorboard is set (main process only);
    `grid`: log the augmented images too (not again when a run is resumed)."""
    if not getattr(cfg, "tensorboard", False) or not is_main:
        return list(callbacks)
    logger = TensorBoardLogger(run_dir, labels)
    if grid and len(train_rows):
        logger.add_grid(augmented_grid(data, train_rows, cfg.image_size, cfg.augment, cfg.seed))
    return [*callbacks, logger]
