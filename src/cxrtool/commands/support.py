"""What every command module shares: one-line user errors, `--quiet`, and telling a run from images.

The command modules import these from here, never from `cxrtool.cli`, which imports the command
modules to register them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from ..errors import CxrError

F = TypeVar("F", bound=Callable)

RUN_MARKERS = ("manifest.json", "config.yaml", "checkpoints", "card.json", "model.safetensors", "metrics.csv")


def user_errors(fn: F) -> F:
    """Turn a CxrError into one 'error: ...' line and exit status 2 (no traceback).

    Ctrl-C and SIGTERM (what a cluster scheduler sends) end the same way: one line saying what
    was kept and how to go on, exit status 130 or 143. A file-system error of the user's machine
    (a full disk, a read-only mount) is one line naming the path, never a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # lazy: keeps cxrtool --help fast
        from ..errors import FS_ERRNOS, fs_error
        from ..progress import error
        from ..run_locks import forget_training_run, interrupted_message, release_locks
        from ..signals import SIGTERM_EXIT, Terminated, sigterm_as_interrupt, was_terminated

        def stopped(terminated: bool) -> typer.Exit:
            # What is true depends on the command: only training runs can be resumed.
            error(interrupted_message("stopped by SIGTERM" if terminated else "interrupted"))
            return typer.Exit(SIGTERM_EXIT if terminated else 130)

        forget_training_run()
        try:
            with sigterm_as_interrupt():
                try:
                    return fn(*args, **kwargs)
                finally:
                    release_locks()  # inside: a SIGTERM now still finds the handler, not a default death
        except CxrError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise stopped(isinstance(exc, Terminated) or was_terminated()) from None
        except OSError as exc:
            if was_terminated():
                raise stopped(True) from None
            if exc.errno not in FS_ERRNOS:
                raise
            error(str(fs_error(exc.filename or "a file", exc)))
            raise typer.Exit(CxrError.exit_code) from None
        except Exception:
            if was_terminated():  # e.g. a DataLoader worker killed by the same SIGTERM failed the loop first
                raise stopped(True) from None
            raise

    return wrapper  # type: ignore[return-value]


def quiet_option(quiet: bool) -> None:
    # lazy: keeps cxrtool --help fast
    from ..progress import set_quiet

    if quiet:
        set_quiet(True)


def split_run_and_paths(run: Path | None, paths: list[Path]) -> tuple[Path | None, list[Path]]:
    """`cam RUN IMG...`, `predict RUN IMG...`: a first path that is a run or checkpoint folder names the model.

    A first path that looks meant as a run but is not a complete one is an error naming it, never
    an input image (which would quietly switch to the newest run): a folder with run files in it
    but no usable checkpoint, a folder with no images followed by more paths, or a path that does
    not exist and has no image extension.
    """
    # lazy: keeps cxrtool --help fast
    from ..data.imageio import IMAGE_SUFFIXES
    from ..runs import is_run_dir

    if run is not None or not paths:
        return run, paths
    first = paths[0]
    if first.is_dir():
        if is_run_dir(first) or (first / "card.json").is_file():
            return first, paths[1:]
        markers = [m for m in RUN_MARKERS if (first / m).exists()]
        if markers:
            raise CxrError(
                f"{first}: not a complete run (it has {', '.join(markers)} but no finished checkpoint); "
                "give a run made by pretrain or finetune, or its checkpoints/best folder"
            )
        if len(paths) > 1 and not _holds_images(first, IMAGE_SUFFIXES):
            raise CxrError(
                f"{first}: not a run directory and holds no images; give a run made by pretrain or finetune first"
            )
    elif not first.exists() and first.suffix.lower() not in IMAGE_SUFFIXES:
        raise CxrError(f"{first}: no such run directory or image file")
    return run, paths


def _holds_images(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return any(p.suffix.lower() in suffixes for p in folder.rglob("*") if p.is_file())
