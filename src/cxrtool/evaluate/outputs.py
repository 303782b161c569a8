"""What every evaluation writes, single-model or cross-validation: its folder, scores and files.

`prepare_out` locks and creates the output folder (RUN/eval, RUN/eval-<split> or --out); `score`
puts the label report in the run's description (metrics.json's content); `image_keys` names the
images in the predictions files; `write_outputs` writes metrics.json, the tables and the figures.
evaluate/pipeline.py (one model) and evaluate/cross_validation.py (out-of-fold predictions) use them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_json
from ..config import config_to_dict
from ..errors import CxrError
from ..progress import info, warn
from ..run_locks import own_output
from ..runs import legacy_eval_files
from .config import EvaluateConfig
from .metrics import label_report
from .shortcuts import mark_source_confounded
from .tables import compare_entries, print_tables, write_tables


def default_out(run: Path, split: str) -> Path:
    return run / ("eval" if split == "test" else f"eval-{split}")


def prepare_out(cfg: EvaluateConfig, run: Path) -> Path:
    """The evaluation's output folder, locked and created; an earlier evaluation there needs --overwrite.

    A folder holding a file no cxrtool command recorded writing is refused (naming it); --overwrite
    removes only the files an earlier evaluation recorded, so none of them outlives its evaluation.
    """
    out = Path(cfg.out) if cfg.out else default_out(run, cfg.split)
    # Checked and written under one lock: two evaluations never mix.
    owned = own_output(out, "evaluation", "evaluate", legacy=legacy_eval_files)
    if owned.held("evaluate"):
        if not cfg.overwrite:
            raise CxrError(
                f"{out}: holds an earlier evaluation; pass --overwrite to replace it or --out DIR to write elsewhere"
            )
        owned.clear("evaluate")
    return out


def score(
    cfg: EvaluateConfig,
    labels: list[str],
    targets: np.ndarray,
    probs: np.ndarray,
    patients: np.ndarray,
    what: str,
    run: Path,
) -> dict:
    """The label report with the run's description around it (no files written)."""
    rep = label_report(targets, probs, labels, patients, n_boot=cfg.bootstrap, seed=cfg.seed)
    mean = rep["mean"]
    if not np.isfinite(mean.get("estimate", np.nan)):
        mean["estimate"] = None  # no label computable: say so (mean["not_computable"]), no NaN
    return {
        "run": str(run),
        "what": what,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "images": len(targets),
        "patients": int(pd.Series(patients).nunique()),
        "mean_auroc": mean.get("estimate"),
        "mean_auroc_low": mean.get("low"),
        "mean_auroc_high": mean.get("high"),
        "bootstrap": {"replicates": cfg.bootstrap, "unit": "patient", "seed": cfg.seed, "interval": 0.95},
        "labels": rep["labels"],
        "mean": mean,
        "compare": compare_entries(cfg.compare, rep["labels"]),
        "config": config_to_dict(cfg),
    }


def image_keys(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns that name an image in evaluate's predictions files: id, patient and (when known) view."""
    keys = {"id": frame["id"].to_numpy(), "patient": frame["patient"].to_numpy()}
    if "view" in frame.columns:
        keys["view"] = frame["view"].to_numpy()
    return keys


def write_outputs(out: Path, metrics: dict, labels: list[str], targets: np.ndarray, probs: np.ndarray) -> None:
    """metrics.json, the tables, roc.png and reliability.png; then print the tables."""
    from .figures import reliability_figure, roc_figure  # lazy: matplotlib, only when figures are drawn

    mark_source_confounded(metrics)
    titles = {**metrics["labels"], "__mean__": metrics["mean"]}
    roc_figure(targets, probs, labels, out / "roc.png", titles, title=f"ROC: {metrics['what']}")
    reliability_figure(
        {l: metrics["labels"][l].get("calibration") for l in labels},
        out / "reliability.png",
        title=f"Reliability: {metrics['what']}",
    )
    write_tables(out, metrics)
    atomic_write_json(out / "metrics.json", metrics)
    for label, e in metrics["labels"].items():
        if e.get("not_computable"):
            warn(f"{label}: AUROC not computable ({e['not_computable']})")
        elif e.get("not_estimable"):
            warn(
                f"{label}: AUROC not estimable ({e['not_estimable']}): no interval, no published number "
                "beside it, left out of the mean"
            )
        elif e.get("skipped_replicates"):
            info(
                f"{label}: {e['skipped_replicates']} of {metrics['bootstrap']['replicates']} bootstrap replicates "
                "had one class and were skipped"
            )
    for message in (metrics.get("shortcuts") or {}).get("warnings", []):
        warn(message)
    print_tables(metrics)
    info(f"wrote {out}")
