"""`cxrtool compare`: one results table over several evaluated runs (see docs/compare.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .support import quiet_option, user_errors


def register(app: typer.Typer) -> None:
    @app.command("compare")
    @user_errors
    def compare(
        arm: list[str] = typer.Option(
            [], "--arm", help="NAME=RUN: an evaluated run, one row of the table (repeat for each arm)."
        ),
        cv: list[str] = typer.Option(
            [], "--cv", help="NAME=RUN: the arm's evaluated cross-validation run (finetune --folds K)."
        ),
        skipped: list[str] = typer.Option(
            [], "--skipped", help="NAME=REASON: an arm that could not run, listed with its reason."
        ),
        label: str = typer.Option("COVID-19", "--label", help="The label the arms are compared on."),
        pretrain: list[str] = typer.Option(
            [],
            "--pretrain",
            help="RUN or NAME=RUN: an evaluated pretraining run, its per-finding AUROC beside published ones (repeatable).",
        ),
        published: list[str] = typer.Option(
            [],
            "--published",
            help="chexnet (default), wang, or TITLE=FILE.csv (columns label,auroc), e.g. the report's Table 1.",
        ),
        reference: str | None = typer.Option(
            None, "--reference", help="The arm every other arm is paired with (default: the first arm given)."
        ),
        allow_different_test_sets: bool = typer.Option(
            False,
            "--allow-different-test-sets",
            help="List arms scored on other test sets (each row names its set) instead of refusing; they are not paired.",
        ),
        bootstrap: int = typer.Option(1000, "--bootstrap", help="Replicates of the paired patient bootstrap."),
        seed: int = typer.Option(0, "--seed", help="Seed of the paired bootstrap."),
        out: Path = typer.Option(
            Path("results"),
            "--out",
            help="Folder for table.md, arms.csv, differences.csv, findings.csv and report.html.",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier table in --out."),
        allow_stale: bool = typer.Option(
            False, "--allow-stale", help="Tabulate evaluations of earlier weights than the run's, labelled stale."
        ),
        allow_seen: bool = typer.Option(
            False, "--allow-seen", help="Tabulate evaluations of images the run had seen, labelled in-sample."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the table."),
    ) -> None:
        """Test AUROC with intervals, k-fold spread, shortcut baseline per arm, and each arm paired with the reference."""
        quiet_option(quiet)
        # lazy: keeps cxrtool --help fast
        from ..evaluate.compare import CompareConfig
        from ..evaluate.compare import compare as build
        from ..report.compare_page import write_compare_page

        build(
            CompareConfig(
                arms=list(arm),
                cv=list(cv),
                skipped=list(skipped),
                label=label,
                pretrain=list(pretrain),
                published=list(published),
                out=out,
                overwrite=overwrite,
                allow_stale=allow_stale,
                allow_seen=allow_seen,
                reference=reference,
                allow_different_test_sets=allow_different_test_sets,
                bootstrap=bootstrap,
                seed=seed,
            ),
            page=write_compare_page,
        )
