"""Multi-process training with `torchrun`: process group setup, rank checks, gathering.

`torchrun --nproc_per_node N -m cxrtool pretrain ...` starts N copies with RANK, WORLD_SIZE,
LOCAL_RANK and a rendezvous address in the environment. `setup()` reads them and joins the group
(gloo on CPU, nccl on CUDA, one GPU per local rank); without them it is a single process and
every helper here is a cheap no-op. Only rank 0 writes files and shows progress; validation
predictions are gathered from all processes so every rank computes the same metrics and takes
the same decisions (learning-rate plateau, early stopping, non-finite loss).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """The ranks torchrun put in the environment (a single process when there are none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group if torchrun started us; returns the ranks and this process's device."""
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_sum(info: DistInfo, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of small float lists over all processes."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_min(info: DistInfo, value: int, device: torch.device) -> int:
    """The smallest of an integer over all processes."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_arrays(info: DistInfo, *arrays: np.ndarray) -> list[np.ndarray]:
    """Concatenate each array over processes (rank order); identical result on every rank."""
    if not info.enabled:
        return list(arrays)
    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, arrays)
    return [np.concatenate([p[i] for p in parts]) for i in range(len(arrays))]


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's value of `obj` on every process (e.g. the run directory it created)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
