"""Run directories: create, find, describe and write into them safely.

A run directory holds everything one command produced: `config.yaml`, `manifest.json`,
`metrics.csv`, `checkpoints/{best,last}/`, and sub-folders written by later stages (`eval/`,
`cam/`, `embed/`). Commands given no run use the newest one under `./runs` and say which.
Every file is written to a temporary name and renamed, so an interrupted write never leaves a
half-written artifact behind, and it gets the mode `open()` would give it (the umask decides). A
command that writes into a run locks the folder it writes (`new_run_dir`, `lock_run`,
`lock_output`; an OS lock that dies with the process) until its `holds_locks` function returns, so
a second writer stops at once naming the first. Each folder a command writes is claimed
(owned.py): the files it writes are recorded there, and `--overwrite` removes only those.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import CxrError
from .locks import LOCK_NAME, hold_lock
from .owned import RECORD, OwnedFolder, claim_folder, claims_mark, current_umask, note_written, release_claims
from .progress import info, warn
from .safeio import read_json_file

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


# ---------------------------------------------------------------- atomic writes


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then rename tmp_path onto `path` (same folder, so rename is atomic).

    mkstemp creates its file 0600; it is given the mode `open()` would have used (0666 less the
    umask) so that a lab group reads our artifacts exactly as it reads the user's other files.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        note_written(path)  # recorded before it appears, so a killed command's files are still its own
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CxrError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk or a vanished folder: the old file (if any) is untouched
        raise CxrError(f"{path}: could not be written ({exc.strerror or exc})") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    # surrogateescape: a file name that is not UTF-8 (read from the disk as lone surrogates) is
    # written back as its own bytes, so a CSV names the real file instead of failing to be written.
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8", errors="surrogateescape"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: write null so every JSON reader accepts our files."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(_nan_to_none(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def read_json(path: Path) -> Any:
    """A JSON file within safeio's size and depth limits; one line naming the file otherwise."""
    return read_json_file(path)


# ---------------------------------------------------------------- manifests


