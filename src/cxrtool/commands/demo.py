"""`cxrtool demo`: the whole pipeline on generated data, offline (see docs/demo.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .support import quiet_option, user_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @user_errors
    def demo(
        out: Path = typer.Option(Path("cxrtool-demo"), "--out", help="Folder for the demo's data, runs and reports."),
        quick: bool = typer.Option(False, "--quick", help="A smaller run for CI (about 15 s on 2 idle cores)."),
        seed: int = typer.Option(0, "--seed", help="Random seed for the data and the training."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
        workers: int = typer.Option(2, "--workers", help="Processes for decoding images in prepare."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing demo folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (the summary is still printed)."),
    ) -> None:
        """Generate X-rays, prepare, pretrain, finetune, evaluate, CAM, embed and report, offline."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..demo import DemoConfig, run_demo

        run_demo(DemoConfig(out=out, quick=quick, seed=seed, device=device, workers=workers, overwrite=overwrite))
