"""`cxrtool prepare ...`: raw datasets -> the decoded, patient-split cache (see docs/prepare.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..cli import quiet_option, user_errors


def register(app: typer.Typer) -> None:
    prepare_app = typer.Typer(help="Decode a dataset once into a patient-split cache that every other command reads.", no_args_is_help=True)
    app.add_typer(prepare_app, name="prepare")

    @prepare_app.command("synthetic")
    @user_errors
    def synthetic(
        out: Path = typer.Argument(..., help="Folder to write the raw dataset into (NIH layout)."),
        patients: int = typer.Option(200, help="Number of patients (each has 1-3 images)."),
        size: int = typer.Option(256, help="Image side in pixels."),
        seed: int = typer.Option(0, help="Random seed: the same seed writes the same images."),
        shortcut: float = typer.Option(0.0, help="0..1: how strongly the AP view tag predicts COVID-19 (a planted shortcut)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Write generated chest-like X-rays with drawn lesions at known boxes, in the NIH layout."""
        quiet_option(quiet)
        from ..data.sources.synthetic import SyntheticConfig, write_raw
        from ..progress import result

        counts = write_raw(out, SyntheticConfig(n_patients=patients, size=size, seed=seed, shortcut=shortcut))
        result(f"wrote {counts['images']} images of {counts['patients']} patients ({counts['boxes']} boxes) to {out}")
