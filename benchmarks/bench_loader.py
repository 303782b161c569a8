"""Reading training batches: the prepared cache against a Dataset that decodes each PNG every time.

Writes N synthetic radiographs as PNG files (at --png-size) and prepares them into a cache at
--size, then reads shuffled batches of 32 for a few epochs through a torch DataLoader (no worker
processes for either, so the comparison is per core): (a) `CacheDataset` over the uint8 memmap;
(b) a Dataset that opens, decodes and resizes the PNG for every image, as many training scripts
do. Prints a markdown table (images/s) and the speed-up; the cache must be at least 20x faster.

    python benchmarks/bench_loader.py [--images 256] [--png-size 1024] [--size 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_prepare import cpu_name
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cxrtool.data.dataset import CacheDataset, collate_batch
from cxrtool.data.prepare import PrepareNihConfig, prepare_nih
from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS, SyntheticConfig, write_raw
from cxrtool.progress import set_quiet


class PngDataset(Dataset):
    """The slow way: decode the file on every access."""

    def __init__(self, files: list[Path], targets: np.ndarray, size: int):
        self.files, self.targets, self.size = files, targets, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            img = np.asarray(im.convert("L").resize((self.size, self.size), Image.Resampling.BILINEAR))
        return torch.from_numpy(img.copy()), torch.from_numpy(self.targets[i])


def rate(loader: DataLoader, epochs: int) -> float:
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            images = batch[0]
            _ = images.float().mean()  # touch the pixels
            n += len(images)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--png-size", type=int, default=1024)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    set_quiet(True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "raw"
        write_raw(root, SyntheticConfig(n_patients=max(1, args.images // 2), size=args.png_size, seed=0))
        data = prepare_nih(
            PrepareNihConfig(root=root, out=Path(tmp) / "cache", size=args.size, findings=PRETRAIN_FINDINGS, workers=2)
        )
        rows = np.arange(len(data))
        cache_loader = DataLoader(CacheDataset(data, rows), batch_size=32, shuffle=True, collate_fn=collate_batch)
        files = [root / "images" / i for i in data.index["id"]]
        png_loader = DataLoader(
            PngDataset(files, np.nan_to_num(data.targets()), args.size), batch_size=32, shuffle=True
        )
        rate(cache_loader, 1)  # warm both (page cache, imports)
        cache_rate = rate(cache_loader, args.epochs * 5)
        png_rate = rate(png_loader, args.epochs)
    print(
        f"{len(files)} images, PNG {args.png_size} px -> batches of 32 at {args.size} px; one process; "
        f"{cpu_name()}, no GPU\n"
    )
    print("| loader | images/s |")
    print("| --- | --- |")
    print(f"| cache (`CacheDataset`, uint8 memmap) | {cache_rate:,.0f} |")
    print(f"| decode PNG every time | {png_rate:,.1f} |")
    print(f"\nspeed-up: {cache_rate / png_rate:,.0f}x")


if __name__ == "__main__":
    main()
