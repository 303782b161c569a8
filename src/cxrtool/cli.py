"""The `cxrtool` command line: a Typer app whose commands live in `cxrtool.commands`.

Each command turns its options into a config dataclass and makes ONE library call; no logic
lives in the command layer. Commands register themselves from small modules under
`cxrtool/commands/` so that each stays short. A `CxrError` (a user mistake) is printed as
one line and exits with status 2; Ctrl-C exits with 130 and says what is true for
that command (a training run: whether and how to resume it).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, TypeVar

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import CxrError

F = TypeVar("F", bound=Callable)

# `cxrtool --help` lists commands in the pipeline's order (Typer would put the `prepare` group last).
PIPELINE_ORDER = ("prepare", "import", "pretrain", "finetune", "evaluate", "compare", "predict", "cam", "embed",
                  "report", "export", "demo")


class PipelineOrderGroup(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = list(self.commands)
        rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))


app = typer.Typer(
    name="cxrtool",
    cls=PipelineOrderGroup,
    help="Transfer learning on chest X-rays: prepare data, pretrain, finetune, evaluate, CAM, embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def user_errors(fn: F) -> F:
    """Turn a CxrError into one 'error: ...' line and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .progress import error
        from .runs import forget_training_run, interrupted_message, release_locks

        forget_training_run()
        try:
            return fn(*args, **kwargs)
        except CxrError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            # What is true depends on the command: only training runs can be resumed.
            error(interrupted_message())
            raise typer.Exit(130) from None
        finally:
            release_locks()

    return wrapper  # type: ignore[return-value]


def quiet_option(quiet: bool) -> None:
    from .progress import set_quiet

    if quiet:
        set_quiet(True)


RUN_MARKERS = ("manifest.json", "config.yaml", "checkpoints", "card.json", "model.safetensors", "metrics.csv")


def split_run_and_paths(run: Path | None, paths: list[Path]) -> tuple[Path | None, list[Path]]:
    """`cam RUN IMG...`, `predict RUN IMG...`: a first path that is a run or checkpoint folder names the model.

    A first path that looks meant as a run but is not a complete one is an error naming it, never
    an input image (which would quietly switch to the newest run): a folder with run files in it
    but no usable checkpoint, a folder with no images followed by more paths, or a path that does
    not exist and has no image extension.
    """
    from .errors import CxrError
    from .data.imageio import IMAGE_SUFFIXES
    from .runs import is_run_dir

    if run is not None or not paths:
        return run, paths
    first = paths[0]
    if first.is_dir():
        if is_run_dir(first) or (first / "card.json").is_file():
            return first, paths[1:]
        markers = [m for m in RUN_MARKERS if (first / m).exists()]
        if markers:
            raise CxrError(f"{first}: not a complete run (it has {', '.join(markers)} but no finished checkpoint); "
                           "give a run made by pretrain or finetune, or its checkpoints/best folder")
        if len(paths) > 1 and not _holds_images(first, IMAGE_SUFFIXES):
            raise CxrError(f"{first}: not a run directory and holds no images; give a run made by pretrain or finetune first")
    elif not first.exists() and first.suffix.lower() not in IMAGE_SUFFIXES:
        raise CxrError(f"{first}: no such run directory or image file")
    return run, paths


def _holds_images(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return any(p.suffix.lower() in suffixes for p in folder.rglob("*") if p.is_file())


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxrtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Transfer learning on chest X-rays."""


def _register_commands() -> None:
    # Each module adds its commands to `app`; only finished commands are registered here.
    from .commands import register_all

    register_all(app)


_register_commands()


def main() -> None:
    app()
