"""Train-step and loader throughput on an accelerator: the script to run when a GPU is at hand.

Measures, for densenet121 and resnet50 at 224 px, training images/s of a bare step (uint8 batch
on the device -> `to_model_input` -> forward -> masked BCE -> backward -> Adam) in four settings:
float32, mixed precision (bfloat16 where supported, else float16 with a gradient scaler),
channels_last, and both; then the loader's images/s from a generated cache through
`CacheDataset` + DataLoader (workers, pinned memory), i.e. whether the GPU would wait for data.
Prints markdown tables with the device's name for docs/performance.md.

    python benchmarks/bench_gpu.py                 # on a CUDA machine
    python benchmarks/bench_gpu.py --device cpu --steps 2 --batch-size 4 --archs tiny-cnn   # smoke test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_rate(arch: str, device: torch.device, amp: bool, channels_last: bool, batch_size: int,
                    steps: int, warmup: int, image_size: int = 224, cache_size: int = 256) -> float:
    from cxrtool.data.tensors import to_model_input
    from cxrtool.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, 14).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = (torch.bfloat16 if bf16 or device.type == "cpu" else torch.float16) if amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    images = torch.randint(0, 256, (batch_size, cache_size, cache_size), dtype=torch.uint8, device=device)
    targets = torch.randint(0, 2, (batch_size, 14), device=device).float()

    def step() -> None:
        x = to_model_input(images, image_size, device, channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def loader_rate(device: torch.device, workers: int, batch_size: int, n_images: int, size: int = 256) -> float:
    from torch.utils.data import DataLoader

    from cxrtool.data.cache import PreparedData, write_cache
    from cxrtool.data.dataset import CacheDataset, collate_batch

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n_images, size, size), dtype=np.uint8)
        index = pd.DataFrame({"id": [f"i{i}" for i in range(n_images)], "patient": [str(i) for i in range(n_images)],
                              "view": "PA", "split": "train", "source": "bench", "source_path": "-",
                              "Finding": rng.integers(0, 2, n_images).astype(float)})
        data = PreparedData(write_cache(Path(tmp) / "cache", images, index, ["Finding"]))
        dataset = CacheDataset(data, data.rows("train"))
        sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(dataset), batch_size, drop_last=False)
        loader = DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=collate_batch, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        seen, start = 0, None
        for epoch in range(2):  # the first epoch warms the page cache and starts the workers
            if epoch == 1:
                start = time.perf_counter()
            for batch_images, _, _ in loader:
                batch_images = batch_images.to(device, non_blocking=True)
                if epoch == 1:
                    seen += len(batch_images)
        sync(device)
        return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default="densenet121,resnet50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--loader-images", type=int, default=4096)
    parser.add_argument("--workers", default="0,4,8")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"device: {device_name(device)}; torch {torch.__version__}; batch {args.batch_size}; 224 px from a 256-px cache\n")
    print("| arch | float32 | mixed precision | channels_last | both | best speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for arch in args.archs.split(","):
        rates = [train_step_rate(arch, device, amp, cl, args.batch_size, args.steps, args.warmup)
                 for amp, cl in ((False, False), (True, False), (False, True), (True, True))]
        print(f"| {arch} | " + " | ".join(f"{r:,.0f}" for r in rates) + f" | {max(rates) / rates[0]:.2f}x |", flush=True)
    print("\ntraining images/s per setting above; loader images/s below (uint8 batches to the device)\n")
    print("| loader workers | images/s |")
    print("| ---: | ---: |")
    for workers in [int(w) for w in args.workers.split(",")]:
        print(f"| {workers} | {loader_rate(device, workers, args.batch_size, args.loader_images):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
