"""`compare`'s page: report.html in its --out folder, made of the files compare wrote there.

It reads arms.csv (one row per arm), and when present differences.csv (paired differences against
the reference arm) and findings.csv (pretraining runs per finding beside published numbers), and
shows: a headline (the label, the arms, the warnings in words), a forest plot of the arms' test
AUROCs, one of each arm's paired difference from the reference when compare computed them, one of
each pretraining run's findings with published numbers as markers, and the tables with human
headings (the rest folded away, every column in the CSVs). Columns are read defensively: a
column an older compare did not write is simply not shown.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write_text
from ..formatting import fmt, fmt_ci, fmt_count, number_or_none
from ..safeio import restore_cells
from .forest import ForestRow, forest_png
from .markup import details, esc, file_link, page, png_figure, table

PAGE = "report.html"


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        frame = restore_cells(pd.read_csv(path))  # compare quotes text cells a spreadsheet would run
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return []
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def _ok(r: dict) -> bool:
    return str(r.get("status") or "ok") == "ok"


def _ci(r: dict, key: str, low: str, high: str) -> str:
    return fmt_ci(r.get(key), r.get(low), r.get(high), missing="")


def _p(value: Any) -> str:
    """A p-value as people write it: '<0.001' below 0.001; text (as a table wrote it) as it is."""
    try:
        number = number_or_none(value)
    except (TypeError, ValueError):
        return str(value)
    if number is None:
        return ""
    return "<0.001" if number < 0.001 else fmt(number)


def _has_diff(arms: list[dict]) -> bool:
    return any(number_or_none(r.get("diff")) is not None for r in arms)


def arm_rows(arms: list[dict]) -> list[ForestRow]:
    rows = []
    for r in arms:
        others = {}
        if number_or_none(r.get("shortcut_auroc")) is not None:
            others["best metadata-only baseline"] = r["shortcut_auroc"]
        if r.get("run") and number_or_none(r.get("cv_pooled")) is not None:
            others["k-fold, pooled out-of-fold"] = r["cv_pooled"]
        if number_or_none(r.get("test_auroc")) is not None:
            rows.append(ForestRow(str(r["arm"]), r["test_auroc"], r.get("test_low"), r.get("test_high"), others=others))
        elif number_or_none(r.get("cv_pooled")) is not None:  # an arm evaluated by cross-validation only
            rows.append(
                ForestRow(
                    str(r["arm"]),
                    r["cv_pooled"],
                    r.get("cv_pooled_low"),
                    r.get("cv_pooled_high"),
                    note="k-fold pooled",
                    others=others,
                )
            )
        else:
            rows.append(ForestRow(str(r["arm"]), note=str(r.get("status") or "no AUROC")))
    return rows


def diff_rows(arms: list[dict]) -> list[ForestRow]:
    rows = []
    for r in arms:
        if r.get("arm") == r.get("reference") or not r.get("reference"):
            continue
        if number_or_none(r.get("diff")) is not None:
            rows.append(ForestRow(str(r["arm"]), r["diff"], r.get("diff_low"), r.get("diff_high")))
        elif _ok(r):
            rows.append(ForestRow(str(r["arm"]), note="not paired"))
    return rows


def findings_rows(findings: list[dict], run: str, published: list[str]) -> list[ForestRow]:
    rows = []
    for r in findings:
        why = r.get(f"{run}_not_computable")
        others = {p: r[p] for p in published if number_or_none(r.get(p)) is not None}
        if why:
            rows.append(ForestRow(str(r["finding"]), note="not computable", others={}))
        else:
            rows.append(
                ForestRow(
                    str(r["finding"]), r.get(f"{run}_auroc"), r.get(f"{run}_low"), r.get(f"{run}_high"), others=others
                )
            )
    return rows


def _warnings(arms: list[dict], label: str) -> list[str]:
    out = []
    for r in arms:
        status = str(r.get("status") or "ok")
        if status.startswith("skipped") or status != "ok":
            out.append(f"<b>{esc(r['arm'])}</b>: {esc(status)}.")
        low, short = number_or_none(r.get("test_low")), number_or_none(r.get("shortcut_auroc"))
        if low is not None and short is not None and short >= low:
            out.append(
                f"<b>Metadata alone reaches {esc(r['arm'])}'s interval</b>: {esc(r.get('shortcut'))} "
                f"{fmt(short)} vs {esc(_ci(r, 'test_auroc', 'test_low', 'test_high'))}: that arm's {esc(label)} "
                "AUROC is not shown to read more than how and of whom the image was taken."
            )
    return out


def arms_table(arms: list[dict], label: str) -> str:
    diff = _has_diff(arms)
    reference = next((r.get("reference") for r in arms if r.get("reference")), None)
    columns = ["Arm", f"{label} test AUROC [95% CI]", "Test patients (+ / − images)"]
    if diff:
        columns += [f"Δ vs {reference} [95% CI]", "p"]
    columns += ["Best metadata-only [95% CI]"]
    rows = []
    for r in arms:
        counts = ""
        if r.get("test_patients") is not None:
            counts = f"{fmt_count(r['test_patients'])} ({fmt_count(r.get('test_positives'))} / {fmt_count(r.get('test_negatives'))})"
        test = _ci(r, "test_auroc", "test_low", "test_high") if _ok(r) else str(r.get("status"))
        row = [str(r["arm"]), test, counts]
        if diff:
            if r.get("arm") == reference:
                row += ["reference", ""]
            else:
                row += [_ci(r, "diff", "diff_low", "diff_high"), _p(r.get("diff_p"))]
        shortcut = (
            f"{r['shortcut']}: {_ci(r, 'shortcut_auroc', 'shortcut_low', 'shortcut_high')}" if r.get("shortcut") else ""
        )
        rows.append([*row, shortcut])
    return table(columns, rows, text=(len(columns) - 1,))


def more_table(arms: list[dict]) -> str:
    """The k-fold, external, seeds and other-label columns, folded away (only those with values)."""
    columns = {
        "k-fold mean ± SD": lambda r: (
            f"{fmt(r['cv_mean'])} ± {fmt(r.get('cv_sd'))} ({fmt_count(r.get('cv_folds'))} folds)"
            if r.get("cv_mean") is not None
            else ""
        ),
        "Pooled out-of-fold [95% CI]": lambda r: _ci(r, "cv_pooled", "cv_pooled_low", "cv_pooled_high"),
        "k-fold Δ [95% CI]": lambda r: _ci(r, "cv_diff", "cv_diff_low", "cv_diff_high"),
        "External [95% CI]": lambda r: _ci(r, "external_auroc", "external_low", "external_high"),
        "Seeds: mean ± SD": lambda r: (
            f"{fmt(r['seeds_mean'])} ± {fmt(r.get('seeds_sd'))} ({fmt_count(r['seeds'])} seeds)"
            if r.get("seeds")
            else ""
        ),
        "Mean of other labels": lambda r: (
            f"{fmt(r['other_mean'])} ({fmt_count(r.get('other_labels'))} labels)"
            if r.get("other_mean") is not None
            else ""
        ),
    }
    cells = {name: [f(r) for r in arms] for name, f in columns.items()}
    kept = [name for name, values in cells.items() if any(values)]
    if not kept:
        return ""
    rows = [[str(r["arm"]), *[cells[n][i] for n in kept]] for i, r in enumerate(arms)]
    return details("k-fold, external and other columns", table(["Arm", *kept], rows))


def render(out: Path) -> str:
    out = Path(out)
    page_path = out / PAGE
    arms = _records(out / "arms.csv")
    label = next((str(r["label"]) for r in arms if r.get("label")), "the label")
    ok = [r for r in arms if _ok(r) and number_or_none(r.get("test_auroc")) is not None]
    best = max(ok, key=lambda r: r["test_auroc"], default=None)
    reference = next((r.get("reference") for r in arms if r.get("reference")), None)
    answer = (
        f"Highest {label} test AUROC: {best['arm']} {_ci(best, 'test_auroc', 'test_low', 'test_high')}"
        if best
        else f"No arm has a {label} test AUROC"
    )
    facts = f"{len(arms)} arm{'' if len(arms) == 1 else 's'}" + (
        f"; each paired with the reference arm {reference} on the same patients"
        if reference and _has_diff(arms)
        else ""
    )
    warns = _warnings(arms, label)
    warn_html = "<ul class=warn>" + "".join(f"<li>{w}</li>" for w in warns) + "</ul>" if warns else ""
    parts = [
        f"<h1>cxrtool compare: {esc(label)}</h1><p class=sub>{esc(out.resolve())}</p>",
        f"<section class=headline id=headline><h2>{esc(label)}: the arms side by side</h2>"
        f"<p class=answer>{esc(answer)}</p><p class=sub>{esc(facts)}. Intervals: 95% patient bootstrap.</p>{warn_html}</section>",
    ]
    rows = arm_rows(arms)
    if any(number_or_none(r.estimate) is not None for r in rows):
        parts.append(
            png_figure(
                forest_png(rows, f"{label} AUROC by arm"),
                "forest plot of the arms",
                "Squares: test AUROC with its 95% interval; open markers: the arm's best metadata-only baseline "
                "and pooled out-of-fold AUROC.",
            )
        )
    parts.append(arms_table(arms, label) + more_table(arms))
    diffs = diff_rows(arms)
    if any(number_or_none(r.estimate) is not None for r in diffs):
        values = [abs(v) for r in diffs for v in (r.estimate, r.low, r.high) if number_or_none(v) is not None]
        span = max([*values, 0.05]) * 1.1
        parts.append(
            f"<h2>Each arm against {esc(reference)}, on the same patients</h2>"
            + png_figure(
                forest_png(
                    diffs,
                    f"Δ {label} AUROC vs {reference} (paired)",
                    xlabel=f"AUROC difference from {reference} (95% paired interval)",
                    reference=0.0,
                    reference_label="no difference",
                    xlim=(-span, span),
                    digits=3,
                ),
                "forest plot of the paired differences",
                "Arm minus reference on the same test patients; the interval is a patient bootstrap that draws "
                "the same patients for both arms.",
            )
        )
    findings = _records(out / "findings.csv")
    if findings:
        runs = sorted({k[: -len("_auroc")] for k in findings[0] if k.endswith("_auroc")})
        run_keys = {f"{r}_{s}" for r in runs for s in ("auroc", "low", "high", "positives", "not_computable")}
        published = [k for k in findings[0] if k != "finding" and k not in run_keys]
        parts.append("<h2>Pretraining: AUROC per finding beside published numbers</h2>")
        for run in runs:
            parts.append(
                png_figure(
                    forest_png(
                        findings_rows(findings, run, published),
                        f"{run}: AUROC per finding",
                        marker_note="published, on other test sets (context, not head-to-head)" if published else "",
                    ),
                    f"forest plot of {run}'s findings",
                )
            )
        rows = [
            [
                str(r["finding"]),
                *[
                    _ci(r, f"{run}_auroc", f"{run}_low", f"{run}_high") or str(r.get(f"{run}_not_computable") or "")
                    for run in runs
                ],
                *[fmt(r.get(p), missing="") for p in published],
            ]
            for r in findings
        ]
        parts.append(table(["Finding", *[f"{run} AUROC [95% CI]" for run in runs], *published], rows))
    links = [
        file_link(out / n, page_path)
        for n in ("arms.csv", "differences.csv", "findings.csv", "table.md")
        if (out / n).is_file()
    ]
    parts.append(f"<p class=sub>Every column: {', '.join(links)}.</p>")
    return page(f"cxrtool compare: {label}", "".join(parts))


def write_compare_page(out: Path) -> Path:
    """Write OUT/report.html from the tables compare wrote in OUT; returns its path."""
    path = Path(out) / PAGE
    atomic_write_text(path, render(Path(out)))
    return path
