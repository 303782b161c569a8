"""Class activation maps: CAM, Grad-CAM and Grad-CAM++ for an `XRayClassifier`.

CAM (Zhou et al. 2016) is the report's map: for class c, M_c = sum_k w_{c,k} f_k over the final
convolution's activations f (taken at `model.cam_layer`) and the linear head's weights. Its spatial
mean plus the head's bias is exactly the class logit, so its values are in logit units. Grad-CAM
(Selvaraju et al. 2017) weighs each channel by the spatial mean of the logit's gradient and keeps
the positive part; Grad-CAM++ (Chattopadhay et al. 2018) weighs the positive gradients pixel by
pixel with the closed-form alpha coefficients. All three read the activations through a forward
hook that is removed in a `finally` block, so mapping any number of images leaves the model as it
was: no hook, no retained graph, no growing memory.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("cam", "gradcam", "gradcam++")


@dataclass
class MapBatch:
    """Low-resolution maps (B, K, h, w) for K classes, and the logits (B, L) of the same pass."""

    maps: torch.Tensor
    logits: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits.float())


@contextmanager
def capture_activations(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record `layer`'s output during the block; the hook is gone afterwards, whatever happens."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["activations"] = output

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
        store.clear()  # drop the reference to the activations (and through them, the graph)


def _head(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError("CAM needs a model whose `head` is one nn.Linear over pooled features")
    return head


def _forward(model: nn.Module, x: torch.Tensor, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations of cam_layer, logits) for one pass."""
    with torch.set_grad_enabled(need_grad), capture_activations(model.cam_layer) as store:
        logits = model(x)
        if "activations" not in store:
            raise RuntimeError("model.cam_layer did not run during the forward pass")
        activations = store["activations"]
    return activations, logits


def low_res_maps(model: nn.Module, x: torch.Tensor, classes: Sequence[int], method: str = "cam") -> MapBatch:
    """Maps at the feature map's resolution for `classes` (indices into the model's labels).

    `x` is a float batch in [0, 1] with 1 or 3 channels, as the model takes it. The model is put
    in eval mode (batch norm must not mix images). Returns float32 maps (B, len(classes), h, w).
    """
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    model.eval()
    classes = [int(c) for c in classes]
    if method == "cam":
        activations, logits = _forward(model, x, need_grad=False)
        with torch.no_grad():
            weight = _head(model).weight[classes].to(activations.dtype)  # (K, C)
            maps = torch.einsum("kc,bchw->bkhw", weight, activations)
        return MapBatch(maps.float(), logits.detach().float())

    # The input asks for gradients too, so a model with frozen weights still gets its maps.
    activations, logits = _forward(model, x.detach().requires_grad_(True), need_grad=True)
    maps = []
    try:
        for i, c in enumerate(classes):
            # Images in a batch are independent in eval mode, so the gradient of the summed
            # logit is each image's own gradient.
            (grads,) = torch.autograd.grad(logits[:, c].sum(), activations, retain_graph=i < len(classes) - 1)
            maps.append(
                _gradcam(activations.detach(), grads)
                if method == "gradcam"
                else _gradcam_pp(activations.detach(), grads)
            )
    finally:
        del activations  # the graph dies with the last reference to it
    return MapBatch(torch.stack(maps, dim=1).float(), logits.detach().float())


def _gradcam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return F.relu((weights * activations).sum(dim=1))


def _gradcam_pp(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    g2, g3 = grads.pow(2), grads.pow(3)
    total = activations.sum(dim=(2, 3), keepdim=True)
    denom = 2 * g2 + total * g3
    alpha = torch.where(
        denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(denom)
    )
    weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
    return F.relu((weights * activations).sum(dim=1))


@dataclass(frozen=True)
class Grid:
    """Where feature cell i sits in the input: centre = stride * i + offset (input pixels, continuous)."""

    stride_y: float
    offset_y: float
    stride_x: float
    offset_x: float


_GRIDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int], Grid]] = weakref.WeakKeyDictionary()


def _pair(v) -> tuple[float, float]:
    return (float(v[0]), float(v[1])) if isinstance(v, (tuple, list)) else (float(v), float(v))


