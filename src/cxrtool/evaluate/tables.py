"""Turning evaluation results into tables: per_label.csv / .md, shortcuts.csv, external.csv,
folds.csv, and the rich tables `cxrtool evaluate` prints.

Kept apart from `cxrtool.evaluate.pipeline` (which computes) so that the numbers and their presentation
can change independently. Every number is printed with its 95% patient-bootstrap interval where
one exists; a label that cannot be scored shows "not computable" and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..formatting import fmt, fmt_ci
from ..progress import print_table
from ..runs import atomic_write_text
from .published import published_auroc, published_results
from .shortcuts import shortcuts_table


def per_label_frame(metrics: dict) -> pd.DataFrame:
    """One row per label, then a `mean` row: the content of per_label.csv."""
    rows = []
    compare = metrics.get("compare") or []
    for label, e in metrics["labels"].items():
        row = {
            "label": label,
            "images": e["n"],
            "positives": e["positives"],
            "negatives": e["negatives"],
            "auroc": e.get("auroc"),
            "auroc_low": e.get("auroc_low"),
            "auroc_high": e.get("auroc_high"),
            "pr_auc": e.get("pr_auc"),
            "pr_auc_low": e.get("pr_auc_low"),
            "pr_auc_high": e.get("pr_auc_high"),
            "prevalence": e.get("prevalence"),
            **operating_point_columns(metrics, e),
            "ece": e.get("ece"),
            "skipped_replicates": e.get("skipped_replicates"),
            "not_computable": e.get("not_computable"),
        }
        for pub in compare:
            row[pub["key"]] = pub["auroc"].get(label)
        rows.append(row)
    mean = metrics["mean"]
    mean_row = {
        "label": "mean",
        "auroc": mean.get("estimate"),
        "auroc_low": mean.get("low"),
        "auroc_high": mean.get("high"),
        "skipped_replicates": mean.get("skipped_replicates"),
        "not_computable": mean.get("not_computable"),
    }
    for pub in compare:
        values = [pub["auroc"].get(label) for label in metrics["labels"]]
        values = [v for v in values if v is not None]
        mean_row[pub["key"]] = float(np.mean(values)) if values else None
    rows.append(mean_row)
    frame = pd.DataFrame(rows)
    for col in ("images", "positives", "negatives", "skipped_replicates"):
        frame[col] = frame[col].astype("Int64")  # counts stay integers beside the blank mean row
    return frame


def operating_point_names(metrics: dict) -> list[str]:
    """youden, sens90, ...: the operating points chosen on val (none for a cross-validation run)."""
    return list((metrics.get("operating_points") or {}).get("names") or [])


def operating_point_columns(metrics: dict, e: dict) -> dict:
    """per_label.csv columns: each val-chosen threshold and sensitivity/specificity at it, with intervals."""
    ops = metrics.get("operating_points") or {}
    row = {"thresholds_chosen_on": ops.get("chosen_on")} if ops else {}
    if ops.get("in_sample"):
        row["thresholds_chosen_on"] = f"{ops['chosen_on']} (in-sample: optimistic)"
    for name in operating_point_names(metrics):
        p = (e.get("operating_points") or {}).get(name) or {}
        for key in (
            "threshold",
            "sensitivity",
            "sensitivity_low",
            "sensitivity_high",
            "specificity",
            "specificity_low",
            "specificity_high",
        ):
            row[f"{name}_{key}"] = p.get(key)
    return row


def _op_cell(p: dict | None) -> str:
    if not p:
        return "-"
    return (
        f"{fmt(p['threshold'])}: {fmt_ci(p['sensitivity'], p.get('sensitivity_low'), p.get('sensitivity_high'))}"
        f" / {fmt_ci(p['specificity'], p.get('specificity_low'), p.get('specificity_high'))}"
    )


def compare_entries(name: str | None, labels: list[str]) -> list[dict]:
    """Published columns for `--compare NAME`, restricted to our labels."""
    if not name:
        return []
    return [
        {
            "key": r.key,
            "name": r.name,
            "citation": r.citation,
            "measured_on": r.measured_on,
            "auroc": {label: published_auroc(r, label) for label in labels},
        }
        for r in published_results(name)
    ]


def _label_cells(e: dict, names: list[str]) -> list[str]:
    if e.get("not_computable"):
        return [
            f"{e['n']} ({e['positives']}+/{e['negatives']}-)",
            f"not computable: {e['not_computable']}",
            "",
            *[""] * len(names),
            "",
        ]
    ops = e.get("operating_points") or {}
    return [
        f"{e['n']} ({e['positives']}+/{e['negatives']}-)",
        fmt_ci(e.get("auroc"), e.get("auroc_low"), e.get("auroc_high")),
        fmt_ci(e.get("pr_auc"), e.get("pr_auc_low"), e.get("pr_auc_high")),
        *[_op_cell(ops.get(n)) for n in names],
        fmt(e.get("ece")),
    ]


def main_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    compare = metrics.get("compare") or []
    names = operating_point_names(metrics)
    ops = metrics.get("operating_points") or {}
    where = "val thr, in-sample: optimistic" if ops.get("in_sample") else "val thr"
    columns = [
        "label",
        "images (+/-)",
        "AUROC [95% CI]",
        "PR AUC [95% CI]",
        *[f"{n} ({where}): sens / spec [95% CI]" for n in names],
        "ECE",
    ]
    columns += [f"{c['name']} AUROC" for c in compare]
    rows = []
    for label, e in metrics["labels"].items():
        rows.append([label, *_label_cells(e, names), *[fmt(c["auroc"].get(label)) for c in compare]])
    mean = metrics["mean"]
    mean_pub = []
    for c in compare:
        values = [v for v in c["auroc"].values() if v is not None]
        mean_pub.append(fmt(float(np.mean(values))) if values else "-")
    rows.append(
        [
            "mean",
            "",
            fmt_ci(mean.get("estimate"), mean.get("low"), mean.get("high")),
            "",
            *[""] * len(names),
            "",
            *mean_pub,
        ]
    )
    return columns, rows


def shortcut_table(metrics: dict) -> tuple[list[str], list[list[str]]] | None:
    sc = metrics.get("shortcuts")
    if not sc:
        return None
    names = list(sc["predictors"])
    columns = ["label", "model AUROC [95% CI]", *[f"{n} only" for n in names]]
    rows = []
    for label, e in metrics["labels"].items():
        cells = [label, fmt_ci(e.get("auroc"), e.get("auroc_low"), e.get("auroc_high"))]
        for n in names:
            s = sc["predictors"][n].get(label)  # none for a label the model or data lacks
            cells.append("-" if not s or s["auroc"] is None else fmt_ci(s["auroc"], s["auroc_low"], s["auroc_high"]))
        rows.append(cells)
    return columns, rows


def external_frame(metrics: dict) -> pd.DataFrame | None:
    ext = metrics.get("external")
    if not ext:
        return None
    rows = []
    for label, e in ext["labels"].items():
        i = metrics["labels"][label]
        rows.append(
            {
                "label": label,
                "internal_auroc": i.get("auroc"),
                "internal_auroc_low": i.get("auroc_low"),
                "internal_auroc_high": i.get("auroc_high"),
                "external_auroc": e.get("auroc"),
                "external_auroc_low": e.get("auroc_low"),
                "external_auroc_high": e.get("auroc_high"),
                "external_images": e["n"],
                "external_positives": e["positives"],
                "external_not_computable": e.get("not_computable"),
            }
        )
    im, em = ext["internal_mean"], ext["mean"]
    rows.append(
        {
            "label": "mean",
            "internal_auroc": im.get("estimate"),
            "internal_auroc_low": im.get("low"),
            "internal_auroc_high": im.get("high"),
            "external_auroc": em.get("estimate"),
            "external_auroc_low": em.get("low"),
            "external_auroc_high": em.get("high"),
        }
    )
    return pd.DataFrame(rows)


def folds_frame(metrics: dict) -> pd.DataFrame | None:
    cv = metrics.get("cv")
    if not cv:
        return None
    rows = [
        {"fold": fold, "images": f["images"], "mean_auroc": f["mean_auroc"], **f["auroc"]}
        for fold, f in cv["folds"].items()
    ]
    return pd.DataFrame(rows)


def _markdown(columns: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_report(metrics: dict) -> str:
    """per_label.md: the tables and what they are measured on."""
    boot = metrics["bootstrap"]
    parts = [
        f"# Evaluation: {metrics['run']}\n",
        f"{metrics['what']}: {metrics['images']} images of {metrics['patients']} patients. "
        f"Intervals: 95% percentile intervals from {boot['replicates']} bootstrap replicates that resample "
        f"{boot['unit']}s (seed {boot['seed']}).\n",
        _markdown(*main_table(metrics)),
    ]
    ops = metrics.get("operating_points") or {}
    if ops.get("chosen_on"):
        parts.append(
            f"- Operating points: thresholds chosen on the {ops['chosen_on']} split ({', '.join(ops['names'])}; "
            f"kept in thresholds.json), sensitivity/specificity measured on the {ops['reported_on']} split."
            + (f" {ops['note']}." if ops.get("note") else "")
        )
    for c in metrics.get("compare") or []:
        parts.append(f"- {c['name']} ({c['citation']}): measured on {c['measured_on']}.")
    if metrics.get("compare"):
        parts.append(f"- Ours: measured on {metrics['what']}.")
        parts.append("- The published `mean` is taken over the labels in this table, as ours is.\n")
    if (table := shortcut_table(metrics)) is not None:
        sc = metrics["shortcuts"]
        parts.append(f"\n## Shortcut baselines (metadata only, fitted on {sc['fitted_on']})\n")
        parts.append(_markdown(*table))
        parts += [f"- warning: {w}" for w in sc["warnings"]]
    ext = external_frame(metrics)
    if ext is not None:
        parts.append(f"\n## External: {metrics['external']['data']}\n")
        parts.append(_markdown(*external_table(metrics)))
    if metrics.get("cv"):
        cv = metrics["cv"]
        parts.append(
            f"\n## Cross-validation folds (mean AUROC per fold: {fmt(cv['fold_mean'])} +- {fmt(cv['fold_sd'])})\n"
        )
        frame = folds_frame(metrics)
        parts.append(
            _markdown(
                list(frame.columns),
                [[fmt(v) if isinstance(v, float) else str(v) for v in r] for r in frame.itertuples(index=False)],
            )
        )
    return "\n".join(parts) + "\n"


def external_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    frame = external_frame(metrics)
    columns = ["label", "internal AUROC [95% CI]", "external AUROC [95% CI]", "external images (+)"]
    rows = []
    for r in frame.to_dict("records"):
        external = (
            f"not computable: {r['external_not_computable']}"
            if isinstance(r.get("external_not_computable"), str)
            else fmt_ci(r["external_auroc"], r["external_auroc_low"], r["external_auroc_high"])
        )
        count = "" if r["label"] == "mean" else f"{int(r['external_images'])} ({int(r['external_positives'])})"
        rows.append(
            [
                r["label"],
                fmt_ci(r["internal_auroc"], r["internal_auroc_low"], r["internal_auroc_high"]),
                external,
                count,
            ]
        )
    return columns, rows


def write_tables(out: Path, metrics: dict) -> None:
    """per_label.csv/.md, and shortcuts.csv, external.csv, folds.csv when they apply."""
    atomic_write_text(out / "per_label.csv", per_label_frame(metrics).to_csv(index=False))
    atomic_write_text(out / "per_label.md", markdown_report(metrics))
    if metrics.get("shortcuts"):
        atomic_write_text(
            out / "shortcuts.csv", shortcuts_table(metrics["shortcuts"], metrics["labels"]).to_csv(index=False)
        )
    if (ext := external_frame(metrics)) is not None:
        atomic_write_text(out / "external.csv", ext.to_csv(index=False))
    if (folds := folds_frame(metrics)) is not None:
        atomic_write_text(out / "folds.csv", folds.to_csv(index=False))


def print_tables(metrics: dict) -> None:
    """The rich tables on stdout (shown in quiet mode too: they are the result)."""
    print_table(f"{metrics['what']} ({metrics['images']} images, {metrics['patients']} patients)", *main_table(metrics))
    if (table := shortcut_table(metrics)) is not None:
        print_table(f"Shortcut baselines: metadata only, fitted on {metrics['shortcuts']['fitted_on']}", *table)
    if metrics.get("external"):
        print_table(f"Internal vs external ({metrics['external']['data']})", *external_table(metrics))
    if metrics.get("cv"):
        frame = folds_frame(metrics)
        print_table(
            "Cross-validation: AUROC per fold",
            list(frame.columns),
            [[fmt(v) if isinstance(v, float) else str(v) for v in r] for r in frame.itertuples(index=False)],
        )
