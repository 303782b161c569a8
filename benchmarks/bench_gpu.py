"""GPU throughput: the real trainer and inference engine against bare loops, precision settings, loader.

On one device and one generated 256-px cache, for each architecture (densenet121 and resnet50 at
224 px by default) this measures:
- precision: images/s of a bare training step (uint8 batch already on the device ->
  `to_model_input` -> forward -> masked BCE -> backward -> Adam) in float32, mixed precision
  (bfloat16 where supported, else float16 with a gradient scaler), channels_last, and both;
- trainer vs bare: `cxrtool.train.pretrain` (loader workers, pinned memory, augmentation on the
  device, the step, progress, the loss read every few steps) as its warm epoch's `images_per_s`
  in metrics.csv, against the bare step at the trainer's own settings (mixed precision and
  channels_last on CUDA, neither on CPU) on the same data;
- inference: the inference engine (`predict_probs` over the cache: loader, copies, the engine's
  settings) against a bare forward on a batch already on the device;
- loader: images/s of `CacheDataset` + DataLoader with 4, 8 and 16 workers, batches copied to
  the device (whether the GPU would wait for data).
It prints markdown tables for docs/performance.md and, with `--json FILE`, writes the figures.

    python benchmarks/bench_gpu.py --json gpu.json     # on a CUDA machine (the figures in the docs)
    python benchmarks/bench_gpu.py --smoke             # CPU, tiny network and sizes: checks it runs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from random_cache import make_cache

LABELS = 14
SMOKE = dict(
    device="cpu",
    archs="tiny-cnn",
    batch_size=4,
    steps=2,
    warmup=1,
    image_size=32,
    cache_size=40,
    train_images=16,
    loader_images=32,
    workers="0,1",
)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(arch: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    from cxrtool.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, LABELS).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    from cxrtool.device import amp_dtype

    return amp_dtype(device) if amp else None


def _rate(fn, device: torch.device, steps: int, warmup: int, batch_size: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def bare_train_rate(arch: str, device: torch.device, amp: bool, channels_last: bool, a: argparse.Namespace) -> float:
    """Images/s of forward + loss + backward + Adam on a uint8 batch already on the device."""
    from cxrtool.data.tensors import to_model_input
    from cxrtool.train.losses import masked_bce

    model = _model(arch, device, channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = _dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    images = torch.randint(0, 256, (a.batch_size, a.cache_size, a.cache_size), dtype=torch.uint8, device=device)
    targets = (torch.rand(a.batch_size, LABELS, device=device) < 0.3).float()

    def step() -> None:
        x = to_model_input(images, a.image_size, device, channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = masked_bce(logits, targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return _rate(step, device, a.steps, a.warmup, a.batch_size)


def trainer_rate(arch: str, data, out: Path, a: argparse.Namespace) -> float:
    """The warm (second) epoch's images/s of the real trainer, as it records it in metrics.csv."""
    from cxrtool.train import TrainConfig, pretrain

    cfg = TrainConfig(
        data=data.root,
        out=out,
        arch=arch,
        weights="none",
        epochs=2,
        batch_size=a.batch_size,
        image_size=a.image_size,
        augment="paper",
        device=a.device,
        early_stop=0,
        select="last",
        workers=a.trainer_workers,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # keep stdout for the tables
        run = pretrain(cfg)
    return float(pd.read_csv(run / "metrics.csv")["images_per_s"].iloc[-1])


def bare_forward_rate(arch: str, device: torch.device, a: argparse.Namespace) -> float:
    """Images/s of a forward pass (the engine's settings) on a uint8 batch already on the device."""
    from cxrtool.data.tensors import to_model_input
    from cxrtool.device import fast_paths

    amp, channels_last = fast_paths(device)
    model = _model(arch, device, channels_last).eval()
    dtype = _dtype(device, amp)
    images = torch.randint(0, 256, (a.batch_size * 2, a.cache_size, a.cache_size), dtype=torch.uint8, device=device)

    @torch.no_grad()
    def forward() -> None:
        x = to_model_input(images, a.image_size, device, channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            torch.sigmoid(model(x).float())

    return _rate(forward, device, a.steps, a.warmup, a.batch_size * 2)


def engine_rate(arch: str, data, device: torch.device, a: argparse.Namespace) -> float:
    """Images/s of the inference engine over the cache's train rows (loader, copies, forward)."""
    from cxrtool.inference import predict_probs

    model = _model(arch, device, False)
    rows = data.rows("train")
    predict_probs(
        model, data, rows[: a.batch_size * 2], a.image_size, a.batch_size * 2, device, description=None
    )  # warm-up
    sync(device)
    start = time.perf_counter()
    predict_probs(model, data, rows, a.image_size, a.batch_size * 2, device, description=None)
    sync(device)
    return len(rows) / (time.perf_counter() - start)


def loader_rate(data, device: torch.device, workers: int, batch_size: int) -> float:
    """Images/s of shuffled cache batches through the DataLoader to the device (second pass)."""
    from torch.utils.data import DataLoader

    from cxrtool.data.dataset import CacheDataset, collate_batch

    dataset = CacheDataset(data, data.rows("train"))
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(dataset), batch_size, drop_last=False)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_batch,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    seen, start = 0, 0.0
    for epoch in range(2):  # the first pass warms the page cache and starts the workers
        if epoch == 1:
            start = time.perf_counter()
        for images, _, _ in loader:
            images = images.to(device, non_blocking=True)
            seen += len(images) if epoch == 1 else 0
    sync(device)
    return seen / (time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny network, tiny sizes: checks the script runs")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--archs", default="densenet121,resnet50")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed steps per bare measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--cache-size", type=int, default=256)
    p.add_argument(
        "--train-images", type=int, default=3200, help="images in the trainer's epoch (and the engine's pass)"
    )
    p.add_argument("--trainer-workers", type=int, default=8)
    p.add_argument("--loader-images", type=int, default=8192)
    p.add_argument("--workers", default="4,8,16", help="loader worker counts to time")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    if a.smoke:
        for key, value in SMOKE.items():
            setattr(a, key, value)
        a.trainer_workers = 0
    return a


def main(argv: list[str] | None = None) -> dict:
    from cxrtool.progress import set_quiet

    a = parse_args(argv)
    set_quiet(True)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    archs = a.archs.split(",")
    out: dict = {
        "device": device_name(device),
        "torch": torch.__version__,
        "batch_size": a.batch_size,
        "image_size": a.image_size,
        "cache_size": a.cache_size,
        "smoke": a.smoke,
        "precision": {},
        "trainer": {},
        "inference": {},
        "loader": {},
    }
    print(
        f"device: {out['device']}; torch {torch.__version__}; batch {a.batch_size}; "
        f"{a.image_size} px from a {a.cache_size}-px cache{' (smoke run: tiny sizes, not a measurement)' if a.smoke else ''}\n"
    )
    settings = {"float32": (False, False), "mixed": (True, False), "channels_last": (False, True), "both": (True, True)}
    print("bare training step, images/s\n\n| arch | float32 | mixed precision | channels_last | both | best speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for arch in archs:
        rates = {name: bare_train_rate(arch, device, amp, cl, a) for name, (amp, cl) in settings.items()}
        out["precision"][arch] = rates
        print(
            f"| {arch} | "
            + " | ".join(f"{r:,.1f}" for r in rates.values())
            + f" | {max(rates.values()) / rates['float32']:.2f}x |",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        data = make_cache(Path(tmp) / "cache", a.train_images, a.batch_size, a.cache_size, LABELS)
        on_cuda = device.type == "cuda"
        trainer_setting = "both" if on_cuda else "float32"  # what the trainer itself uses (fast_paths)
        print(
            f"\nreal trainer epoch vs bare step ({trainer_setting}), and inference engine vs bare forward, images/s\n"
        )
        print("| arch | bare step | trainer | trainer / bare | bare forward | engine | engine / bare |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for arch in archs:
            amp_cl = settings[trainer_setting]
            bare = bare_train_rate(arch, device, *amp_cl, a)
            trainer = trainer_rate(arch, data, Path(tmp) / f"run-{arch}", a)
            forward = bare_forward_rate(arch, device, a)
            engine = engine_rate(arch, data, device, a)
            out["trainer"][arch] = {"bare": bare, "trainer": trainer, "ratio": trainer / bare}
            out["inference"][arch] = {"bare": forward, "engine": engine, "ratio": engine / forward}
            print(
                f"| {arch} | {bare:,.1f} | {trainer:,.1f} | {trainer / bare:.2f} | {forward:,.1f} | {engine:,.1f} | "
                f"{engine / forward:.2f} |",
                flush=True,
            )

        loader_data = make_cache(Path(tmp) / "loader", a.loader_images, 0, a.cache_size, LABELS)
        print(
            "\nloader: shuffled uint8 batches from the cache to the device\n\n| workers | images/s |\n| ---: | ---: |"
        )
        for workers in [int(w) for w in a.workers.split(",")]:
            rate = loader_rate(loader_data, device, workers, a.batch_size)
            out["loader"][str(workers)] = rate
            print(f"| {workers} | {rate:,.0f} |", flush=True)
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {a.json}")
    return out


if __name__ == "__main__":
    main()
