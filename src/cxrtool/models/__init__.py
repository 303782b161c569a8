"""Networks: a registry of architectures, our own ResNet-50, and safe checkpoints."""

from .backbones import XRayClassifier
from .registry import arch_names, create_model

__all__ = ["XRayClassifier", "arch_names", "create_model"]
