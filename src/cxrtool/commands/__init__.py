"""The subcommands, one small module per group; `register_all` adds the finished ones to the app."""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    from . import prepare, report

    prepare.register(app)
    report.register(app)

    from . import evaluate

    evaluate.register(app)

    from . import train

    train.register(app)

    from . import cam

    cam.register(app)

    from . import embed

    embed.register(app)