def _git(here: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_commit() -> str | None:
    """cxrtool's own commit: its source checkout's, or the one pip recorded when installing from git.

    An installed copy can sit inside the user's own repository (a venv in their project): asking git
    from there would name the user's commit, so git is asked only when this package is the
    checkout's own `src/cxrtool`; otherwise pip's record of the install (PEP 610 direct_url.json)
    is read, and a release installed from an index has no commit.
    """
    here = Path(__file__).resolve().parent
    top = _git(here, "rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() / "src" / "cxrtool" == here:
        return _git(here, "rev-parse", "HEAD")
    try:
        recorded = json.loads(metadata.distribution("cxrtool").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    return recorded.get("vcs_info", {}).get("commit_id")


def environment() -> dict[str, Any]:
    """Versions that decide whether a result can be reproduced (read without importing torch)."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cxrtool": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "torchvision": version("torchvision"),
        "numpy": version("numpy"),
        "platform": platform.platform(),
    }


def write_manifest(directory: Path, **fields: Any) -> Path:
    """Write manifest.json: the given fields plus the time and the software environment."""
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields, "environment": environment()}
    return atomic_write_json(Path(directory) / MANIFEST, manifest)


def read_manifest(directory: Path) -> dict[str, Any]:
    return read_json(Path(directory) / MANIFEST)


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


def _default_run_name(kind: str, arch: str, root: Path) -> Path:
    """runs/KIND-ARCH-TIME, reserved by creating it (two runs started in the same second get -2, -3)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        out = Path(root) / (f"{kind}-{arch}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            out.mkdir(parents=True)
            return out
        except FileExistsError:
            continue
        except OSError as exc:
            raise CxrError(f"{out}: cannot create run directory ({exc.strerror})") from None
    raise CxrError(f"{root}: too many runs named {kind}-{arch}-{stamp}")


def new_run_dir(
    kind: str, arch: str, out: Path | None = None, root: Path = DEFAULT_RUNS_ROOT, overwrite: bool = False
) -> Path:
    """Create and lock a run directory: `out` if given, else runs/KIND-ARCH-TIME.

    The lock (see locks.py) is taken before the folder is checked, so two commands given the same
    --out cannot both start; it is held until the calling function decorated with `holds_locks`
    returns. A folder that holds no finished epoch (a start killed during its first epoch) is
    cleared and restarted, saying so; a finished run is replaced only with `overwrite`; files that
    are not a run's are never deleted.
    """
    out = _default_run_name(kind, arch, root) if out is None else Path(out)
    lock_for_call(out, "run")
    _note_training_run(out)
    owned = claim_folder(out, kind, legacy=legacy_run_files)  # refuses a folder holding a user's file
    if not any(p.name not in (LOCK_NAME, RECORD) for p in out.iterdir()):
        return out
    if has_finished_epoch(out) and not overwrite:
        if kind not in (
            "pretrain",
            "finetune",
        ):  # cross-validation and imported runs are neither resumed nor overwritten
            raise CxrError(f"{out}: is not empty (it holds a finished {kind} run); choose another --out")
        raise CxrError(
            f"{out}: holds a run with finished epochs; pass --resume to continue it, --overwrite to start "
            "it again from scratch, or choose another --out"
        )
    why = "replacing the finished run (--overwrite)" if has_finished_epoch(out) else "it holds no finished epoch"
    warn(f"{out}: starting this run again: {why}")
    owned.clear()  # every file the record lists (nothing else is there: claim_folder checked)
    return out


# ---------------------------------------------------------------- locks held for one call


_taken: list[Any] = []  # entered hold_lock contexts, innermost last
_training_run: list[Path] = []  # the run the current command trains (for the Ctrl-C message)


def lock_for_call(directory: Path, what: str) -> None:
    """Lock `directory` (an output folder a command writes) until the `holds_locks` function returns."""
    context = hold_lock(directory, what=what)
    context.__enter__()
    _taken.append(context)


def holds_locks(fn: Callable) -> Callable:
    """Release the locks `fn` took with `lock_for_call` when it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        mark, claimed = len(_taken), claims_mark()
        try:
            return fn(*args, **kwargs)
        finally:
            release_claims(claimed)
            while len(_taken) > mark:
                _taken.pop().__exit__(None, None, None)

    return wrapper


def release_locks() -> None:
    """Release every lock taken with `lock_for_call` (for callers outside a `holds_locks` function)."""
    release_claims()
    while _taken:
        _taken.pop().__exit__(None, None, None)


def forget_training_run() -> None:
    _training_run.clear()


def _note_training_run(run: Path) -> None:
    _training_run[:] = [Path(run)]


def lock_run(run: Path) -> None:
    """Lock an existing run for a command that trains it further (--resume); what it writes is recorded."""
    lock_for_call(run, "run")
    _note_training_run(run)
    try:
        kind = str(read_manifest(run).get("kind") or "pretrain")
    except CxrError:
        kind = "pretrain"
    claim_folder(run, kind, check=False, legacy=legacy_run_files)  # resuming replaces only the run's own files


def own_output(folder: Path, what: str, by: str, legacy=None) -> OwnedFolder:
    """Lock and claim the folder a command writes (refused when it holds a file no record lists)."""
    lock_for_call(folder, what)
    return claim_folder(folder, by, legacy=legacy)


def lock_output(folder: Path, what: str) -> None:
    """Lock the folder a command writes its results into (RUN/eval, RUN/cam, RUN/embed)."""
    lock_for_call(folder, what)


def interrupted_message(cause: str = "interrupted") -> str:
    """What is true after Ctrl-C (or SIGTERM, `cause` "stopped by SIGTERM"): for a command that was
    training a run, whether and how to continue it."""
    if not _training_run:
        return f"{cause}; files written so far are complete and nothing half-written was kept: run the command again to finish"
    run = _training_run[0]
    if not has_finished_epoch(run):
        return (
            f"{cause} before the first epoch of {run} finished, so there is nothing to resume: "
            "run the same command again to start it over"
        )
    if any(run.glob("fold-*")):
        return f"{cause}; a cross-validation run cannot be resumed: start it again with another --out (or delete {run})"
    try:
        kind = read_manifest(run).get("kind") or "pretrain"
    except CxrError:
        kind = "pretrain"
    return f"{cause}; the finished epochs are saved: continue with `cxrtool {kind} {run} --resume`"


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
