"""Running a trained model over a prepared cache or loose files, in batches.

Shared by evaluate, predict, cam and embed: batches are read straight from the cache's memmap
(contiguous slices, no per-image Python decode), moved to the device as uint8 and turned into
network input by `to_model_input`, exactly as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .data.cache import PreparedData
from .data.tensors import to_model_input
from .errors import CxrError
from .progress import progress_bar


def iter_batches(data: PreparedData, rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(row numbers, uint8 tensor (b, S, S)) for `rows` in order, `batch_size` at a time."""
    images = data.images
    for start in range(0, len(rows), batch_size):
        chunk = np.asarray(rows[start : start + batch_size])
        yield chunk, torch.from_numpy(np.ascontiguousarray(images[chunk]))


@torch.no_grad()
def predict_probs(model: torch.nn.Module, data: PreparedData, rows: np.ndarray, image_size: int,
                  batch_size: int = 64, device: torch.device | str = "cpu", tta: bool = False,
                  description: str = "predict") -> np.ndarray:
    """Sigmoid probabilities (n, L) for cache rows; `tta` averages with the horizontal flip."""
    model.eval().to(device)
    out = []
    with progress_bar(len(rows), description) as bar:
        for chunk, batch in iter_batches(data, rows, batch_size):
            x = to_model_input(batch, image_size, device)
            probs = torch.sigmoid(model(x).float())
            if tta:
                probs = (probs + torch.sigmoid(model(torch.flip(x, dims=[-1])).float())) / 2
            out.append(probs.cpu().numpy())
            bar.advance(len(chunk))
    n_labels = model.num_labels if hasattr(model, "num_labels") else 0
    return np.concatenate(out) if out else np.zeros((0, n_labels), dtype=np.float32)


@torch.no_grad()
def extract_features(model: torch.nn.Module, data: PreparedData, rows: np.ndarray, image_size: int,
                     batch_size: int = 64, device: torch.device | str = "cpu",
                     description: str = "features") -> np.ndarray:
    """Pooled final-convolution features (n, C): the latent representation before the head."""
    model.eval().to(device)
    out = []
    with progress_bar(len(rows), description) as bar:
        for chunk, batch in iter_batches(data, rows, batch_size):
            feats = model.forward_head(model.forward_features(to_model_input(batch, image_size, device)), pre_logits=True)
            out.append(feats.float().cpu().numpy())
            bar.advance(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, getattr(model, "num_features", 0)), dtype=np.float32)


def resolve_data(data: Path | None, run_dir: Path) -> PreparedData:
    """The cache a command reads: `--data` when given, else the one the run was trained on."""
    from .progress import info
    from .runs import read_manifest

    if data is not None:
        return PreparedData(data)
    recorded = read_manifest(run_dir).get("data")
    if not recorded:
        raise CxrError(f"{run_dir}: the run does not record its data directory; pass --data DIR")
    if not Path(recorded).is_dir():
        raise CxrError(f"{run_dir}: its data directory {recorded} is gone; pass --data DIR")
    info(f"using the run's data: {recorded}")
    return PreparedData(recorded)
