"""The one engine that runs a model over images: used by validation, evaluate, predict, cam and embed.

Images come from a DataLoader: cache rows through `CacheDataset` (memmap reads) or files on disk
through `FileDataset` (decoded in the loader's worker processes with the cache's preprocessing,
so decoding uses every core and only the batches in flight are in memory). On CUDA the loader
pins its batches, they are copied to the device without blocking, and the forward pass runs in
mixed precision on a channels_last model. `InferenceEngine.batches` yields each batch as uint8
pixels (for overlays) and network input; `InferenceEngine.forward` turns the input into logits,
probabilities (test-time flip averaged here and nowhere else) or pooled features. Commands that
need more than one forward pass per batch (CAM's hooks and gradients) take the batches and run
their own pass inside `engine.autocast()`. On the CPU no setting changes, so results are the
same as a plain float32 loop. `predictions_table` and `write_predictions` lay out what it
produced, one row per image, for evaluate's predictions.csv and predict's --out alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .atomic import atomic_write_text
from .data.cache import PreparedData
from .data.dataset import CacheDataset, collate_batch
from .data.imageio import ImageReadError, load_preprocessed
from .data.pool import default_workers
from .data.tensors import to_model_input
from .device import amp_dtype, fast_paths
from .errors import CxrError
from .progress import info, progress_bar
from .runs import read_manifest
from .safeio import csv_text

MODES = ("probs", "logits", "features")


class FileDataset(Dataset):
    """Image files preprocessed as `cxrtool prepare` does; a batch read is (uint8 images, positions read, skipped).

    A file that cannot be decoded is left out of its batch and returned as (path, reason), so the
    caller lists it; it never stops the others.
    """

    def __init__(self, files: Sequence[Path], size: int):
        self.files = [Path(f) for f in files]
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, position: int):
        return self.__getitems__([position])

    def __getitems__(self, positions: list[int]):
        arrays, kept, skipped = [], [], []
        for p in positions:
            try:
                arrays.append(load_preprocessed(self.files[p], self.size)[0])
                kept.append(int(p))
            except ImageReadError as exc:
                skipped.append((str(self.files[p]), str(exc)))
        # numpy, not tensors: a worker's answer travels pickled through the pipe and is freed with
        # it; a shared-memory segment per batch let the main process's peak creep up over
        # thousands of files (benchmarks/bench_predict.py).
        images = np.stack(arrays) if arrays else np.zeros((0, self.size, self.size), dtype=np.uint8)
        return images, np.asarray(kept, dtype=np.int64), skipped


class ArrayDataset(Dataset):
    """Preprocessed uint8 images (n, S, S) already in memory, read a batch at a time."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, positions: list[int]):
        positions = np.sort(np.asarray(positions, dtype=np.int64))  # ascending, as CacheDataset reads
        return (torch.from_numpy(np.ascontiguousarray(self.images[positions])),)


def make_loader(
    dataset: Dataset, batches: list[list[int]], workers: int, device: torch.device, persistent: bool = False
) -> DataLoader:
    """A prefetching loader over whole batches (the datasets read a batch per call)."""
    workers = min(int(workers), len(batches)) if len(batches) > 1 else 0  # one batch: no process to start
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_batch,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=persistent and workers > 0,
    )


def chunked(n: int, batch_size: int) -> list[list[int]]:
    """[[0..b-1], [b..2b-1], ...] over n positions, in order."""
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


@dataclass
class Batch:
    """One batch as the engine hands it over."""

    positions: np.ndarray  # which of the items given these images are (readable ones only)
    images: torch.Tensor  # uint8 (b, S, S) on the host, as decoded or cached
    x: torch.Tensor | None  # the network input on the device; None when nothing in the batch was readable
    extra: tuple  # the rest of the dataset's answer: (targets, rows) for a cache
    count: int  # items this batch consumed, readable or not (progress counts these)


