"""The subcommands, one small module per group; `register_all` adds the finished ones to the app."""

from __future__ import annotations

import typer

from . import cam, compare, demo, embed, evaluate, interop, prepare, report, train


def register_all(app: typer.Typer) -> None:
    # The order here is the order of `cxrtool --help`: the pipeline's order.
    prepare.register(app)
    train.register(app)
    evaluate.register(app)
    compare.register(app)
    cam.register(app)
    embed.register(app)
    report.register(app)
    demo.register(app)
    interop.register(app)
