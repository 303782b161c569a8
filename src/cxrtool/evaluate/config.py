"""The options of `cxrtool evaluate` (`EvaluateConfig`), checked where they are made.

Each check raises a one-line `CxrError` naming the option, so a mistake fails before a model is
loaded; both evaluations (one model, a cross-validated run) and their output helpers take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import require
from .published import published_results

SPLIT_CHOICES = ("train", "val", "test", "all")


@dataclass
class EvaluateConfig:
    run: Path | None = None  # run directory; the newest under ./runs when None
    data: Path | None = None  # prepared cache; the run's own data when None
    split: str = "test"
    bootstrap: int = 1000  # patient-bootstrap replicates (0: no intervals)
    tta: bool = False  # average with the horizontally flipped image
    compare: str | None = None  # published results to show beside ours ("chexnet")
    shortcuts: bool | None = None  # metadata-only baselines; None: on where metadata exists
    external: Path | None = None  # another prepared collection to score the run on
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    out: Path | None = None  # output folder; RUN/eval (RUN/eval-<split>) when None
    checkpoint: str = "best"
    overwrite: bool = False
    sensitivity: float = 0.9  # the fixed-sensitivity operating point, chosen on val
    allow_seen: bool = False  # score images the run's lineage trained or validated on (labelled in-sample)

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
