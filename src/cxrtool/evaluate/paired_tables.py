"""`compare`'s table of every arm against the reference, and how to read it.

One row per arm (in the order given): its test set, its AUROC with the bootstrap interval, the
paired difference from the reference with its interval and p-values (bootstrap / DeLong), the
difference in the mean over labels where the arms share more than one, the k-fold difference
between cross-validated twins, and the spread over seeds. The numbers come from
evaluate/pairing.py's differences table and compare's arms table; nothing is computed here.
"""

from __future__ import annotations

import math

import pandas as pd

from ..formatting import fmt, fmt_ci
from .pairing import MEAN, headline

PAIRED_NOTES = """\
How to read it: Δ is the arm's AUROC minus the reference's on the same test patients (paired image
by image). Its 95% interval is a patient bootstrap that draws the same patients for both arms
(replicates in which a label had one class are skipped and counted); p is two-sided, from that
bootstrap and from DeLong's test for correlated ROC curves (clustered by patient). The k-fold Δ
is the mean over folds of the per-fold difference between cross-validated twins on the same
folds, with a t-interval over the folds. A label with fewer than 5 positive (or negative) patients
is not estimable. The seeds column is the spread of the test AUROC over runs that differ only in
their seed (`finetune --seeds N`): training randomness, which the bootstrap interval (sampling of
patients, for one trained model) does not include. Test sets are named by a short id (a hash of
the cache's data hash and the image ids)."""


def _difference_cell(d: dict, p_field: str = "p") -> str:
    if not d:
        return ""
    if d.get("status") != "ok":
        return str(d.get("status"))
    cell = fmt_ci(d.get("diff"), d.get("low"), d.get("high"), missing="n/a")
    if d.get("skipped_replicates"):
        cell += f" ({int(d['skipped_replicates'])} of {int(d['replicates'])} replicates skipped)"
    return cell


def fmt_p(p) -> str:
    """A p-value to three decimals, '<0.001' below that."""
    return "" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _p_cell(d: dict) -> str:
    if not d or d.get("status") != "ok" or d.get("p") is None:
        return ""
    return f"{fmt_p(d['p'])} / {fmt_p(d['delong_p'])}" if d.get("delong_p") is not None else fmt_p(d["p"])


def against_markdown(arms: pd.DataFrame, diffs: pd.DataFrame, reference: str, label: str) -> str:
    """The table of every arm against the reference: paired differences and the seeds' spread."""
    means = diffs[(diffs["label"] == MEAN) & (diffs["labels"].fillna(1) > 1)]
    show_mean = len(means) > 0
    head = [
        "arm",
        "test set",
        f"{label} AUROC [95% CI]",
        f"Δ {label} vs {reference} [95% CI]",
        "p (bootstrap / DeLong)",
        *(["Δ mean of labels [95% CI] (p)"] if show_mean else []),
        "k-fold Δ, mean of folds [95% t-CI] (p)",
        "seeds: mean ± SD (min-max)",
    ]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for r in arms.to_dict("records"):
        r = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        if str(r["status"]).startswith("skipped"):
            lines.append(f"| {r['arm']} | {r['status']} |" + " |" * (len(head) - 2))
            continue
        test = fmt_ci(r.get("test_auroc"), r.get("test_low"), r.get("test_high"), missing="") if r.get("run") else ""
        if r["arm"] == reference:
            cells = ["reference", ""]
            mean_cell, cv_cell = "reference", ("reference" if r.get("cv_run") else "")
        else:
            d = headline(diffs, r["arm"], "test split", label)
            cells = [_difference_cell(d), _p_cell(d)]
            m = headline(diffs, r["arm"], "test split", MEAN) if show_mean else {}
            mean_cell = _difference_cell(m) + (f" (p {fmt_p(m['p'])})" if m.get("status") == "ok" else "")
            c = headline(diffs, r["arm"], "k-fold", label)
            cv_cell = _difference_cell(c) + (
                f" (p {fmt_p(c['p'])})" if c.get("status") == "ok" and c.get("p") is not None else ""
            )
        seeds = ""
        if r.get("seeds"):
            seeds = (
                f"{fmt(r['seeds_mean'])} ± {fmt(r['seeds_sd'], missing='n/a')} "
                f"({fmt(r['seeds_min'])}-{fmt(r['seeds_max'])}; {int(r['seeds'])} seeds)"
            )
        sets = r.get("test_set") or ""
        if r.get("cv_test_set"):
            sets = f"{sets} (k-fold: {r['cv_test_set']})" if sets else f"k-fold: {r['cv_test_set']}"
        row = [r["arm"], sets, test, *cells, *([mean_cell] if show_mean else []), cv_cell, seeds]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
