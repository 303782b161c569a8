"""Batch augmentation on the training device: flips, rotation, translation, scale, intensity.

`--augment paper` follows the report: a random horizontal flip, a rotation within +-20 degrees,
a small translation and scaling, and brightness/contrast jitter. Every geometric part is folded
into one 2x3 affine matrix per image, so the whole batch is warped by a single
`affine_grid` + `grid_sample` call on the device rather than image by image in Python.
`--augment flip` only flips; `none` returns the batch unchanged. The random parameters are drawn
from the generator given, on that generator's device: the trainer passes one on the training
device, so building the matrices never copies from the host or waits for it (no host
synchronisation in a training step). A seed gives the same augmentation on a given device; CUDA
and CPU generators draw different numbers from the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MODES = ("none", "flip", "paper")


@dataclass(frozen=True)
class AugmentSettings:
    rotation_deg: float = 20.0
    translate: float = 0.08  # fraction of the image side
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1  # added, in [0, 1] intensity units
    contrast: float = 0.15  # multiplicative, around the image mean
    flip_p: float = 0.5


PAPER = AugmentSettings()


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) * (high - low) + low


def affine_matrices(n: int, gen: torch.Generator, settings: AugmentSettings = PAPER) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates (affine_grid's convention)."""
    angle = _uniform(n, -settings.rotation_deg, settings.rotation_deg, gen) * (math.pi / 180)
    scale = _uniform(n, *settings.scale, gen)
    shift = _uniform(2 * n, -settings.translate, settings.translate, gen).view(n, 2) * 2  # grid units span 2
    flip = torch.where(torch.rand(n, generator=gen, device=gen.device) < settings.flip_p, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Stacked rather than written into a host tensor: everything stays on the generator's device.
    row0 = torch.stack([cos * flip, -sin, shift[:, 0]], dim=1)
    row1 = torch.stack([sin * flip, cos, shift[:, 1]], dim=1)
    return torch.stack([row0, row1], dim=1)


def augment_batch(x: torch.Tensor, mode: str, gen: torch.Generator, settings: AugmentSettings = PAPER) -> torch.Tensor:
    """Augment float images (B, C, H, W) in [0, 1]; returns a new tensor on the same device.

    `gen` should live on `x`'s device (then nothing is copied); one elsewhere still works, at the
    cost of a copy per parameter.
    """
    if mode == "none" or x.shape[0] == 0:
        return x
    n = x.shape[0]
    if mode == "flip":
        flip = (
            (torch.rand(n, generator=gen, device=gen.device) < settings.flip_p)
            .to(x.device, non_blocking=True)
            .view(n, 1, 1, 1)
        )
        return torch.where(flip, torch.flip(x, dims=[-1]), x)
    if mode != "paper":
        raise ValueError(f"unknown augmentation {mode!r}; choose one of {', '.join(MODES)}")
    theta = affine_matrices(n, gen, settings).to(device=x.device, dtype=x.dtype, non_blocking=True)
    brightness = (
        _uniform(n, -settings.brightness, settings.brightness, gen)
        .to(x.device, x.dtype, non_blocking=True)
        .view(n, 1, 1, 1)
    )
    contrast = (
        _uniform(n, 1 - settings.contrast, 1 + settings.contrast, gen)
        .to(x.device, x.dtype, non_blocking=True)
        .view(n, 1, 1, 1)
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Zeros outside the image: radiographs are dark at their borders, so black fill looks natural.
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    return ((warped - mean) * contrast + mean + brightness).clamp_(0.0, 1.0)
