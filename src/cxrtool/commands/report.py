"""`cxrtool report [RUN]`: one self-contained HTML page for a run (see docs/report.md).

Its options are the fields of `ReportConfig` (report/html_page.py) that carry `option(...)`.
"""

from __future__ import annotations

import typer

from .configured import Given, add_command, quiet, run_argument


def report_config() -> type:
    from ..report.html_page import ReportConfig  # lazy: keeps cxrtool --help fast

    return ReportConfig


def report(given: Given) -> None:
    """Write RUN/report.html: config, curves, ROC and table, CAMs, embeddings, parent runs, images inlined."""
    # lazy: keeps cxrtool --help fast
    from ..progress import result
    from ..report.html_page import build_report

    result(f"report: {build_report(given.config())}")


def register(app: typer.Typer) -> None:
    add_command(app, "report", report, report_config, run_argument(), quiet("Only print the report's path."))
