"""`cxrtool compare`: one results table over several evaluated runs (see docs/compare.md).

Its options are the fields of `CompareConfig` (evaluate/compare.py) that carry `option(...)`.
"""

from __future__ import annotations

import typer

from .configured import Given, add_command, quiet


def compare_config() -> type:
    from ..evaluate.compare import CompareConfig  # lazy: keeps cxrtool --help fast

    return CompareConfig


def compare(given: Given) -> None:
    """Test AUROC with intervals, k-fold spread, shortcut baseline per arm, and each arm paired with the reference."""
    # lazy: keeps cxrtool --help fast
    from ..evaluate.compare import compare as build
    from ..report.compare_page import write_compare_page

    build(given.config(), page=write_compare_page)


def register(app: typer.Typer) -> None:
    add_command(app, "compare", compare, compare_config, quiet("Only the table."))
