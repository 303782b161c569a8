"""Working with the rest of the field: importing torchxrayvision's models (`interop.xrv`) and
exporting a run's network to ONNX or TorchScript (`interop.export`). Each needs an optional
extra (`cxrtool[xrv]`, `cxrtool[onnx]`); without it the command says in one line what to install.
"""

from __future__ import annotations

import importlib

from ..errors import CxrError


def require_package(module: str, install: str, what: str):
    """Import an optional dependency, or fail in one line saying what to pip install.

    The line names packages, not the extra: square brackets are markup to the console."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CxrError(f"{what} needs the {module} package: pip install {install}") from None
