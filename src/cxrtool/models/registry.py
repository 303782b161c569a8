"""Building a network of the architecture registry (models/archs.py) and loading its first weights.

`build_model` builds an entry's randomly initialised body, puts it in an `XRayClassifier` (with
the entry's first convolution, CAM layer and input convention) for a number of labels and loads a
`weights` choice into it: "none" (random initialisation), "imagenet" (torchvision's weights,
from the torch cache or downloaded into it; see `models.weights`), or a path to a local weights
file (safetensors, a weights-only PyTorch state dict, or a cxrtool checkpoint). Loading a file
never runs code from it, and reports what matched.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import CxrError
from ..progress import is_quiet
from .archs import get_spec
from .backbones import INPUT_CONVENTIONS, XRayClassifier
from .weights import LoadReport, imagenet_state_dict, load_body_weights

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
    _channels, mean, std = INPUT_CONVENTIONS[spec.input]
    model = XRayClassifier(
        arch,
        body,
        num_features,
        num_labels,
        mean,
        std,
        convention=spec.input,
        first_conv=spec.first_conv,
        cam_layer=spec.cam_layer,
    )
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
