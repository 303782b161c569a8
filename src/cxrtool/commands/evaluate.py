"""`cxrtool evaluate` and `cxrtool predict` (see docs/evaluate.md and docs/predict.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import CxrError
from .support import quiet_option, split_run_and_paths, user_errors


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @user_errors
    def evaluate(
        run_arg: Path | None = typer.Argument(
            None, metavar="RUN", help="Run directory (default: the newest under ./runs)."
        ),
        run: Path | None = typer.Option(None, "--run", help="Run directory (same as the argument)."),
        data: Path | None = typer.Option(
            None, "--data", help="Prepared cache to score on (default: the run's own data)."
        ),
        split: str | None = typer.Option(None, "--split", help="train, val, test (default) or all."),
        bootstrap: int | None = typer.Option(
            None, "--bootstrap", help="Patient-bootstrap replicates for the 95% intervals (default 1000; 0: none)."
        ),
        tta: bool | None = typer.Option(
            None, "--tta/--no-tta", help="Average each prediction with its horizontal flip."
        ),
        compare: str | None = typer.Option(
            None, "--compare", help="Show published per-label AUROCs beside ours: chexnet."
        ),
        shortcuts: bool | None = typer.Option(
            None,
            "--shortcuts/--no-shortcuts",
            help="Metadata-only baselines (default: on where the index has view/sex/age/source).",
        ),
        external: Path | None = typer.Option(
            None,
            "--external",
            help="Another prepared collection: report internal vs external AUROC "
            "(its copies of images in the run's lineage are dropped first and listed).",
        ),
        out: Path | None = typer.Option(None, "--out", help="Output folder (default RUN/eval, or RUN/eval-<split>)."),
        checkpoint: str | None = typer.Option(None, "--checkpoint", help="best (default) or last."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch (default 64)."),
        device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda or mps."),
        seed: int | None = typer.Option(None, "--seed", help="Seed of the bootstrap (default 0)."),
        sensitivity: float | None = typer.Option(
            None, "--sensitivity", help="Target sensitivity of the second operating point, chosen on val (default 0.9)."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an earlier evaluation in the output folder."
        ),
        allow_seen: bool = typer.Option(
            False,
            "--allow-seen",
            help="Score images the run (or a run it was finetuned from) trained or validated on, labelled in-sample.",
        ),
        config: Path | None = typer.Option(None, "--config", help="YAML file of option values."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or notes; tables still print."),
    ) -> None:
        """Per-label ROC AUC with patient-bootstrap intervals, PR AUC, val-chosen operating points and calibration."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..config import build_config
        from ..evaluate.pipeline import EvaluateConfig, evaluate_run

        if run_arg is not None and run is not None and Path(run_arg) != Path(run):
            raise CxrError(f"give the run once: as the argument ({run_arg}) or as --run ({run})")
        cfg = build_config(
            EvaluateConfig,
            config,
            run=run_arg or run,
            data=data,
            split=split,
            bootstrap=bootstrap,
            tta=tta,
            compare=compare,
            shortcuts=shortcuts,
            external=external,
            out=out,
            checkpoint=checkpoint,
            batch_size=batch_size,
            device=device,
            seed=seed,
            sensitivity=sensitivity,
            overwrite=overwrite or None,
            allow_seen=allow_seen or None,
        )
        evaluate_run(cfg)

    @app.command("predict")
    @user_errors
    def predict(
        paths: list[Path] = typer.Argument(
            ...,
            metavar="RUN|IMAGE|DIR",
            help="Image files or folders (PNG, JPEG, DICOM); a run first to choose the model.",
        ),
        run: Path | None = typer.Option(
            None, "--run", help="Run directory or checkpoint folder (default: the newest run)."
        ),
        out: Path | None = typer.Option(None, "--out", help="Write the predictions to FILE.csv or FILE.json."),
        tta: bool = typer.Option(False, "--tta/--no-tta", help="Average each prediction with its horizontal flip."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
        batch_size: int = typer.Option(32, "--batch-size", help="Images per batch."),
        workers: int | None = typer.Option(
            None, "--workers", help="Processes decoding the files (default: every core)."
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
        thresholds: Path | None = typer.Option(
            None,
            "--thresholds",
            help="A thresholds.json from cxrtool evaluate (default: the run's newest, chosen on val).",
        ),
        operating_point: str = typer.Option(
            "youden", "--operating-point", help="youden, or the fixed-sensitivity point (e.g. sens90)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or notes; the table still prints."),
    ) -> None:
        """Probability per label (and positive/negative at evaluate's val-chosen operating points) for X-ray files."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..predict.pipeline import PredictConfig, fail_if_inputs_missing, predict_files

        model_source, inputs = split_run_and_paths(run, list(paths))
        if not inputs:
            raise CxrError(f"give image files or folders to predict after the run {model_source}")
        cfg = PredictConfig(
            inputs=inputs,
            run=model_source,
            out=out,
            tta=tta,
            device=device,
            batch_size=batch_size,
            workers=workers,
            checkpoint=checkpoint,
            overwrite=overwrite,
            thresholds=thresholds,
            operating_point=operating_point,
        )
        fail_if_inputs_missing(cfg, predict_files(cfg))
