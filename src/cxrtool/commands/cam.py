"""`cxrtool cam`: class activation maps over X-ray files or a cache split, with box scores (docs/cam.md).

Its options are the fields of `CamConfig` (cam/run.py) that carry `option(...)`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .configured import Extra, Given, add_command, config_file, quiet
from .support import split_run_and_paths


def cam_config() -> type:
    from ..cam import CamConfig  # lazy: the cam package imports torch; keeps cxrtool --help fast

    return CamConfig


CAM_PATHS = Extra(
    "paths",
    list[Path] | None,
    typer.Argument(
        metavar="RUN|IMAGE|DIR",
        help="X-ray files or folders (PNG, JPEG, DICOM); a run first to choose the model. None: a cache split (--data/--split).",
    ),
)


def cam(given: Given) -> None:
    """Where the network looks: CAM / Grad-CAM / Grad-CAM++ overlays and raw maps, scored against lesion boxes."""
    from ..cam import run_cam  # lazy: keeps cxrtool --help fast

    model_source, inputs = split_run_and_paths(given.values["run"], list(given.extras["paths"] or []))
    run_cam(given.config(inputs=inputs or None, run=model_source))


def register(app: typer.Typer) -> None:
    add_command(
        app,
        "cam",
        cam,
        cam_config,
        CAM_PATHS,
        config_file(),
        quiet("No progress bars or notes; tables still print."),
    )
