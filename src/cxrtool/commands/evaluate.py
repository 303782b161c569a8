"""`cxrtool evaluate` and `cxrtool predict` (see docs/evaluate.md and docs/predict.md).

Their options are the fields of `EvaluateConfig` (evaluate/config.py) and `PredictConfig`
(predict/pipeline.py) that carry `option(...)`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import CxrError
from .configured import Extra, Given, add_command, config_file, quiet, run_argument
from .support import split_run_and_paths


def evaluate_config() -> type:
    from ..evaluate.config import EvaluateConfig  # lazy: keeps cxrtool --help fast (numpy)

    return EvaluateConfig


def evaluate(given: Given) -> None:
    """Per-label ROC AUC with patient-bootstrap intervals, PR AUC, val-chosen operating points and calibration."""
    from ..evaluate.pipeline import evaluate_run  # lazy: keeps cxrtool --help fast

    evaluate_run(given.config())


def predict_config() -> type:
    from ..predict.pipeline import PredictConfig  # lazy: keeps cxrtool --help fast (torch)

    return PredictConfig


PREDICT_PATHS = Extra(
    "paths",
    list[Path],
    typer.Argument(
        metavar="RUN|IMAGE|DIR", help="Image files or folders (PNG, JPEG, DICOM); a run first to choose the model."
    ),
    default=...,
)


def predict(given: Given) -> None:
    """Probability per label (and positive/negative at evaluate's val-chosen operating points) for X-ray files."""
    from ..predict.pipeline import fail_if_inputs_missing, predict_files  # lazy: keeps cxrtool --help fast

    model_source, inputs = split_run_and_paths(given.values["run"], list(given.extras["paths"]))
    if not inputs:
        raise CxrError(f"give image files or folders to predict after the run {model_source}")
    cfg = given.config(inputs=inputs, run=model_source)
    fail_if_inputs_missing(cfg, predict_files(cfg))


def register(app: typer.Typer) -> None:
    add_command(
        app,
        "evaluate",
        evaluate,
        evaluate_config,
        run_argument(),
        config_file(),
        quiet("No progress bars or notes; tables still print."),
    )
    add_command(
        app,
        "predict",
        predict,
        predict_config,
        PREDICT_PATHS,
        quiet("No progress bars or notes; the table still prints."),
    )
