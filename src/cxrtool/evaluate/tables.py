"""Turning evaluation results into tables: per_label.csv / .md, shortcuts.csv, external.csv,
folds.csv, and the rich tables `cxrtool evaluate` prints.

Kept apart from `cxrtool.evaluate.pipeline` (which computes) so that the numbers and their presentation
can change independently. Every AUROC is printed with its positive and negative patients and its
95% patient-bootstrap interval where one exists, and the replicates skipped for it (one class
drawn) beside the interval; a label that cannot be scored shows "not computable" and the reason,
one with too few patients of a class "not estimable" (no interval, no published number beside it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text
from ..formatting import fmt, fmt_ci
from ..progress import print_table, result
from ..safeio import csv_text
from .metrics import MIN_POSITIVE_PATIENTS
from .published import published_auroc, published_results
from .shortcuts import shortcuts_table


def replicates_of(metrics: dict) -> int:
    return int((metrics.get("bootstrap") or {}).get("replicates") or 0)


def skipped_text(skipped, replicates: int) -> str:
    """'372 of 1,000 replicates skipped' (one class drawn); empty when none was."""
    if not skipped:
        return ""
    return (
        f"{int(skipped):,} of {replicates:,} replicates skipped"
        if replicates
        else f"{int(skipped):,} replicates skipped"
    )


def patients_cell(e: dict) -> str:
    """'5 / 60 (130)': positive / negative patients, then the images they hold."""
    if e.get("positive_patients") is None:  # an entry written before patients were counted
        return f"{e['n']} images ({e['positives']}+/{e['negatives']}-)"
    return f"{e['positive_patients']} / {e['negative_patients']} ({e['n']})"


def auroc_cell(e: dict, replicates: int, key: str = "auroc") -> str:
    """An AUROC (or `pr_auc`) as people read it: the interval, skipped replicates beside it, or why there is none."""
    if e.get("not_computable"):
        return f"not computable: {e['not_computable']}" if key == "auroc" else ""
    if e.get("not_estimable"):
        if key != "auroc":
            return ""
        extra = skipped_text(e.get("skipped_replicates"), replicates)
        return f"not estimable ({e['not_estimable']}); point {fmt(e.get('auroc'))}" + (f", {extra}" if extra else "")
    text = fmt_ci(e.get(key), e.get(f"{key}_low"), e.get(f"{key}_high"))
    if key == "auroc" and e.get("auroc_interval") == "t over folds":  # no bootstrap: nothing skipped
        return text + (f" ({e['auroc_folds']} folds)" if e.get("auroc_folds") is not None else "")
    extra = skipped_text(e.get("skipped_replicates"), replicates)
    return f"{text} ({extra})" if extra and e.get(f"{key}_low") is not None else text


def mean_cell(mean: dict, replicates: int) -> str:
    text = fmt_ci(mean.get("estimate"), mean.get("low"), mean.get("high"))
    if mean.get("interval") == "t over folds":
        text += f" ({mean.get('folds')} folds)"
    extra = skipped_text(mean.get("skipped_replicates"), replicates)
    text = f"{text} ({extra})" if extra and mean.get("low") is not None else text
    labels = mean.get("labels")
    return f"{text}; {len(labels)} label{'' if len(labels) == 1 else 's'}" if labels and mean.get("left_out") else text


POOLED_KEYS = {"": "estimate", "_low": "low", "_high": "high"}


def _cv_columns(e: dict) -> dict:
    """per_label.csv's columns for a cross-validation run: how the AUROC's interval was made, and the pooled AUROC."""
    if e.get("auroc_interval") is None:
        return {}
    return {
        "auroc_interval": e.get("auroc_interval"),
        "auroc_folds": e.get("auroc_folds"),
        "pooled_auroc": e.get("pooled_auroc"),
        "pooled_auroc_low": e.get("pooled_auroc_low"),
        "pooled_auroc_high": e.get("pooled_auroc_high"),
        "pooled_note": e.get("pooled_note"),
    }


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
            "positive_patients": e.get("positive_patients"),
            "negative_patients": e.get("negative_patients"),
            "auroc": e.get("auroc"),
            "auroc_low": e.get("auroc_low"),
            "auroc_high": e.get("auroc_high"),
            **_cv_columns(e),
            "pr_auc": e.get("pr_auc"),
            "pr_auc_low": e.get("pr_auc_low"),
            "pr_auc_high": e.get("pr_auc_high"),
            "prevalence": e.get("prevalence"),
            **operating_point_columns(metrics, e),
            "ece": e.get("ece"),
            "skipped_replicates": e.get("skipped_replicates"),
            "replicates": replicates_of(metrics) if e.get("skipped_replicates") is not None else None,
            "not_computable": e.get("not_computable"),
            "not_estimable": e.get("not_estimable"),
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
        **_cv_columns(
            {
                "auroc_interval": mean.get("interval"),
                "auroc_folds": mean.get("folds"),
                **{f"pooled_auroc{k}": (mean.get("pooled") or {}).get(v) for k, v in POOLED_KEYS.items()},
                "pooled_note": (mean.get("pooled") or {}).get("note"),
            }
        ),
        "skipped_replicates": mean.get("skipped_replicates"),
        "replicates": replicates_of(metrics) if mean.get("skipped_replicates") is not None else None,
        "not_computable": mean.get("not_computable"),
        "not_estimable": "; ".join(f"{l} left out ({why})" for l, why in (mean.get("left_out") or {}).items()) or None,
    }
    for pub in compare:
        values = [pub["auroc"].get(label) for label in metrics["labels"]]
        values = [v for v in values if v is not None]
        mean_row[pub["key"]] = float(np.mean(values)) if values else None
    rows.append(mean_row)
    frame = pd.DataFrame(rows)
    for col in (
        "images",
        "positives",
        "negatives",
        "positive_patients",
        "negative_patients",
        "skipped_replicates",
        "replicates",
    ):
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


def compare_entries(name: str | None, entries: dict[str, dict]) -> list[dict]:
    """Published columns for `--compare NAME`, restricted to our labels.

    A label of ours that is not computable or not estimable gets no published number beside it
    (None): there is nothing of ours to set it against.
    """
    if not name:
        return []
    shown = [l for l, e in entries.items() if not e.get("not_computable") and not e.get("not_estimable")]
    return [
        {
            "key": r.key,
            "name": r.name,
            "citation": r.citation,
            "measured_on": r.measured_on,
            "auroc": {label: published_auroc(r, label) if label in shown else None for label in entries},
        }
        for r in published_results(name)
    ]


def _published_mean(c: dict) -> str:
    values = [v for v in c["auroc"].values() if v is not None]
    return fmt(float(np.mean(values))) if values else "-"


def _scored(e: dict) -> bool:
    return not e.get("not_computable") and not e.get("not_estimable")


def source_only_auroc(metrics: dict, label: str) -> float | None:
    predictors = ((metrics.get("shortcuts") or {}).get("predictors")) or {}
    return ((predictors.get("source") or {}).get(label) or {}).get("auroc")


def _confounded_text(metrics: dict, label: str, e: dict) -> str:
    if not e.get("source_confounded"):
        return ""
    return f"; confounded by source (source alone {fmt(source_only_auroc(metrics, label))})"


def within_source_table(metrics: dict) -> tuple[list[str], list[list[str]]] | None:
    """The source-confounded labels: the model's AUROC over all sources beside its AUROC within one source."""
    rows = []
    replicates = replicates_of(metrics)
    for label, e in metrics["labels"].items():
        for name, w in (e.get("within_source") or {}).items():
            confounded = f"{auroc_cell(e, replicates)} (source alone {fmt(source_only_auroc(metrics, label))})"
            rows.append([label, f"{name}: evaluated images", patients_cell(w), auroc_cell(w, replicates), confounded])
            c = (e.get("source_cache") or {}).get(name)
            if c:
                where = f"{name}: {c['split']} split of {c['data']} (its own patients)"
                rows.append([label, where, patients_cell(c), auroc_cell(c, replicates), confounded])
    if not rows:
        return None
    columns = [
        "label",
        "scored on",
        "patients + / - (images)",
        "model AUROC within the source [95% CI]",
        "model AUROC, all sources (confounded by source)",
    ]
    return columns, rows


