"""Architecture registry: name -> factory, with "did you mean" on unknown names.

Each entry builds an `XRayClassifier` for a number of labels and a `weights` choice: "none"
(random initialisation), "imagenet" (torchvision's weights, read from the local torch cache; the
offline failure is one line saying how to get them), or a path to a local weights file
(safetensors, a weights-only PyTorch state dict, or a cxrtool checkpoint). Loading a file never
runs code from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CxrError, did_you_mean
from .backbones import TinyCNN, XRayClassifier, densenet_body, resnet_body


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build_body: Callable[[bool], tuple[nn.Module, int]]  # imagenet? -> (body, num_features)
    imagenet: str | None  # torchvision weights enum name, when ImageNet weights exist


_REGISTRY: dict[str, ArchSpec] = {}


def register(name: str, description: str, imagenet: str | None = None):
    def deco(fn: Callable[[bool], tuple[nn.Module, int]]):
        _REGISTRY[name] = ArchSpec(name, description, fn, imagenet)
        return fn

    return deco


def arch_names() -> list[str]:
    return list(_REGISTRY)


def get_spec(arch: str) -> ArchSpec:
    if arch not in _REGISTRY:
        raise CxrError(f"--arch: unknown architecture {arch!r}; choose one of {', '.join(_REGISTRY)}.{did_you_mean(arch, list(_REGISTRY))}")
    return _REGISTRY[arch]


# ---------------------------------------------------------------- ImageNet weights, offline-safe


def imagenet_weights(enum_path: str):
    """torchvision's weights enum member, after checking the file is in the local torch cache."""
    import torchvision.models as tvm

    enum_name, member = enum_path.split(".")
    weights = getattr(getattr(tvm, enum_name), member)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise CxrError(
            f"--weights imagenet: {cached} is not in the torch cache and weights cannot be downloaded here; "
            f"on a machine with internet run `python -c \"import torchvision; torchvision.models.{enum_name}.{member}.get_state_dict()\"`, "
            f"copy {cached.name} to {cached.parent}/ (or set TORCH_HOME), or use --weights PATH / --weights none"
        )
    return weights


@register("densenet121", "DenseNet-121 (torchvision), as CheXNet; 7x7 features at 224", "DenseNet121_Weights.IMAGENET1K_V1")
def _densenet121(imagenet: bool):
    import torchvision.models as tvm

    weights = imagenet_weights("DenseNet121_Weights.IMAGENET1K_V1") if imagenet else None
    return densenet_body(tvm.densenet121(weights=weights))


@register("resnet50", "ResNet-50 (torchvision)", "ResNet50_Weights.IMAGENET1K_V1")
def _resnet50(imagenet: bool):
    import torchvision.models as tvm

    weights = imagenet_weights("ResNet50_Weights.IMAGENET1K_V1") if imagenet else None
    return resnet_body(tvm.resnet50(weights=weights))


@register("cxr-resnet50", "our own ResNet-50 from He et al. 2016 (torchvision-compatible weights)", "ResNet50_Weights.IMAGENET1K_V1")
def _cxr_resnet50(imagenet: bool):
    from .resnet import ResNet50

    model = ResNet50()
    if imagenet:
        state = imagenet_weights("ResNet50_Weights.IMAGENET1K_V1").get_state_dict(progress=False)
        model.load_state_dict(state)
    return resnet_body(model)


@register("resnet18", "ResNet-18 (torchvision): a small network for CPU work", "ResNet18_Weights.IMAGENET1K_V1")
def _resnet18(imagenet: bool):
    import torchvision.models as tvm

    weights = imagenet_weights("ResNet18_Weights.IMAGENET1K_V1") if imagenet else None
    return resnet_body(tvm.resnet18(weights=weights))


@register("tiny-cnn", "a 0.1 M-parameter CNN for tests and the CPU demo (no ImageNet weights)")
def _tiny(imagenet: bool):
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
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CxrError(f"--weights: {path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CxrError(f"--weights: {path}: not a weights-only state dict ({type(exc).__name__}); save weights with safetensors or torch.save(model.state_dict())") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CxrError(f"--weights: {path}: holds no state dict")
    return state


def load_body_weights(model: XRayClassifier, state: dict[str, torch.Tensor], source: str) -> None:
    """Load backbone weights given as a cxrtool model, a bare body, or a torchvision-style model."""
    body_keys = set(model.body.state_dict())
    candidates = []
    # cxrtool checkpoints prefix the body with "body."; DDP adds "module."; torchvision has none.
    for prefix in ("body.", "", "module.body.", "module."):
        mapped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        candidates.append({k: v for k, v in mapped.items() if k in body_keys})
    best = max(candidates, key=len)
    if len(best) < 0.9 * len(body_keys):
        raise CxrError(f"--weights: {source} does not fit {model.arch} ({len(best)} of {len(body_keys)} backbone tensors match)")
    bad = [k for k, v in best.items() if tuple(v.shape) != tuple(model.body.state_dict()[k].shape)]
    if bad:
        raise CxrError(f"--weights: {source}: tensor {bad[0]} has the wrong shape for {model.arch}")
    model.body.load_state_dict(best, strict=False)


def create_model(arch: str, num_labels: int, weights: str | Path = "none") -> XRayClassifier:
    """Build `arch` with `num_labels` outputs; weights: 'none', 'imagenet' or a local file."""
    spec = get_spec(arch)
    if num_labels < 1:
        raise CxrError("the data has no labels to train on")
    choice = str(weights)
    if choice == "imagenet" and spec.imagenet is None:
        raise CxrError(f"--weights imagenet: {arch} has no ImageNet weights; use --weights none or a file")
    body, num_features = spec.build_body(choice == "imagenet")
    model = XRayClassifier(arch, body, num_features, num_labels)
    if choice not in ("none", "imagenet", "scratch"):
        load_body_weights(model, read_state_dict(Path(choice)), choice)
    return model
