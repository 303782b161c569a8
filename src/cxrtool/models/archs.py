"""The architectures `--arch` accepts: one entry each, with everything the rest of the tool reads.

An entry (`ArchSpec`) names, besides its description and body builder:

- `imagenet`: torchvision's weights enum member, when ImageNet weights exist;
- `head`: the classifier head's name in the network the body comes from (torchvision's ResNet
  `fc`, DenseNet `classifier`): a weights file's tensors under it (and under our own `head`) are
  a head, never part of the backbone, so they are neither missing nor unexpected when loading;
- `first_conv`: the path, inside the body, of its first convolution (the stem a one-channel
  input convention replaces);
- `cam_layer`: the path, inside the classifier, of the module whose output is the final
  convolutional feature map (what CAM and Grad-CAM hook);
- `input`: the input convention it is built with (`backbones.INPUT_CONVENTIONS`);
- `min_image_size`: the smallest input side (px) it runs on, measured: a training step at batch 2
  and an inference at batch 1 (tests/test_disk_errors.py checks it, and for densenet121 that one
  pixel less fails).

This module imports no torch: `cxrtool --help` reads the names and descriptions from it. The
builders import torch and torchvision when a network is built, each saying so.
`tests/test_archs.py` builds every entry and checks each name against the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CxrError, did_you_mean


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build_body: Callable[[], tuple[Any, int]]  # () -> (randomly initialised body, num_features)
    first_conv: str
    imagenet: str | None = None
    head: str | None = None
    cam_layer: str = "body"
    input: str = "imagenet"
    min_image_size: int = 8


_REGISTRY: dict[str, ArchSpec] = {}
IMAGE_SIZE_RANGE = (16, 2048)  # what --image-size accepts for any architecture


def register(name: str, description: str, **fields: Any) -> Callable:
    """Decorate the body builder of architecture `name` (the other fields: see `ArchSpec`)."""

    def deco(fn: Callable[[], tuple[Any, int]]):
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = ArchSpec(name, description, fn, **fields)
        return fn

    return deco


def arch_names() -> list[str]:
    return list(_REGISTRY)


def arch_choices() -> str:
    """'densenet121, resnet50, ... or tiny-cnn': the names as help text says them."""
    names = arch_names()
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def get_spec(arch: str) -> ArchSpec:
    if arch not in _REGISTRY:
        raise CxrError(
            f"--arch: unknown architecture {arch!r}; choose one of {', '.join(_REGISTRY)}.{did_you_mean(arch, list(_REGISTRY))}"
        )
    return _REGISTRY[arch]


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


# ---------------------------------------------------------------- the entries


@register(
    "densenet121",
    "DenseNet-121 (torchvision), as CheXNet; 7x7 features at 224",
    imagenet="DenseNet121_Weights.IMAGENET1K_V1",
    head="classifier",
    first_conv="features.conv0",
    min_image_size=29,  # below, the last transition's 2x2 average pool gets a 1x1 map
)
def _densenet121():
    # lazy: torch and torchvision, only when a network is built (not for --help)
    import torchvision.models as tvm

    from .backbones import densenet_body

    return densenet_body(tvm.densenet121(weights=None))


@register(
    "resnet50",
    "ResNet-50 (torchvision)",
    imagenet="ResNet50_Weights.IMAGENET1K_V1",
    head="fc",
    first_conv="conv1",
)
def _resnet50():
    # lazy: torch and torchvision, only when a network is built (not for --help)
    import torchvision.models as tvm

    from .backbones import resnet_body

    return resnet_body(tvm.resnet50(weights=None))


@register(
    "cxr-resnet50",
    "our own ResNet-50 from He et al. 2016 (torchvision-compatible weights)",
    imagenet="ResNet50_Weights.IMAGENET1K_V1",
    head="fc",
    first_conv="conv1",
)
def _cxr_resnet50():
    # lazy: torch, only when a network is built (not for --help)
    from .backbones import resnet_body
    from .resnet import ResNet50

    return resnet_body(ResNet50())


@register(
    "resnet18",
    "ResNet-18 (torchvision): a small network for CPU work",
    imagenet="ResNet18_Weights.IMAGENET1K_V1",
    head="fc",
    first_conv="conv1",
)
def _resnet18():
    # lazy: torch and torchvision, only when a network is built (not for --help)
    import torchvision.models as tvm

    from .backbones import resnet_body

    return resnet_body(tvm.resnet18(weights=None))


@register(
    "tiny-cnn",
    "a 0.1 M-parameter CNN for tests and the CPU demo (no ImageNet weights)",
    first_conv="features.conv1",
)
def _tiny():
    # lazy: torch, only when a network is built (not for --help)
    from .backbones import TinyCNN

    model = TinyCNN()
    return model, model.num_features
