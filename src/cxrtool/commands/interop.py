"""`cxrtool import xrv NAME` and `cxrtool export RUN` (see docs/import.md and docs/export.md).

Their options are the fields of `XrvImportConfig` (interop/xrv.py) and `ExportConfig`
(interop/export.py) that carry `option(...)`.
"""

from __future__ import annotations

import typer

from .configured import Given, add_command, quiet


def xrv_config() -> type:
    from ..interop.xrv import XrvImportConfig  # lazy: keeps cxrtool --help fast

    return XrvImportConfig


def import_xrv(given: Given) -> None:
    """A torchxrayvision DenseNet-121 as a run: safetensors, card with its labels, input convention, provenance."""
    from ..interop.xrv import import_xrv as run_import  # lazy: keeps cxrtool --help fast

    run_import(given.config())


def export_config() -> type:
    from ..interop.export import ExportConfig  # lazy: keeps cxrtool --help fast

    return ExportConfig


def export(given: Given) -> None:
    """Write the network as ONNX or TorchScript (dynamic batch) with its card, checked against PyTorch."""
    from ..interop.export import export_run  # lazy: keeps cxrtool --help fast

    export_run(given.config())


def register(app: typer.Typer) -> None:
    importer = typer.Typer(help="Turn another toolkit's published model into a cxrtool run.", no_args_is_help=True)
    app.add_typer(importer, name="import")
    add_command(importer, "xrv", import_xrv, xrv_config, quiet("No notes."))
    add_command(app, "export", export, export_config, quiet("No notes."))
