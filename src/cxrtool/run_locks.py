"""The folders one command holds: run directories it creates or resumes, output folders it writes.

A command that writes into a run locks the folder it writes (`new_run_dir`, `lock_run`,
`lock_output`, `own_output`; an OS lock that dies with the process, see locks.py) until its
`holds_locks` function returns, so a second writer stops at once naming the first. Each folder a
command writes is claimed (owned.py): the files it writes are recorded there, and `--overwrite`
removes only those. The run the command trains is remembered for the Ctrl-C message
(`interrupted_message`): whether and how to continue it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CxrError
from .locks import LOCK_NAME, hold_lock
from .owned import RECORD, OwnedFolder, claim_folder, claims_mark, release_claims
from .progress import warn
from .runs import DEFAULT_RUNS_ROOT, has_finished_epoch, legacy_run_files, read_manifest

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
