"""`cxrtool import xrv NAME` and `cxrtool export RUN` (see docs/import.md and docs/export.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .support import quiet_option, user_errors


def register(app: typer.Typer) -> None:
    importer = typer.Typer(help="Turn another toolkit's published model into a cxrtool run.", no_args_is_help=True)
    app.add_typer(importer, name="import")

    @importer.command("xrv")
    @user_errors
    def import_xrv_command(
        name: str = typer.Argument(
            ..., help="torchxrayvision weights, e.g. densenet121-res224-nih or densenet121-res224-all."
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Run directory to create (new or empty). (default: runs/import-NAME-TIME)"
        ),
        weights_file: Path | None = typer.Option(
            None, "--weights-file", help="A local copy of the published file (a pickle: only for files you trust)."
        ),
        cache_dir: Path | None = typer.Option(
            None, "--cache-dir", help="Where torchxrayvision keeps its files. (default: ~/.torchxrayvision/models_data)"
        ),
        download: bool = typer.Option(
            False, "--download", help="Let torchxrayvision download a missing file from its release page."
        ),
        trust_weights_file: bool = typer.Option(
            False,
            "--trust-weights-file",
            help="Load a --weights-file whose SHA-256 is not the published one (none is published today).",
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No notes."),
    ) -> None:
        """A torchxrayvision DenseNet-121 as a run: safetensors, card with its labels, input convention, provenance."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..interop.xrv import XrvImportConfig, import_xrv

        import_xrv(
            XrvImportConfig(
                name=name,
                out=out,
                weights_file=weights_file,
                cache_dir=cache_dir,
                download=download,
                trust_weights_file=trust_weights_file,
            )
        )

    @app.command("export")
    @user_errors
    def export_command(
        run: Path | None = typer.Argument(
            None, help="Run directory or checkpoint folder (default: the newest run under ./runs)."
        ),
        format: str = typer.Option(
            "onnx", "--format", help="onnx (needs pip install onnx onnxscript onnxruntime) or torchscript."
        ),
        out: Path | None = typer.Option(None, "--out", help="Output folder. (default: RUN/export/FORMAT)"),
        data: Path | None = typer.Option(
            None, "--data", help="Prepared cache whose images check the export. (default: the run's data)"
        ),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in the output folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No notes."),
    ) -> None:
        """Write the network as ONNX or TorchScript (dynamic batch) with its card, checked against PyTorch."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..interop.export import ExportConfig, export_run

        export_run(ExportConfig(run=run, format=format, out=out, data=data, checkpoint=checkpoint, overwrite=overwrite))
