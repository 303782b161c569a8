"""Networks: the architectures (`archs`, no torch), building them (`registry`), our ResNet-50, safe checkpoints."""

from __future__ import annotations

from typing import Any

__all__ = ["XRayClassifier", "arch_names", "create_model"]


def __getattr__(name: str) -> Any:
    """`cxrtool.models.create_model` and the others, imported on first use."""
    # `cxrtool --help` reads models.archs (the architecture names) without torch, which
    # backbones and registry import; so the package imports them only when a name is asked for.
    if name == "XRayClassifier":
        from .backbones import XRayClassifier  # lazy: torch, see above

        return XRayClassifier
    if name == "create_model":
        from .registry import create_model  # lazy: torch, see above

        return create_model
    if name == "arch_names":
        from .archs import arch_names  # lazy: kept beside the others

        return arch_names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
