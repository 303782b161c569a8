"""Run directories: their paths, their manifests, and finding the run a command works on.

A run directory holds everything one command produced: `config.yaml`, `manifest.json`,
`metrics.csv`, `checkpoints/{best,last}/`, and sub-folders written by later stages (`eval/`,
`cam/`, `embed/`). Commands given no run use the newest one under `./runs` that can do what was
asked, and say which. Files are written atomically (atomic.py); the folders a command writes are
locked and claimed while it runs (run_locks.py); the software environment every manifest records
comes from environment.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, read_json
from .environment import environment
from .errors import CxrError
from .owned import RECORD
from .progress import info

DEFAULT_RUNS_ROOT = Path("runs")
MANIFEST = "manifest.json"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class RunPaths:
    """Standard paths inside a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        return self.checkpoints / which

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def cam(self) -> Path:
        return self.root / "cam"

    @property
    def embed(self) -> Path:
        return self.root / "embed"


# ---------------------------------------------------------------- manifests


def write_manifest(directory: Path, **fields: Any) -> Path:
    """Write manifest.json: the given fields plus the time and the software environment."""
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields, "environment": environment()}
    return atomic_write_json(Path(directory) / MANIFEST, manifest)


def read_manifest(directory: Path) -> dict[str, Any]:
    return read_json(Path(directory) / MANIFEST)


def run_of(path: str | Path | None) -> Path | None:
    """The run directory of a run or of one of its checkpoint folders (RUN/checkpoints/best -> RUN), else None."""
    if not path:
        return None
    path = Path(path)
    if path.parent.name == "checkpoints" and (path.parent.parent / MANIFEST).is_file():
        return path.parent.parent
    if (path / MANIFEST).is_file():
        return path
    return None


# ---------------------------------------------------------------- finding runs


# What cxrtool wrote into a run and an evaluation folder before folders recorded their files: a
# folder without a record whose manifest (or metrics.json) proves it is cxrtool's owns these exact
# names; nothing is taken as ours by a name's prefix (docs/run-directory.md, "Which files are whose").
LEGACY_RUN_FILES = (CONFIG, MANIFEST, "metrics.csv", "curves.png", "report.html", "cv_summary.json", "cv_summary.csv")
LEGACY_EVAL_FILES = (
    "metrics.json",
    "per_label.csv",
    "per_label.md",
    "shortcuts.csv",
    "external.csv",
    "folds.csv",
    "roc.png",
    "reliability.png",
    "predictions.csv",
    "external_predictions.csv",
    "thresholds.json",
)


def _cxrtool_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def legacy_eval_files(folder: Path, prefix: str = "") -> dict[str, str]:
    """The files an older `evaluate` wrote into `folder`, when its metrics.json shows it was one."""
    doc = _cxrtool_json(Path(folder) / "metrics.json")
    if doc is None or not {"bootstrap", "labels", "run"} <= set(doc):
        return {}
    return {f"{prefix}{name}": "evaluate" for name in LEGACY_EVAL_FILES if (Path(folder) / name).is_file()}


def legacy_run_files(run: Path, prefix: str = "") -> dict[str, str]:
    """The files an older cxrtool wrote into a run, when its manifest.json shows it made the run."""
    run = Path(run)
    doc = _cxrtool_json(run / MANIFEST)
    if doc is None or not isinstance(doc.get("environment"), dict) or "cxrtool" not in doc["environment"]:
        return {}
    kind = str(doc.get("kind") or "pretrain")
    entries = {
        f"{prefix}{n}": ("report" if n == "report.html" else kind) for n in LEGACY_RUN_FILES if (run / n).is_file()
    }
    if (run / OOF_PREDICTIONS).is_file():
        entries[prefix + OOF_PREDICTIONS] = kind
    for which in ("best", "last"):
        if (run / "checkpoints" / which / "card.json").is_file():
            entries[f"{prefix}checkpoints/{which}/"] = kind
    if (run / "checkpoints").is_dir():  # the temporary folders of a save that was killed
        for tmp in (run / "checkpoints").iterdir():
            if re.fullmatch(r"\.(best|last)\.(tmp|old)-\d+", tmp.name) and tmp.is_dir():
                entries[f"{prefix}checkpoints/{tmp.name}/"] = kind
    logs = run / "tensorboard"
    if logs.is_dir() and all(p.is_file() and p.name.startswith("events.out.tfevents.") for p in logs.iterdir()):
        entries[f"{prefix}tensorboard/"] = kind
    for sub in sorted(run.iterdir()):
        if sub.is_dir() and not (sub / RECORD).exists():
            if sub.name.startswith("fold-") and sub.name[5:].isdigit():
                entries.update(legacy_run_files(sub, f"{prefix}{sub.name}/"))
            elif sub.name == "eval" or sub.name.startswith("eval-"):
                entries.update(legacy_eval_files(sub, f"{prefix}{sub.name}/"))
    return entries


def has_finished_epoch(path: Path) -> bool:
    """Whether a run holds anything worth keeping: a saved epoch (checkpoints/last) or CV results."""
    path = Path(path)
    if any((path / "checkpoints" / which / "card.json").is_file() for which in ("last", "best")):
        return True
    if (path / OOF_PREDICTIONS).is_file() or (path / SEEDS_SUMMARY).is_file():
        return True
    return any(has_finished_epoch(p) for pattern in ("fold-*", "seed-*") for p in path.glob(pattern) if p.is_dir())


