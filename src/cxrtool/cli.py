"""The `cxrtool` command line: a Typer app whose commands live in `cxrtool.commands`.

Each command turns its options into a config dataclass and makes ONE library call; no logic
lives in the command layer. Commands register themselves from small modules under
`cxrtool/commands/` so that each stays short. A `CxrError` (a user mistake) is printed as
one line and exits with status 2; Ctrl-C exits with 130 and says how to resume.
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

        try:
            return fn(*args, **kwargs)
        except CxrError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted; finished epochs are saved: run the same command with --resume to continue")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def quiet_option(quiet: bool) -> None:
    from .progress import set_quiet

    if quiet:
        set_quiet(True)


def split_run_and_paths(run: Path | None, paths: list[Path]) -> tuple[Path | None, list[Path]]:
    """`cam RUN IMG...`, `predict RUN IMG...`: a first path that is a run or checkpoint folder names the model."""
    from .runs import is_run_dir

    if run is None and paths:
        first = paths[0]
        if first.is_dir() and (is_run_dir(first) or (first / "card.json").is_file()):
            return first, paths[1:]
    return run, paths


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