def main_columns(metrics: dict) -> list[tuple[str, Callable[[str, dict], str], Callable[[dict], str]]]:
    """The terminal and per_label.md table, one column list: (header, cell of a label, cell of the mean)."""
    replicates = replicates_of(metrics)
    names = operating_point_names(metrics)
    ops = metrics.get("operating_points") or {}
    where = "val thr, in-sample: optimistic" if ops.get("in_sample") else "val thr"
    cv = metrics.get("cv")
    k = len((cv or {}).get("folds") or {})
    blank = lambda *_: ""  # noqa: E731
    columns = [
        ("label", lambda label, e: label, lambda m: "mean"),
        ("patients + / - (images)", lambda label, e: patients_cell(e), blank),
        (
            f"AUROC: mean of {k} folds [95% t-interval]" if cv else "AUROC [95% CI]",
            lambda label, e: auroc_cell(e, replicates) + _confounded_text(metrics, label, e),
            lambda m: mean_cell(m, replicates),
        ),
    ]
    if cv:
        columns.append(
            (
                f"pooled out-of-fold AUROC [95% CI] (pools {k} differently calibrated models)",
                lambda label, e: auroc_cell(e, replicates, "pooled_auroc") if _scored(e) else "",
                lambda m: mean_cell(m.get("pooled") or {}, replicates),
            )
        )
    columns.append(
        ("PR AUC [95% CI]", lambda label, e: auroc_cell(e, replicates, "pr_auc") if _scored(e) else "", blank)
    )
    for n in names:
        columns.append(
            (
                f"{n} ({where}): sens / spec [95% CI]",
                lambda label, e, n=n: _op_cell((e.get("operating_points") or {}).get(n)) if _scored(e) else "",
                blank,
            )
        )
    columns.append(("ECE", lambda label, e: fmt(e.get("ece")) if _scored(e) else "", blank))
    for c in metrics.get("compare") or []:
        columns.append(
            (
                f"{c['name']} AUROC",
                lambda label, e, c=c: fmt(c["auroc"].get(label), missing=""),
                lambda m, c=c: _published_mean(c),
            )
        )
    return columns