class InferenceEngine:
    """A model in eval mode on a device, with that device's fast paths and the test-time flip."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device | str,
        image_size: int,
        tta: bool = False,
        mixed_precision: bool | None = None,
        channels_last: bool | None = None,
        prepare: bool = True,
    ):
        self.device = torch.device(device)
        amp, cl = fast_paths(self.device)
        self.amp_dtype = amp_dtype(self.device) if (amp if mixed_precision is None else mixed_precision) else None
        self.channels_last = cl if channels_last is None else channels_last
        self.image_size = int(image_size)
        self.tta = tta
        if prepare:  # a model the trainer already placed (and maybe wrapped) is left as it is
            model = model.to(self.device)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()

    def autocast(self):
        """Mixed precision where the engine uses it; a no-op context elsewhere."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # --- where images come from -------------------------------------------------------------
    def batches(
        self,
        dataset: Dataset,
        batch_size: int,
        positions: Sequence[int] | None = None,
        workers: int | None = None,
        description: str | None = None,
        skipped: list | None = None,
    ) -> Iterator[Batch]:
        """Batches of `dataset` (all of it, or `positions`, `batch_size` at a time) with a progress bar.

        Each batch's `positions` says which items it holds (a cache batch reads its rows in
        ascending order). For a `FileDataset`, unreadable files are appended to `skipped` as
        (path, reason).
        """
        order = np.arange(len(dataset)) if positions is None else np.asarray(positions, dtype=np.int64)
        index_lists = [order[c].tolist() for c in chunked(len(order), batch_size)]
        is_files = isinstance(dataset, FileDataset)
        if workers is None:
            workers = default_workers("decode" if is_files else "read", self.device.type)
        loader = make_loader(dataset, index_lists, workers, self.device)
        self.model.eval()  # the trainer's model comes back from training mode every epoch
        bar = progress_bar(len(order), description) if description else nullcontext()
        with bar as b:
            for wanted, item in zip(index_lists, loader):  # the loader keeps the sampler's order
                images = item[0]
                if is_files:
                    images = torch.from_numpy(images)
                    if self.device.type == "cuda":
                        images = images.pin_memory()  # so the copy below does not block
                    read, lost = item[1], item[2]
                    if skipped is not None:
                        skipped.extend(lost)
                    extra: tuple = ()
                else:
                    read, extra = np.sort(np.asarray(wanted)), tuple(item[1:])  # CacheDataset reads ascending
                x = to_model_input(images, self.image_size, self.device, self.channels_last) if len(images) else None
                yield Batch(read, images, x, extra, len(wanted))
                if b is not None:
                    b.advance(len(wanted))

    # --- what comes out ---------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, x: torch.Tensor, mode: str = "probs") -> torch.Tensor:
        """float32 logits, probabilities (averaged with the flipped image when `tta`) or pooled features."""
        if mode not in MODES:
            raise ValueError(f"unknown inference mode {mode!r}; choose one of {', '.join(MODES)}")
        with self.autocast():
            if mode == "features":
                return self.model.forward_head(self.model.forward_features(x), pre_logits=True).float()
            logits = self.model(x).float()
            if mode == "logits":
                return logits
            probs = torch.sigmoid(logits)
            if self.tta:
                probs = (probs + torch.sigmoid(self.model(torch.flip(x, dims=[-1])).float())) / 2
            return probs

    def run(self, batches: Iterator[Batch], mode: str = "probs", width: int = 0) -> np.ndarray:
        """Outputs (n, width) of every readable image in `batches`, in order, as float32."""
        out = [self.forward(b.x, mode).cpu().numpy() for b in batches if b.x is not None]
        return np.concatenate(out) if out else np.zeros((0, width), dtype=np.float32)


def _width(model: torch.nn.Module, mode: str) -> int:
    return int(getattr(model, "num_features" if mode == "features" else "num_labels", 0))


def run_rows(
    model: torch.nn.Module,
    data: PreparedData,
    rows: np.ndarray,
    image_size: int,
    mode: str,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    tta: bool = False,
    description: str | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """`mode` outputs (n, ...) for cache rows, in the order given."""
    engine = InferenceEngine(model, device, image_size, tta=tta)
    batches = engine.batches(CacheDataset(data, np.asarray(rows)), batch_size, workers=workers, description=description)
    return engine.run(batches, mode, _width(model, mode))


def predict_probs(
    model: torch.nn.Module,
    data: PreparedData,
    rows: np.ndarray,
    image_size: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    tta: bool = False,
    description: str = "predict",
    workers: int | None = None,
) -> np.ndarray:
    """Sigmoid probabilities (n, L) for cache rows; `tta` averages with the horizontal flip."""
    return run_rows(model, data, rows, image_size, "probs", batch_size, device, tta, description, workers)


def extract_features(
    model: torch.nn.Module,
    data: PreparedData,
    rows: np.ndarray,
    image_size: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    description: str = "features",
    workers: int | None = None,
) -> np.ndarray:
    """Pooled final-convolution features (n, C): the latent representation before the head."""
    return run_rows(model, data, rows, image_size, "features", batch_size, device, False, description, workers)


def iter_batches(data: PreparedData, rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(row numbers, uint8 tensor (b, S, S)) for `rows` in order, `batch_size` at a time (no model)."""
    dataset = CacheDataset(data, np.asarray(rows))
    for images, _targets, got in make_loader(dataset, chunked(len(dataset), batch_size), 0, torch.device("cpu")):
        yield got.numpy(), images


def resolve_data(data: Path | None, run_dir: Path) -> PreparedData:
    """The cache a command reads: `--data` when given, else the one the run was trained on."""
    if data is not None:
        return PreparedData(data)
    recorded = read_manifest(run_dir).get("data")
    if not recorded:
        raise CxrError(f"{run_dir}: the run does not record its data directory; pass --data DIR")
    if not Path(recorded).is_dir():
        raise CxrError(f"{run_dir}: its data directory {recorded} is gone; pass --data DIR")
    info(f"using the run's data: {recorded}")
    return PreparedData(recorded)


def predictions_table(
    keys: dict[str, Sequence],
    labels: list[str],
    probs: np.ndarray,
    *,
    thresholds: dict[str, float] | None = None,
    targets: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per image: the columns that name it, then the model's answer per label.

    `keys` are the leading columns in order (evaluate: id, patient, view, fold; predict: file).
    Then prob_<label> for every label (rounded to 6 decimals), pred_<label> (1 at or above the
    threshold, 0 below, judged on the rounded probability so the file agrees with itself) for the
    labels in `thresholds`, and true_<label> (1, 0 or blank for a missing label) when `targets`
    are given.
    """
    table = pd.DataFrame({name: np.asarray(values) for name, values in keys.items()})
    for j, label in enumerate(labels):
        table[f"prob_{label}"] = np.round(probs[:, j].astype(np.float64), 6)
    for label, t in (thresholds or {}).items():
        table[f"pred_{label}"] = (table[f"prob_{label}"] >= t).astype(int)
    if targets is not None:
        for j, label in enumerate(labels):
            table[f"true_{label}"] = pd.array(np.where(np.isnan(targets[:, j]), np.nan, targets[:, j]), dtype="Int64")
    return table


def write_predictions(path: Path, table: pd.DataFrame) -> None:
    """A predictions table as CSV (written whole or not at all), without the index."""
    atomic_write_text(path, csv_text(table, index=False))
