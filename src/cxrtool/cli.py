"""The `cxrtool` command line: a Typer app whose commands live in `cxrtool.commands`.

Each command turns its options into a config dataclass and makes ONE library call; no logic
lives in the command layer. Commands register themselves from small modules under
`cxrtool/commands/` so that each stays short; what they share (`commands/support.py`) prints a
`CxrError` (a user mistake) as one line and exits with status 2, and on Ctrl-C exits with 130
and says what is true for that command (a training run: whether and how to resume it).
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from . import __version__
from .commands import register_all
from .commands.examples import polish

# `cxrtool --help` lists commands in the pipeline's order (Typer would put the `prepare` group last).
PIPELINE_ORDER = (
    "prepare",
    "import",
    "pretrain",
    "finetune",
    "evaluate",
    "compare",
    "predict",
    "cam",
    "embed",
    "report",
    "export",
    "demo",
)


class PipelineOrderGroup(TyperGroup):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Typer builds the click commands from the functions; examples and flag display are added
        # to what it built, so every command module stays about its own options.
        polish(self)

    def list_commands(self, ctx) -> list[str]:
        names = list(self.commands)
        rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))


app = typer.Typer(
    name="cxrtool",
    cls=PipelineOrderGroup,
    help="Transfer learning on chest X-rays: prepare data, pretrain, finetune, evaluate, CAM, embeddings.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxrtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Transfer learning on chest X-rays."""


# Each module adds its commands to `app`; only finished commands are registered here.
register_all(app)


def main() -> None:
    app()
