"""Seeded batch samplers whose order is a function of (seed, epoch) alone.

Because an epoch's order is recomputed from the seed and the epoch number, a resumed run draws
exactly the batches an uninterrupted one would, with no sampler state to save. Under
DistributedDataParallel every process computes the same global order and takes every
`world_size`-th batch position (as torch's DistributedSampler does), so the processes together
see each drawn image once per epoch.

`balancing_weights` gives each training image a weight so that, per label, positives and
negatives are drawn equally often (the report oversamples COVID-19 this way); the sampler then
draws with replacement in proportion to those weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    """A distinct, reproducible 63-bit seed per (seed, epoch, purpose)."""
    mixed = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(salt)]).generate_state(2, dtype=np.uint32)
    return int(mixed[0]) << 31 | int(mixed[1]) >> 1


def balancing_weights(targets: np.ndarray) -> np.ndarray:
    """(n,) sampling weights equalising positives and negatives of every label (NaN ignored).

    For one label this is exact: each class gets half of the expected draws. For several labels
    each image's weight is the mean of its per-label class weights, which pulls every rare class
    up without letting one label dominate.
    """
    targets = np.asarray(targets, dtype=np.float64)
    n, n_labels = targets.shape
    total = np.zeros(n)
    counted = np.zeros(n)
    for j in range(n_labels):
        y = targets[:, j]
        known = ~np.isnan(y)
        pos = known & (y >= 0.5)
        neg = known & (y < 0.5)
        if pos.sum() == 0 or neg.sum() == 0:
            continue  # a label with one class cannot be balanced; leave it out
        total[pos] += 0.5 / pos.sum()
        total[neg] += 0.5 / neg.sum()
        counted += known
    weights = np.where(counted > 0, total / np.maximum(counted, 1), 0.0)
    if weights.sum() == 0:
        return np.full(n, 1.0 / max(n, 1))
    weights[counted == 0] = weights[counted > 0].min()  # unannotated images are still drawn
    return weights / weights.sum()


class SeededBatchSampler(Sampler[list[int]]):
    """Batches of positions 0..n-1: shuffled (or drawn by weight) per (seed, epoch), sharded by rank."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_single: bool = True,
    ):
        self.n, self.batch_size, self.seed, self.shuffle = int(n), int(batch_size), int(seed), shuffle
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.rank, self.world_size = int(rank), int(world_size)
        self.drop_single = drop_single  # a batch of one image breaks batch normalisation in training
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """The epoch's global order of positions (identical in every process)."""
        if not self.shuffle:
            return np.arange(self.n)
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, salt=1))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=gen).numpy()
        return torch.randperm(self.n, generator=gen).numpy()

    def _global_batches(self) -> list[np.ndarray]:
        order = self.order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_single and len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()
        if self.world_size > 1:
            # Pad by repeating from the start so every process runs the same number of steps
            # (DistributedDataParallel needs matching collective calls).
            per_rank = math.ceil(len(batches) / self.world_size)
            batches = [batches[i % len(batches)] for i in range(per_rank * self.world_size)] if batches else batches
        return batches

    def __iter__(self):
        for batch in self._global_batches()[self.rank :: self.world_size]:
            yield batch.tolist()

    def num_images(self) -> int:
        """Images this process draws in the current epoch (for progress totals)."""
        return int(sum(len(b) for b in self._global_batches()[self.rank :: self.world_size]))

    def __len__(self) -> int:
        return len(self._global_batches()[self.rank :: self.world_size])
