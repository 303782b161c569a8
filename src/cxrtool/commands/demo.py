"""`cxrtool demo`: the whole pipeline on generated data, offline (see docs/demo.md).

Its options are the fields of `DemoConfig` (demo.py) that carry `option(...)`.
"""

from __future__ import annotations

import typer

from .configured import Given, add_command, quiet


def demo_config() -> type:
    from ..demo import DemoConfig  # lazy: keeps cxrtool --help fast

    return DemoConfig


def demo(given: Given) -> None:
    """Generate X-rays, prepare, pretrain, finetune, evaluate, CAM, embed and report, offline."""
    from ..demo import run_demo  # lazy: keeps cxrtool --help fast

    run_demo(given.config())


def register(app: typer.Typer) -> None:
    add_command(app, "demo", demo, demo_config, quiet("No progress bars (the summary is still printed)."))
