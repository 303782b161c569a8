"""The options of `cxrtool evaluate` (`EvaluateConfig`), checked where they are made.

Each check raises a one-line `CxrError` naming the option, so a mistake fails before a model is
loaded; both evaluations (one model, a cross-validated run) and their output helpers take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import require
from ..optionspec import option
from .published import published_results

SPLIT_CHOICES = ("train", "val", "test", "all")


@dataclass
class EvaluateConfig:
    run: Path | None = option(None, help="Run directory (same as the argument).")
    data: Path | None = option(None, help="Prepared cache to score on (default: the run's own data).")
    split: str = option("test", help="train, val, test (default) or all.", choices=SPLIT_CHOICES)
    bootstrap: int = option(1000, help="Patient-bootstrap replicates for the 95% intervals (default 1000; 0: none).")
    tta: bool = option(False, help="Average each prediction with its horizontal flip.", flags=("--tta/--no-tta",))
    compare: str | None = option(None, help="Show published per-label AUROCs beside ours: chexnet.")
    shortcuts: bool | None = option(
        None,
        help="Metadata-only baselines (default: on where the index has view/sex/age/source).",
        flags=("--shortcuts/--no-shortcuts",),
    )
    external: Path | None = option(
        None,
        help="Another prepared collection: report internal vs external AUROC "
        "(its copies of images in the run's lineage are dropped first and listed).",
    )
    batch_size: int = option(64, help="Images per batch (default 64).")
    device: str = option("auto", help="auto (default), cpu, cuda or mps.")
    seed: int = option(0, help="Seed of the bootstrap (default 0).")
    out: Path | None = option(None, help="Output folder (default RUN/eval, or RUN/eval-<split>).")
    checkpoint: str = option("best", help="best (default) or last.", choices=("best", "last"))
    overwrite: bool = option(False, help="Replace an earlier evaluation in the output folder.")
    sensitivity: float = option(
        0.9, help="Target sensitivity of the second operating point, chosen on val (default 0.9)."
    )
    allow_seen: bool = option(
        False, help="Score images the run (or a run it was finetuned from) trained or validated on, labelled in-sample."
    )

    def __post_init__(self) -> None:
        require(
            self.split in SPLIT_CHOICES,
            f"--split: unknown split {self.split!r}; choose one of {', '.join(SPLIT_CHOICES)}",
        )
        require(
            isinstance(self.bootstrap, int) and self.bootstrap >= 0,
            f"--bootstrap: must be 0 or a positive number of replicates, got {self.bootstrap}",
        )
        require(
            self.bootstrap == 0 or self.bootstrap >= 100,
            f"--bootstrap: {self.bootstrap} replicates give no stable 95% interval; use at least 100 (or 0 for none)",
        )
        require(self.batch_size >= 1, f"--batch-size: must be at least 1, got {self.batch_size}")
        require(self.checkpoint in ("best", "last"), f"--checkpoint: choose best or last, got {self.checkpoint!r}")
        require(
            isinstance(self.sensitivity, (int, float)) and 0 < float(self.sensitivity) < 1,
            f"--sensitivity: give the target sensitivity as a fraction between 0 and 1, e.g. 0.9 (got {self.sensitivity})",
        )
        if self.compare is not None:
            published_results(self.compare)  # fails now, naming --compare, not after inference
