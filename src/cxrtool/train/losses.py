"""The multi-label loss: binary cross-entropy summed over labels, skipping missing labels.

A cache built from several sources leaves a label NaN where its source does not annotate it;
those entries contribute neither loss nor gradient. Each image's loss is the sum over its
annotated labels (as in CheXNet's multi-label formulation), and a batch's loss is the mean over
images, so the scale does not depend on the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_image_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) binary cross-entropy summed over the annotated labels of each image."""
    logits = logits.float()
    known = ~torch.isnan(targets)
    safe_targets = torch.where(known, targets, torch.zeros_like(targets))
    loss = F.binary_cross_entropy_with_logits(logits, safe_targets, reduction="none")
    return (loss * known).sum(dim=1)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `per_image_bce` (a scalar to call backward on)."""
    return per_image_bce(logits, targets).mean()
