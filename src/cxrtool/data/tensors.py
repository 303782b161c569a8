"""From cached uint8 pixels to the network's input, on the device.

The cache stores S x S uint8 images (256 by default); the network sees `image_size` x
`image_size` floats in [0, 1] with one channel (224 by default). Moving uint8 to the device and
resizing there keeps the host work (and the PCIe traffic) four times smaller than shipping
floats. Training, evaluation, prediction, CAM and embedding all call `to_model_input`, so the
preprocessing is one definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model_input(
    batch_u8: torch.Tensor, image_size: int, device: torch.device | str | None = None, channels_last: bool = False
) -> torch.Tensor:
    """(B, S, S) or (B, 1, S, S) uint8 -> (B, 1, image_size, image_size) float32 in [0, 1]."""
    if device is not None:
        batch_u8 = batch_u8.to(device, non_blocking=True)
    x = batch_u8.unsqueeze(1) if batch_u8.ndim == 3 else batch_u8
    x = x.float().div_(255.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
