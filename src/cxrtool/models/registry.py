"""Architecture registry: name -> factory, with "did you mean" on unknown names.

Each entry builds a randomly initialised body; `build_model` puts it in an `XRayClassifier` for a
number of labels and loads a `weights` choice into it: "none" (random initialisation), "imagenet"
(torchvision's weights, from the torch cache or downloaded into it; see `models.weights`), or a
path to a local weights file (safetensors, a weights-only PyTorch state dict, or a cxrtool
checkpoint). Loading a file never runs code from it, and reports what matched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CxrError, did_you_mean
from ..progress import is_quiet
from .backbones import TinyCNN, XRayClassifier, densenet_body, resnet_body
from .resnet import ResNet50
from .weights import LoadReport, imagenet_state_dict, load_body_weights


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build_body: Callable[[], tuple[nn.Module, int]]  # () -> (randomly initialised body, num_features)
    imagenet: str | None  # torchvision weights enum name, when ImageNet weights exist
    # The smallest input side (px) the body runs on, measured: a training step at batch 2 and an
    # inference at batch 1 (tests/test_disk_errors.py checks it, and for densenet121 that one pixel less fails).
    min_image_size: int = 8


_REGISTRY: dict[str, ArchSpec] = {}
IMAGE_SIZE_RANGE = (16, 2048)  # what --image-size accepts for any architecture


def register(name: str, description: str, imagenet: str | None = None, min_image_size: int = 8):
    def deco(fn: Callable[[], tuple[nn.Module, int]]):
        _REGISTRY[name] = ArchSpec(name, description, fn, imagenet, min_image_size)
        return fn

    return deco


def check_image_size(arch: str | None, image_size: int, option: str = "--image-size") -> None:
    """Refuse an input side outside IMAGE_SIZE_RANGE or below what `arch` runs on, naming the option.

    `arch` None (not known yet: a finetune takes its parent's) checks the range only.
    """
    low, high = IMAGE_SIZE_RANGE
    if not low <= int(image_size) <= high:
        raise CxrError(f"{option}: must be between {low} and {high} pixels (got {image_size})")
    smallest = max(low, get_spec(arch).min_image_size) if arch is not None else low
    if int(image_size) < smallest:
        raise CxrError(
            f"{option}: {arch} needs at least {smallest} pixels (its pooling leaves nothing of a smaller "
            f"image; got {image_size}); give --image-size {smallest} or more, or another --arch"
        )


def arch_names() -> list[str]:
    return list(_REGISTRY)


def get_spec(arch: str) -> ArchSpec:
    if arch not in _REGISTRY:
        raise CxrError(
            f"--arch: unknown architecture {arch!r}; choose one of {', '.join(_REGISTRY)}.{did_you_mean(arch, list(_REGISTRY))}"
        )
    return _REGISTRY[arch]


@register(
    "densenet121",
    "DenseNet-121 (torchvision), as CheXNet; 7x7 features at 224",
    "DenseNet121_Weights.IMAGENET1K_V1",
    min_image_size=29,  # below, the last transition's 2x2 average pool gets a 1x1 map
)
def _densenet121():
    # lazy: torchvision, only for the architectures built from it
    import torchvision.models as tvm

    return densenet_body(tvm.densenet121(weights=None))


@register("resnet50", "ResNet-50 (torchvision)", "ResNet50_Weights.IMAGENET1K_V1")
def _resnet50():
    # lazy: torchvision, only for the architectures built from it
    import torchvision.models as tvm

    return resnet_body(tvm.resnet50(weights=None))


@register(
    "cxr-resnet50",
    "our own ResNet-50 from He et al. 2016 (torchvision-compatible weights)",
    "ResNet50_Weights.IMAGENET1K_V1",
)
def _cxr_resnet50():
    return resnet_body(ResNet50())


@register("resnet18", "ResNet-18 (torchvision): a small network for CPU work", "ResNet18_Weights.IMAGENET1K_V1")
def _resnet18():
    # lazy: torchvision, only for the architectures built from it
    import torchvision.models as tvm

    return resnet_body(tvm.resnet18(weights=None))


@register("tiny-cnn", "a 0.1 M-parameter CNN for tests and the CPU demo (no ImageNet weights)")
def _tiny():
    model = TinyCNN()
    return model, model.num_features


# ---------------------------------------------------------------- building


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a weights file, never unpickling code: safetensors or torch.load(weights_only)."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "model.safetensors"
        if not candidate.is_file():
            raise CxrError(f"--weights: {path} is a folder without model.safetensors")
        path = candidate
    if not path.is_file():
        raise CxrError(f"--weights: {path}: file not found (use imagenet, none, or a weights file)")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:
            raise CxrError(f"--weights: {path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CxrError(
            f"--weights: {path}: not a weights-only state dict ({type(exc).__name__}); "
            "save weights with safetensors or torch.save(model.state_dict())"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CxrError(f"--weights: {path}: holds no state dict")
    return state


def build_model(
    arch: str, num_labels: int, weights: str | Path = "none", allow_partial: bool = False
) -> tuple[XRayClassifier, LoadReport | None]:
    """Build `arch` with `num_labels` outputs; weights: 'none', 'imagenet' or a local file.

    Returns the model and, when weights were loaded, the report of what matched (also kept on
    the model as `weights_report`, for the run's manifest).
    """
    spec = get_spec(arch)
    if num_labels < 1:
        raise CxrError("the data has no labels to train on")
    choice = str(weights)
    if choice == "imagenet" and spec.imagenet is None:
        raise CxrError(f"--weights imagenet: {arch} has no ImageNet weights; use --weights none or a file")
    body, num_features = spec.build_body()
    model = XRayClassifier(arch, body, num_features, num_labels)
    report = None
    if choice == "imagenet":
        state, url = imagenet_state_dict(spec.imagenet, progress=not is_quiet())
        report = load_body_weights(model, state, f"--weights imagenet ({spec.imagenet}, {url})", allow_partial)
    elif choice not in ("none", "scratch"):
        report = load_body_weights(model, read_state_dict(Path(choice)), f"--weights {choice}", allow_partial)
    model.weights_report = report.manifest() if report is not None else None
    return model, report


def create_model(
    arch: str, num_labels: int, weights: str | Path = "none", allow_partial: bool = False
) -> XRayClassifier:
    """`build_model` without the report."""
    return build_model(arch, num_labels, weights, allow_partial)[0]
