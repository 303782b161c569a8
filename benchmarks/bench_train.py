"""Training throughput: the whole trainer against a bare loop on tensors already in memory.

For each architecture (densenet121 and resnet50 at 224 px, batch 16) this measures
- bare: `model(x)`, BCE, backward, Adam step on a float batch that is already in memory;
- trainer: `cxrtool.train.pretrain` on a 256-px cache, i.e. memmap reads in a loader worker,
  uint8 -> float and the resize to 224, the `paper` augmentation, the masked loss, progress
  display and per-epoch bookkeeping, as its per-epoch `images_per_s` in metrics.csv.
The 2 cores are shared, so other work changes the speed from one minute to the next. To compare
like with like the two are interleaved in time: the trainer runs `--repeats` + 1 epochs and,
between its epochs (through its epoch callback), the bare loop runs a block of the same number
of steps. Each warm trainer epoch is compared with the bare blocks right before and after it,
and the median of those ratios gives the trainer's overhead (1 - trainer / bare).

    python benchmarks/bench_train.py [--steps 3] [--repeats 3] [--archs densenet121,resnet50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from machine import cpu_name
from random_cache import make_cache

from cxrtool.models import create_model
from cxrtool.progress import set_quiet
from cxrtool.train import TrainConfig, pretrain
from cxrtool.train.losses import masked_bce

BATCH, SIZE, CACHE, LABELS = 16, 224, 256, 14


class BareLoop:
    """forward / BCE / backward / Adam step on one float batch that is already in memory."""

    def __init__(self, arch: str):
        torch.manual_seed(0)
        self.model = create_model(arch, LABELS).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.x = torch.rand(BATCH, 1, SIZE, SIZE)
        self.y = (torch.rand(BATCH, LABELS) < 0.3).float()
        self.step()  # warm-up

    def step(self) -> None:
        loss = masked_bce(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def block(self, steps: int) -> float:
        """Images per second over `steps` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * BATCH / (time.perf_counter() - start)


def compare(arch: str, cache: Path, out: Path, steps: int, repeats: int, workers: int) -> tuple[float, float, float]:
    """(median bare images/s, median trainer images/s, median overhead) with the two interleaved."""
    bare = BareLoop(arch)
    blocks = [bare.block(steps)]
    cfg = TrainConfig(
        data=cache,
        out=out,
        arch=arch,
        weights="none",
        epochs=repeats + 1,
        batch_size=BATCH,
        image_size=SIZE,
        augment="paper",
        device="cpu",
        workers=workers,
        early_stop=0,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # keep stdout for the table
        run = pretrain(cfg, callbacks=[lambda epoch, row: blocks.append(bare.block(steps))])
    trainer = pd.read_csv(run / "metrics.csv")["images_per_s"].to_numpy()
    # Epoch e (1-based) ran between bare blocks e-1 and e; epoch 1 is the trainer's warm-up.
    ratios = [trainer[e - 1] / ((blocks[e - 1] + blocks[e]) / 2) for e in range(2, repeats + 2)]
    return float(np.median(blocks)), float(np.median(trainer[1:])), float(1 - np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--archs", default="densenet121,resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    set_quiet(True)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, no GPU; batch {BATCH}, {SIZE} px, {args.repeats} interleaved blocks of {args.steps} steps"
    )
    print()
    print(
        "| arch | bare loop (images/s, median) | whole trainer (images/s, median) | trainer overhead (median of paired ratios) |"
    )
    print("| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp) / "cache", args.steps * BATCH, BATCH, CACHE, LABELS).root
        for arch in args.archs.split(","):
            bare, full, overhead = compare(
                arch, cache, Path(tmp) / f"run-{arch}", args.steps, args.repeats, args.workers
            )
            print(f"| {arch} | {bare:.2f} | {full:.2f} | {100 * overhead:+.1f}% |", flush=True)


if __name__ == "__main__":
    main()
