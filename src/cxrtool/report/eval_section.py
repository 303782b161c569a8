"""The detail of one evaluation on the report page, under its headline (report.evaluation).

In order: the forest plot of every label; the per-label table (patients per class, AUROC and PR
AUC with their intervals in one cell, calibration error, the best metadata-only baseline beside
the model, published numbers when the evaluation was run with `--compare`); then, collapsed, the
operating points, the full table of metadata-only baselines, external and per-fold scores; the
ROC and reliability figures; and links to the CSV and JSON files, which hold every column.
"""

from __future__ import annotations

from pathlib import Path

from ..formatting import fmt, fmt_ci, fmt_count, number_or_none
from .evaluation import (
    Evaluation,
    auroc_cell,
    best_shortcut,
    forest_rows,
    over_folds,
    patients_cell,
    published_markers,
    reaches,
)
from .forest import forest_png
from .markup import details, esc, file_figure, file_link, note, png_figure, table


def _ci(e: dict, key: str = "auroc") -> str:
    return fmt_ci(e.get(key), e.get(f"{key}_low"), e.get(f"{key}_high"), missing="-")


def _ci2(e: dict) -> str:
    return fmt_ci(e.get("auroc"), e.get("auroc_low"), e.get("auroc_high"), digits=2, missing="-")


def _reason(e: dict) -> str | None:
    if e.get("not_computable"):
        return f"not computable ({e['not_computable']})"
    if e.get("not_estimable"):
        return f"not estimable ({e['not_estimable']})"
    return None


def _unscored(e: dict) -> bool:
    return bool(e.get("not_computable") or e.get("not_estimable"))


def _published_columns(ev: Evaluation) -> list[dict]:
    """The evaluation's `--compare` entries that have a number for at least one of its labels."""
    entries = [c for c in ev.metrics.get("compare") or [] if isinstance(c, dict)]
    return [c for c in entries if any(number_or_none(v) is not None for v in (c.get("auroc") or {}).values())]


def label_table(ev: Evaluation) -> str:
    m = ev.metrics
    compare = _published_columns(ev)
    sc = m.get("shortcuts")
    patients = (
        "Patients + / − (images)"
        if any(e.get("positive_patients") is not None for e in ev.labels.values())
        else "Images + / −"
    )
    columns = ["Label", patients, "AUROC [95% CI]", "PR AUC [95% CI]", "ECE"]
    if sc:
        columns.append("Best metadata-only AUROC [95% CI]")
    columns += [str(c.get("name", c.get("key"))) for c in compare]
    rows = []
    for label, e in ev.labels.items():
        row = [
            label,
            patients_cell(e),
            auroc_cell(e, False),
            "" if _unscored(e) else _ci(e, "pr_auc"),
            fmt(e.get("ece")),
        ]
        if sc:
            name, s = best_shortcut(m, label)
            row.append(f"{name}: {_ci(s)}" + (" (reaches the model)" if reaches(e, s) else "") if name else "-")
        row += [fmt((c.get("auroc") or {}).get(label), missing="") for c in compare]
        rows.append(row)
    mean = m.get("mean") or {}
    if len(ev.labels) > 1:
        over = mean.get("labels")
        mean_text = fmt_ci(mean.get("estimate"), mean.get("low"), mean.get("high"), missing="not computable")
        if over is not None and len(over) < len(ev.labels):
            mean_text += f" ({len(over)} of {len(ev.labels)} labels)"
        rows.append(["mean", "", mean_text, "", "", *([""] if sc else []), *[""] * len(compare)])
    return table(columns, rows, text=(5,) if sc else ())


def operating_points_table(ev: Evaluation) -> str | None:
    ops = ev.metrics.get("operating_points") or {}
    names = ops.get("names") or []
    rows = []
    for label, e in ev.labels.items():
        for name in names:
            p = (e.get("operating_points") or {}).get(name)
            if p:
                rows.append(
                    [
                        label,
                        name,
                        fmt(p.get("threshold")),
                        fmt_ci(p.get("sensitivity"), p.get("sensitivity_low"), p.get("sensitivity_high")),
                        fmt_ci(p.get("specificity"), p.get("specificity_low"), p.get("specificity_high")),
                    ]
                )
    if not rows:
        return None
    where = f"chosen on the {ops.get('chosen_on')} split, measured on the {ops.get('reported_on')} split"
    if ops.get("in_sample"):
        where += " (in-sample: optimistic)"
    return details(
        f"Operating points ({where})",
        table(["Label", "Operating point", "Threshold", "Sensitivity [95% CI]", "Specificity [95% CI]"], rows, left=2),
    )


def shortcuts_tables(ev: Evaluation) -> str:
    m = ev.metrics
    sc = m.get("shortcuts")
    if not sc:
        return ""
    predictors = sc.get("predictors") or {}
    summary_rows, full_rows = [], []
    for label, e in ev.labels.items():
        name, s = best_shortcut(m, label)
        verdict = "-" if not name else "yes" if reaches(e, s) else "no"
        summary_rows.append([label, auroc_cell(e, False), name or "-", _ci(s) if name else "-", verdict])
        # Two decimals: one column per predictor must fit the page.
        full_rows.append(
            [label, auroc_cell(e, False), *[_ci2((p or {}).get(label) or {}) for p in predictors.values()]]
        )
    columns = sc.get("columns") or []
    intro = (
        f"<p>Logistic regressions that see only metadata ({esc(', '.join(columns))}; no pixels), fitted on "
        f"{esc(sc.get('fitted_on', 'the training split'))} and scored on the same images as the model. Where one "
        "reaches the model's interval, the model is not shown to read more than how and of whom the image was taken.</p>"
    )
    summary = table(
        [
            "Label",
            "Model AUROC [95% CI]",
            "Best metadata-only predictor",
            "Its AUROC [95% CI]",
            "Reaches the model's interval",
        ],
        summary_rows,
        text=(2, 4),
    )
    full = details(
        "Every metadata-only predictor",
        table(["Label", "Model AUROC [95% CI]", *[f"{n} only" for n in predictors]], full_rows),
    )
    return "<h4>Metadata-only baselines (shortcuts)</h4>" + intro + summary + full