OOF_PREDICTIONS = "oof_predictions.csv"  # what a cross-validation run holds instead of one checkpoint
SEEDS_SUMMARY = "seeds.json"  # what a run trained once per seed (finetune --seeds N) holds


def is_complete_run(path: Path) -> bool:
    """A run with at least one finished epoch (or finished cross-validation results) to use."""
    return is_run_dir(path) and has_finished_epoch(path)


def is_run_dir(path: Path) -> bool:
    """A training run (checkpoints/), a cross-validation run (one sub-run per fold) or a seeds run."""
    path = Path(path)
    return (path / MANIFEST).is_file() and (
        (path / "checkpoints").is_dir() or (path / OOF_PREDICTIONS).is_file() or (path / SEEDS_SUMMARY).is_file()
    )


def is_cv_run(path: Path) -> bool:
    """A cross-validation run: out-of-fold predictions and no single checkpoint of its own."""
    return (Path(path) / OOF_PREDICTIONS).is_file() and not (Path(path) / "checkpoints").is_dir()


def is_seeds_run(path: Path) -> bool:
    """A run trained once per seed (finetune --seeds N): one sub-run seed-k each, no checkpoint of its own."""
    return (Path(path) / SEEDS_SUMMARY).is_file() and not (Path(path) / "checkpoints").is_dir()


@dataclass(frozen=True)
class RunNeed:
    """What a command needs of the run it works on, to pick the newest run that can do it.

    `what` names it for messages ("the label Cardiomegaly"); `fits(labels)` says whether a run
    whose model outputs `labels` will do; `hint(labels)` adds to the error when no run fits (" Did
    you mean ...?"). The stage that asks builds it (it knows label aliases).
    """

    what: str
    fits: Callable[[list[str]], bool]
    hint: Callable[[list[str]], str] = lambda labels: ""


def run_labels(path: Path) -> list[str]:
    """The labels a run's model outputs: its best checkpoint's card (a CV or seeds run's: its first sub-run's)."""
    path = Path(path)
    cards = [
        path / "checkpoints" / "best" / "card.json",
        *sorted(path.glob("fold-*/checkpoints/best/card.json")),
        *sorted(path.glob("seed-*/checkpoints/best/card.json")),
    ]
    for card in cards:
        if card.is_file():
            try:
                return [str(label) for label in read_json(card).get("labels", [])]
            except (CxrError, AttributeError):
                return []
    return []


def complete_runs(root: Path = DEFAULT_RUNS_ROOT) -> list[Path]:
    """The runs with a finished epoch under `root`, newest first (by manifest time)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and is_complete_run(p)]
    return sorted(runs, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)


def latest_run(root: Path = DEFAULT_RUNS_ROOT) -> Path | None:
    """The most recently created run with a finished epoch under `root` (by manifest time), or None."""
    runs = complete_runs(root)
    return runs[0] if runs else None


def _newest_that_fits(root: Path, need: RunNeed) -> Path:
    runs = complete_runs(root)
    if not runs:
        raise CxrError(f"no run given and none found under {root}/; run `cxrtool pretrain` first or pass --run DIR")
    for run in runs:
        if need.fits(run_labels(run)):
            if run != runs[0]:
                newest = ", ".join(run_labels(runs[0])) or "no labels"
                info(f"using the newest run that has {need.what}: {run} (the newest, {runs[0]}, has {newest})")
            else:
                info(f"using the newest run: {run}")
            return run
    labels = run_labels(runs[0])
    raise CxrError(
        f"no run under {root}/ has {need.what} (the newest, {runs[0]}, has {', '.join(labels) or 'no labels'})."
        f"{need.hint(labels)} Train one, or pass the run to use with --run DIR"
    )


def resolve_run(run: Path | None, root: Path = DEFAULT_RUNS_ROOT, need: RunNeed | None = None) -> Path:
    """The run a command works on: the one given, else the newest under ./runs (and say which).

    With `need`, the newest run that can do what was asked (e.g. has the class `cam --class`
    names), so that after a finetune to COVID-19 the pretraining run still answers for NIH's
    findings; a run given explicitly is taken as given (the stage then says what it lacks).
    """
    if run is not None:
        run = Path(run)
        if not run.exists():
            raise CxrError(f"{run}: no such run directory")
        if ((run / MANIFEST).is_file() or (run / CONFIG).is_file()) and not has_finished_epoch(run):
            raise CxrError(
                f"{run}: no epoch of this run finished, so there is nothing to use or resume; "
                "run the command that started it again (without --resume) to start it over"
            )
        if not is_run_dir(run):
            raise CxrError(
                f"{run}: not a run directory (no manifest.json and checkpoints/); give a run made by pretrain or finetune"
            )
        return run
    if need is not None:
        return _newest_that_fits(Path(root), need)
    found = latest_run(root)
    if found is None:
        raise CxrError(f"no run given and none found under {root}/; run `cxrtool pretrain` first or pass --run DIR")
    info(f"using the newest run: {found}")
    return found
