"""A Dataset over the prepared cache: uint8 images and float targets, read a batch at a time.

The images stay a memory-mapped uint8 array; each DataLoader worker opens its own map on first
use (nothing large is pickled into the workers). `__getitems__` lets the loader fetch a whole
batch with one sorted fancy-index read instead of one Python call per image, and the batch
travels to the device as uint8 (four times less than floats); `to_model_input` then makes the
network's input there, exactly as evaluation and inference do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import IMAGES, PreparedData


class CacheDataset(Dataset):
    """Rows of a cache as (uint8 images (b, S, S), targets (b, L) with NaN, row numbers (b,))."""

    def __init__(self, data: PreparedData, rows: np.ndarray, label_columns: list[int] | None = None):
        self.images_path = Path(data.root) / IMAGES
        self.rows = np.asarray(rows, dtype=np.int64)
        targets = data.targets(self.rows)
        self.targets = targets if label_columns is None else targets[:, label_columns]
        self._images: np.ndarray | None = None

    def _memmap(self) -> np.ndarray:
        if self._images is None:  # opened lazily, so each worker process maps the file itself
            self._images = np.load(self.images_path, mmap_mode="r")
        return self._images

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int):
        return self.__getitems__([position])

    def __getitems__(self, positions: list[int]):
        positions = np.sort(np.asarray(positions, dtype=np.int64))  # ascending reads are sequential on disk
        rows = self.rows[positions]
        images = torch.from_numpy(np.ascontiguousarray(self._memmap()[rows]))
        return images, torch.from_numpy(self.targets[positions]), torch.from_numpy(rows)


def collate_batch(batch):
    """The dataset already returns whole batches; the loader passes them through."""
    return batch