def external_table(ev: Evaluation) -> str:
    ext = ev.metrics.get("external")
    if not ext or not ext.get("labels"):
        return ""
    rows = []
    for label, e in ext["labels"].items():
        inside = ev.labels.get(label) or {}
        rows.append([label, auroc_cell(inside, False), patients_cell(e), auroc_cell(e, False)])
    im, em = ext.get("internal_mean") or {}, ext.get("mean") or {}
    rows.append(
        [
            "mean",
            fmt_ci(im.get("estimate"), im.get("low"), im.get("high")),
            "",
            fmt_ci(em.get("estimate"), em.get("low"), em.get("high")),
        ]
    )
    return f"<h4>External: {esc(ext.get('data', ''))}</h4>" + table(
        ["Label", "Internal AUROC [95% CI]", "External + / − (images)", "External AUROC [95% CI]"], rows
    )


def folds_table(ev: Evaluation) -> str:
    cv = ev.metrics.get("cv")
    if not cv or not cv.get("folds"):
        return ""
    labels = list(ev.labels)
    rows = []
    for fold, f in cv["folds"].items():
        aurocs = f.get("auroc") or {}
        rows.append(
            [str(fold), fmt_count(f.get("images")), fmt(f.get("mean_auroc")), *[fmt(aurocs.get(l)) for l in labels]]
        )
    spread = f"mean {fmt(cv.get('fold_mean'))} ± {fmt(cv.get('fold_sd'))} (SD over folds)"
    body = table(["Fold", "Images", "Mean AUROC", *labels], rows)
    return (
        "<h4>Cross-validation: AUROC per fold</h4>"
        + f"<p>Mean AUROC per fold: {esc(spread)}.</p>"
        + (body if len(labels) <= 6 else details(f"AUROC of each label in each of {len(rows)} folds", body))
    )


def files_line(ev: Evaluation, page: Path) -> str:
    names = ["per_label.csv", "shortcuts.csv", "external.csv", "folds.csv", "predictions.csv", "metrics.json"]
    links = [file_link(ev.folder / n, page) for n in names if (ev.folder / n).is_file()]
    return f"<p class=sub>Every column: {', '.join(links)} (in {esc(ev.folder)}).</p>" if links else ""


def section(ev: Evaluation, page: Path) -> str:
    """The evaluation's detail (HTML)."""
    parts = [f"<h3 id='{esc(ev.anchor)}'>{esc(ev.title)}</h3>"]
    rows = forest_rows(ev)
    markers = published_markers(ev)
    if any(number_or_none(r.estimate) is not None for r in rows):
        png = forest_png(
            rows,
            f"AUROC by label: {ev.title}",
            marker_note="published, on other test sets (context, not head-to-head)" if markers else "",
        )
        parts.append(
            png_figure(
                png,
                "forest plot of every label's AUROC",
                (
                    "Squares: mean of the per-fold AUROCs with its 95% t-interval over folds; "
                    if over_folds(ev.metrics.get("mean") or {})
                    else "Squares: AUROC with its 95% patient-bootstrap interval; "
                )
                + "open circle: not estimable (no interval); diamond: the mean."
                + (" Open markers: published numbers where the run has the label." if markers else ""),
            )
        )
    parts.append("<h4>AUROC by label</h4>" + label_table(ev))
    replicates = (ev.metrics.get("bootstrap") or {}).get("replicates")
    skipped = [f"{l} {fmt_count(e['skipped_replicates'])}" for l, e in ev.labels.items() if e.get("skipped_replicates")]
    if skipped and replicates:
        parts.append(
            note(
                f"Bootstrap replicates that drew one class only, skipped (of {fmt_count(replicates)}): "
                + ", ".join(skipped)
                + "; the interval is over the others."
            )
        )
    unscored = [f"{label}: {why}" for label, e in ev.labels.items() if (why := _reason(e))]
    if unscored:
        parts.append(note("No interval for " + "; ".join(unscored) + "."))
    left_out = (ev.metrics.get("mean") or {}).get("left_out") or {}
    if left_out and len(ev.labels) > 1:
        parts.append(note(f"The mean leaves out {', '.join(left_out)}."))
    for c in _published_columns(ev):
        parts.append(note(f"{c.get('name')} (published): {c.get('citation')}; measured on {c.get('measured_on')}."))
    if (ops := operating_points_table(ev)) is not None:
        parts.append(ops)
    parts += [shortcuts_tables(ev), external_table(ev), folds_table(ev)]
    figures = [(ev.folder / n, alt) for n, alt in (("roc.png", "ROC curves"), ("reliability.png", "reliability"))]
    shown = [file_figure(path, alt) for path, alt in figures if path.is_file()]
    if shown:
        parts.append(details("ROC curves and reliability diagrams", "".join(shown), open_=True))
    parts.append(files_line(ev, page))
    return "".join(parts)
