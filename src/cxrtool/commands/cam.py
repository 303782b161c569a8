"""`cxrtool cam`: class activation maps over X-ray files or a cache split, with box scores (docs/cam.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .support import quiet_option, split_run_and_paths, user_errors


def register(app: typer.Typer) -> None:
    @app.command("cam")
    @user_errors
    def cam(
        paths: list[Path] | None = typer.Argument(
            None,
            metavar="RUN|IMAGE|DIR",
            help="X-ray files or folders (PNG, JPEG, DICOM); a run first to choose the model. None: a cache split (--data/--split).",
        ),
        run: Path | None = typer.Option(
            None, "--run", help="Run directory or checkpoint folder (default: the newest run under ./runs)."
        ),
        classes: list[str] | None = typer.Option(
            None,
            "--class",
            "-c",
            help="Class to map (repeat, or comma-separate). Default: the image's boxed classes with boxes, else its most probable class.",
        ),
        top: int | None = typer.Option(None, "--top", help="Map the K most probable classes of each image."),
        method: str | None = typer.Option(
            None, "--method", help="cam (default; the head's weights over the last feature map), gradcam or gradcam++."
        ),
        out: Path | None = typer.Option(None, "--out", help="Output folder (default RUN/cam)."),
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Prepared cache to map instead of files (default, when no files are given: the run's data).",
        ),
        split: str | None = typer.Option(None, "--split", help="Cache split: train, val, test (default) or all."),
        max_images: int | None = typer.Option(None, "--max-images", help="Map at most this many images."),
        boxes: Path | None = typer.Option(
            None,
            "--boxes",
            help="Score maps against boxes: NIH BBox_List_2017.csv or a cache's boxes.csv (default with a cache: its own boxes).",
        ),
        thresholds: str | None = typer.Option(
            None, "--thresholds", help="IoU thresholds as fractions of the map's range (default 0.3,0.5,0.7)."
        ),
        align: bool | None = typer.Option(
            None,
            "--align/--no-align",
            help="Place feature cells at their receptive-field centres (default) or resize plainly.",
        ),
        overlays: bool | None = typer.Option(None, "--overlays/--no-overlays", help="Write overlay PNGs (default on)."),
        maps: bool | None = typer.Option(None, "--maps/--no-maps", help="Write raw maps as .npy (default on)."),
        checkpoint: str | None = typer.Option(None, "--checkpoint", help="best (default) or last."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch (default 32)."),
        device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda or mps."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace maps and scores already in the output folder."
        ),
        allow_seen: bool = typer.Option(
            False,
            "--allow-seen",
            help="Score images the run (or a run it was finetuned from) trained or validated on, labelled in-sample.",
        ),
        config: Path | None = typer.Option(None, "--config", help="YAML file of option values."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or notes; tables still print."),
    ) -> None:
        """Where the network looks: CAM / Grad-CAM / Grad-CAM++ overlays and raw maps, scored against lesion boxes."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..cam import CamConfig, run_cam
        from ..config import build_config

        model_source, inputs = split_run_and_paths(run, list(paths or []))
        cfg = build_config(
            CamConfig,
            config,
            inputs=inputs or None,
            run=model_source,
            classes=classes or None,
            top=top,
            method=method,
            out=out,
            data=data,
            split=split,
            max_images=max_images,
            boxes=boxes,
            thresholds=thresholds,
            align=align,
            overlays=overlays,
            maps=maps,
            checkpoint=checkpoint,
            batch_size=batch_size,
            device=device,
            overwrite=overwrite or None,
            allow_seen=allow_seen or None,
        )
        run_cam(cfg)
