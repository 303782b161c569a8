"""`cxrtool report [RUN]`: one self-contained HTML page for a run (see docs/report.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .support import quiet_option, user_errors


def register(app: typer.Typer) -> None:
    @app.command("report")
    @user_errors
    def report(
        run: Path | None = typer.Argument(None, help="Run directory (default: the newest under ./runs)."),
        run_opt: Path | None = typer.Option(None, "--run", help="Run directory (same as the argument)."),
        out: Path | None = typer.Option(None, "--out", help="HTML file to write (default RUN/report.html)."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing --out file (never a cache's or a run's own file)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print the report's path."),
    ) -> None:
        """Write RUN/report.html: config, curves, ROC and table, CAMs, embeddings, parent runs, images inlined."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..progress import result
        from ..report.html_page import ReportConfig, build_report

        path = build_report(ReportConfig(run=run or run_opt, out=out, overwrite=overwrite))
        result(f"report: {path}")