def feature_grid(model: nn.Module, size: int, channels: int = 1) -> Grid:
    """The receptive-field centres of the feature map for a `size` x `size` input.

    A strided network's grid starts at the first pixel: with 'same' padding, feature cell i of a
    stride-32 ResNet is centred on input pixel 32 i, not 32 i + 16 as a plain resize assumes (half
    a cell, 16 pixels at 224). The grid is found by following one forward pass through every
    convolution and pooling layer, keyed by resolution so that parallel branches (a ResNet's
    downsample path) agree instead of adding up; the result is cached per model and size.
    """
    per_model = _GRIDS.setdefault(model, {})
    key = (int(size), int(channels))
    if key in per_model:
        return per_model[key]
    # resolution -> (stride_y, offset_y, stride_x, offset_x); pixel i's centre is i + 0.5.
    known: dict[tuple[int, int], tuple[float, float, float, float]] = {(size, size): (1.0, 0.5, 1.0, 0.5)}

    def hook(module, inputs, output):
        h_in, w_in = inputs[0].shape[-2:]
        h_out, w_out = output.shape[-2:]
        if (h_in, w_in) not in known or (h_out, w_out) in known:
            return
        sy, oy, sx, ox = known[(h_in, w_in)]
        k, st = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        pad = _pair(module.padding) if not isinstance(module.padding, str) else (0.0, 0.0)
        dil = _pair(getattr(module, "dilation", 1))
        if isinstance(module.padding, str) and module.padding == "same":
            pad = ((k[0] - 1) * dil[0] / 2, (k[1] - 1) * dil[1] / 2)
        known[(h_out, w_out)] = (
            sy * st[0],
            oy + sy * ((k[0] - 1) * dil[0] / 2 - pad[0]),
            sx * st[1],
            ox + sx * ((k[1] - 1) * dil[1] / 2 - pad[1]),
        )

    spatial = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    handles = [m.register_forward_hook(hook) for m in model.cam_layer.modules() if isinstance(m, spatial)]
    try:
        param = next(model.parameters())
        with torch.no_grad():
            x = torch.full((1, channels, size, size), 0.5, device=param.device, dtype=param.dtype)
            model.eval()
            with capture_activations(model.cam_layer) as store:
                model(x)
                h, w = store["activations"].shape[-2:]
    finally:
        for handle in handles:
            handle.remove()
    if (h, w) in known:
        grid = Grid(*known[(h, w)])
    else:  # layers we cannot follow: fall back to the plain resize's assumption
        grid = Grid(size / h, size / h / 2, size / w, size / w / 2)
    per_model[key] = grid
    return grid


def upsample(maps: torch.Tensor, size: int, grid: Grid | None = None, input_size: int | None = None) -> torch.Tensor:
    """(B, K, h, w) -> (B, K, size, size), bilinear.

    Without `grid`, a plain resize (cell i centred at (i + 0.5) * size / h). With the `grid` of an
    `input_size` input, each cell is placed at its receptive-field centre, scaled to `size`, and
    the map is held constant beyond the outermost centres.
    """
    h, w = maps.shape[-2:]
    if grid is None:
        if h == size and w == size:
            return maps
        return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
    scale = (input_size or size) / size
    centres = (torch.arange(size, device=maps.device, dtype=torch.float32) + 0.5) * scale  # in input pixels
    gy = (centres - grid.offset_y) / grid.stride_y  # in feature cells
    gx = (centres - grid.offset_x) / grid.stride_x
    # grid_sample with align_corners=True maps -1 and 1 to the first and last cell centres.
    ny = gy / max(h - 1, 1) * 2 - 1 if h > 1 else torch.zeros_like(gy)
    nx = gx / max(w - 1, 1) * 2 - 1 if w > 1 else torch.zeros_like(gx)
    b, k = maps.shape[:2]
    sample = torch.stack(torch.meshgrid(ny, nx, indexing="ij")[::-1], dim=-1)  # (size, size, 2) as (x, y)
    sample = sample.unsqueeze(0).expand(b * k, -1, -1, -1)
    out = F.grid_sample(
        maps.reshape(b * k, 1, h, w).float(), sample, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out.reshape(b, k, size, size)


def class_activation_maps(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[int],
    method: str = "cam",
    size: int | None = None,
    align: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps (B, K, size, size) for `classes` at `size` (default: x's side), and probabilities (B, L).

    `align` places each feature cell at its receptive-field centre (see `feature_grid`); without it
    the maps are resized plainly, as most CAM code does.
    """
    batch = low_res_maps(model, x, classes, method)
    grid = feature_grid(model, int(x.shape[-1]), int(x.shape[1])) if align else None
    return upsample(batch.maps, size or int(x.shape[-1]), grid, int(x.shape[-1])), batch.probs


def normalise(m: torch.Tensor | np.ndarray):
    """Min-max scale one map to [0, 1]; a flat map (no preference anywhere) becomes all zeros."""
    lo, hi = m.min(), m.max()
    if float(hi - lo) <= 1e-12 * max(1.0, float(abs(hi))):
        return m * 0
    return (m - lo) / (hi - lo)
