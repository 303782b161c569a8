"""Device choice: `--device auto` picks CUDA, then Apple MPS, then the CPU.

Nothing else in the package assumes a GPU; mixed precision and channels_last are switched on
only where they pay off (CUDA), by the callers that ask `fast_paths(device)`.
"""

from __future__ import annotations

import torch

from .errors import CxrError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | None = "auto") -> torch.device:
    """The torch device for `--device`; asking for one that is absent is a one-line error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise CxrError(f"--device: unknown device {name!r}; choose auto, cpu, cuda or mps")
    if base == "cuda" and not torch.cuda.is_available():
        raise CxrError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CxrError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def fast_paths(device: torch.device) -> tuple[bool, bool]:
    """(mixed precision, channels_last): both on CUDA only, where they speed training up."""
    on_cuda = device.type == "cuda"
    return on_cuda, on_cuda


def amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision type: bfloat16 where the card has it (no loss scaling needed), else float16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16