def main_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    columns = main_columns(metrics)
    rows = [[cell(label, e) for _, cell, _ in columns] for label, e in metrics["labels"].items()]
    rows.append([mean(metrics["mean"]) for _, _, mean in columns])
    return [header for header, _, _ in columns], rows


def shortcut_table(metrics: dict) -> tuple[list[str], list[list[str]]] | None:
    sc = metrics.get("shortcuts")
    if not sc:
        return None
    names = list(sc["predictors"])
    columns = ["label", "patients + / - (images)", "model AUROC [95% CI]", *[f"{n} only" for n in names]]
    rows = []
    replicates = replicates_of(metrics)
    for label, e in metrics["labels"].items():
        cells = [label, patients_cell(e), auroc_cell(e, replicates)]
        for n in names:
            s = sc["predictors"][n].get(label)  # none for a label the model or data lacks
            if not s or s["auroc"] is None:
                cells.append("-")
            elif e.get("not_estimable"):  # the reason is in the model's cell
                cells.append(f"point {fmt(s['auroc'])}")
            else:
                cells.append(auroc_cell({**e, **s, "auroc_interval": None}, replicates))  # a bootstrap interval
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


def mean_notes(metrics: dict) -> list[str]:
    """What the mean is over, and which labels it leaves out and why (printed under the table)."""
    mean = metrics["mean"]
    lines = []
    if mean.get("left_out"):
        lines.append(
            f"The mean is over {len(mean.get('labels') or [])} label(s); left out: "
            + "; ".join(f"{l} ({why})" for l, why in mean["left_out"].items())
            + f". An AUROC needs {MIN_POSITIVE_PATIENTS} or more patients of each class to be estimated "
            "(docs/evaluate.md)."
        )
    if mean.get("source_confounded"):
        lines.append(
            f"The mean includes {len(mean['source_confounded'])} label(s) that the source alone predicts "
            f"(confounded by source): {', '.join(mean['source_confounded'])}; the mean over the other "
            f"{len(mean['labels_without_source_confounded'])} is {fmt(mean['estimate_without_source_confounded'])}."
        )
    if metrics.get("cv"):
        k = len(metrics["cv"]["folds"])
        lines.append(
            f"AUROC is the mean of the {k} per-fold AUROCs (each fold's model ranks only its own fold), with a "
            f"95% t-interval over folds (mean +- t({k - 1}) * SD / sqrt({k})); the folds share training patients, "
            "so the interval is approximate. The pooled out-of-fold AUROC ranks every image in one list and so "
            f"pools {k} differently calibrated models: a score offset between folds lowers it although no model "
            "ranks worse. PR AUC, ECE and the shortcut baselines are pooled."
        )
    return lines


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
    parts += [f"- {line}" for line in mean_notes(metrics)]
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
        parts.append(
            "- The published `mean` is taken over the labels in our mean (those with an estimable AUROC), as ours is.\n"
        )
    if (table := shortcut_table(metrics)) is not None:
        sc = metrics["shortcuts"]
        parts.append(f"\n## Shortcut baselines (metadata only, fitted on {sc['fitted_on']})\n")
        parts.append(_markdown(*table))
        parts += [f"- warning: {w}" for w in sc["warnings"]]
    if (table := within_source_table(metrics)) is not None:
        parts.append("\n## Within one source (labels the source alone predicts)\n")
        parts.append(_markdown(*table))
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
    atomic_write_text(out / "per_label.csv", csv_text(per_label_frame(metrics), index=False))
    atomic_write_text(out / "per_label.md", markdown_report(metrics))
    if metrics.get("shortcuts"):
        atomic_write_text(
            out / "shortcuts.csv", csv_text(shortcuts_table(metrics["shortcuts"], metrics["labels"]), index=False)
        )
    if (ext := external_frame(metrics)) is not None:
        atomic_write_text(out / "external.csv", csv_text(ext, index=False))
    if (folds := folds_frame(metrics)) is not None:
        atomic_write_text(out / "folds.csv", csv_text(folds, index=False))


def print_tables(metrics: dict) -> None:
    """The rich tables on stdout (shown in quiet mode too: they are the result)."""
    print_table(f"{metrics['what']} ({metrics['images']} images, {metrics['patients']} patients)", *main_table(metrics))
    for line in mean_notes(metrics):
        result(line)
    if (table := shortcut_table(metrics)) is not None:
        print_table(f"Shortcut baselines: metadata only, fitted on {metrics['shortcuts']['fitted_on']}", *table)
    if (table := within_source_table(metrics)) is not None:
        print_table("Within one source: labels the source alone predicts", *table)
    if metrics.get("external"):
        print_table(f"Internal vs external ({metrics['external']['data']})", *external_table(metrics))
    if metrics.get("cv"):
        frame = folds_frame(metrics)
        print_table(
            "Cross-validation: AUROC per fold",
            list(frame.columns),
            [[fmt(v) if isinstance(v, float) else str(v) for v in r] for r in frame.itertuples(index=False)],
        )
