"""What the report shows of one evaluation folder (metrics.json and its files).

`Evaluation` reads a folder that `cxrtool evaluate` wrote. `headline` is the answer in a few lines:
what was scored, the main AUROC with its interval, and the warnings that matter said in words
(metadata alone reaches the model's interval, a label is not estimable, an in-sample score, a
confounded source). `section` holds the detail: a forest plot of every label, the per-label table
(intervals in one cell), the best metadata-only baseline beside the model, and, collapsed, the
operating points, the full baseline table, external and per-fold scores, ROC and reliability.

metrics.json is read defensively: fields added by later versions (patients per class, "not
estimable", in-sample and lineage records, per-fold headlines) are used when present and
their absence is not an error, so a report can be made of an older evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import read_json
from ..errors import CxrError
from ..evaluate.published import CHEXNET_2017, WANG_2017, published_auroc
from ..formatting import fmt, fmt_ci, fmt_count, number_or_none
from .forest import ForestRow
from .markup import esc

MEAN = "mean"


@dataclass
class Evaluation:
    folder: Path
    metrics: dict[str, Any]

    @classmethod
    def read(cls, folder: Path) -> Evaluation | None:
        """The evaluation in `folder`; None when it has no metrics.json, CxrError when that is unreadable."""
        if not (folder / "metrics.json").is_file():
            return None
        metrics = read_json(folder / "metrics.json")  # within safeio's limits; one line otherwise
        if not isinstance(metrics, dict) or not isinstance(metrics.get("labels"), dict):
            raise CxrError(f"{folder / 'metrics.json'}: not an evaluation written by cxrtool evaluate")
        return cls(folder, metrics)

    @property
    def labels(self) -> dict[str, dict]:
        return self.metrics["labels"]

    @property
    def title(self) -> str:
        what = str(self.metrics.get("what") or self.folder.name)
        return what[:1].upper() + what[1:]

    @property
    def anchor(self) -> str:
        return "eval-" + "".join(c if c.isalnum() else "-" for c in self.folder.name)


def _ci(e: dict, key: str = "auroc", digits: int = 3) -> str:
    return fmt_ci(e.get(key), e.get(f"{key}_low"), e.get(f"{key}_high"), digits=digits, missing="-")


def _status(e: dict) -> str | None:
    """Why a label has no interval: 'not computable: ...' or 'not estimable: ...'; None when it has one."""
    if e.get("not_computable"):
        return f"not computable: {e['not_computable']}"
    if e.get("not_estimable"):
        return f"not estimable: {e['not_estimable']}"
    return None


def auroc_cell(e: dict, reason: bool = True) -> str:
    """The AUROC with its interval; a label without one says why (`reason=False`: only the word,
    where a table lists the reasons under it)."""
    why = _status(e)
    if why and not reason:
        why = why.split(":")[0]
    if why and number_or_none(e.get("auroc")) is not None:
        return f"{fmt(e.get('auroc'))} ({why})"
    return why or _ci(e)


def patients_cell(e: dict) -> str:
    """'12 / 40 (130)': positive / negative patients (images) when known, else images per class."""
    if e.get("positive_patients") is not None:
        return (
            f"{fmt_count(e['positive_patients'])} / {fmt_count(e.get('negative_patients'))} ({fmt_count(e.get('n'))})"
        )
    return f"{fmt_count(e.get('positives'))} / {fmt_count(e.get('negatives'))}"


def best_shortcut(metrics: dict, label: str) -> tuple[str | None, dict]:
    """The metadata-only predictor with the highest AUROC on `label`, and its entry."""
    best_name, best = None, {}
    for name, entries in ((metrics.get("shortcuts") or {}).get("predictors") or {}).items():
        entry = (entries or {}).get(label) or {}
        if number_or_none(entry.get("auroc")) is not None and (best_name is None or entry["auroc"] > best["auroc"]):
            best_name, best = name, entry
    return best_name, best


def reaches(model: dict, shortcut: dict) -> bool:
    """Whether a metadata-only AUROC reaches the model's interval (its lower end)."""
    low, auc = number_or_none(model.get("auroc_low")), number_or_none(shortcut.get("auroc"))
    return low is not None and auc is not None and auc >= low


def published_markers(ev: Evaluation) -> dict[str, dict[str, float]]:
    """{published result: {label: AUROC}} for the labels the run has (and can be set against).

    The evaluation's own `--compare` columns when it has them; otherwise CheXNet's and Wang et
    al.'s tables, for the labels they report. Not computable or not estimable labels get none.
    """
    shown = [l for l, e in ev.labels.items() if not _status(e)]
    entries = ev.metrics.get("compare") or []
    out: dict[str, dict[str, float]] = {}
    if entries:
        for c in entries:
            values = {l: v for l, v in (c.get("auroc") or {}).items() if l in shown and number_or_none(v) is not None}
            if values:
                out[str(c.get("name") or c.get("key"))] = values
        return out
    for result in (CHEXNET_2017, WANG_2017):
        values = {l: v for l in shown if (v := published_auroc(result, l)) is not None}
        if values:
            out[result.name] = values
    return out


def over_folds(entry: dict) -> bool:
    """Whether an AUROC is the mean of per-fold AUROCs (a cross-validated run's headline)."""
    return str(entry.get("auroc_interval") or entry.get("interval") or "").startswith("t over folds")


def main_result(ev: Evaluation) -> tuple[str, str]:
    """(what the number is, the number with its interval): one label's AUROC, or the mean's.

    For a cross-validated run evaluate makes the mean of the per-fold AUROCs the headline (with a
    t-interval over folds); an older evaluation of one has only the pooled AUROC and the folds'
    mean and SD, and says which it shows.
    """
    m = ev.metrics
    labels = ev.labels
    cv = m.get("cv") or {}
    if len(labels) == 1:
        label, e = next(iter(labels.items()))
        what = f"{label} AUROC" + (", mean of the folds" if over_folds(e) else ", pooled out-of-fold" if cv else "")
        return what, auroc_cell(e)
    mean = m.get("mean") or {}
    over = mean.get("labels") or [l for l, e in labels.items() if not _status(e)]
    count = f"{len(over)} labels" if len(over) == len(labels) else f"{len(over)} of {len(labels)} labels"
    text = fmt_ci(mean.get("estimate"), mean.get("low"), mean.get("high"), missing="not computable")
    if mean.get("not_computable") and number_or_none(mean.get("estimate")) is None:
        text = f"not computable: {mean['not_computable']}"
    if over_folds(mean):
        return f"Mean AUROC over {count}, mean of the folds", text
    return f"Mean AUROC over {count}" + (", pooled out-of-fold" if cv else ""), text


def facts(ev: Evaluation) -> list[str]:
    """What the number stands on: images and patients, where the interval comes from, what else to know."""
    m = ev.metrics
    out = [f"{fmt_count(m.get('images'))} images of {fmt_count(m.get('patients'))} patients"]
    mean = m.get("mean") or {}
    boot = m.get("bootstrap") or {}
    if over_folds(mean) or (len(ev.labels) == 1 and over_folds(next(iter(ev.labels.values())))):
        out.append(
            f"95% t-intervals over {fmt_count(mean.get('folds') or len(m.get('cv', {}).get('folds') or {}))} folds"
        )
        pooled = mean.get("pooled") or {}
        if len(ev.labels) > 1 and number_or_none(pooled.get("estimate")) is not None:
            out.append(f"pooled out-of-fold {fmt_ci(pooled['estimate'], pooled.get('low'), pooled.get('high'))}")
    elif boot.get("replicates"):
        out.append(
            f"95% intervals from {fmt_count(boot['replicates'])} {boot.get('unit', 'patient')}-bootstrap replicates"
        )
    cv = m.get("cv") or {}
    if not over_folds(mean) and number_or_none(cv.get("fold_mean")) is not None:
        out.append(f"mean of the folds {fmt(cv['fold_mean'])} ± {fmt(cv.get('fold_sd'))} (SD)")
    if number_or_none(mean.get("estimate_without_source_confounded")) is not None:
        flagged = ", ".join(mean.get("source_confounded") or [])
        out.append(f"without {flagged} (confounded by source): {fmt(mean['estimate_without_source_confounded'])}")
    if m.get("checkpoint"):
        out.append(f"checkpoint {m['checkpoint']}")
    return out


def _within_source(ev: Evaluation) -> str:
    """The source-confounded labels' AUROC within one source, where the source explains nothing (HTML list)."""
    items = []
    for label, e in ev.labels.items():
        for name, w in (e.get("within_source") or {}).items():
            items.append(f"{esc(label)} within {esc(name)}'s images: {esc(auroc_cell(w or {}, False))}")
        for name, c in (e.get("source_cache") or {}).items():
            where = f"the {c.get('split', '?')} split of {c.get('data', name)}"
            items.append(f"{esc(label)} on {esc(where)}: {esc(auroc_cell(c or {}, False))}")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def warnings(ev: Evaluation) -> list[str]:
    """The warnings that matter, in words (HTML, escaped), most serious first."""
    m, out = ev.metrics, []
    split = str(m.get("split") or "")
    lineage = m.get("lineage") or {}
    if m.get("in_sample"):
        seen = f"{fmt_count(lineage.get('seen'))} of {fmt_count(lineage.get('images'))}" if lineage else "some"
        out.append(f"<b>In-sample:</b> {esc(seen)} scored images were seen in training or validation: optimistic.")
    elif split == "train":
        out.append("<b>In-sample:</b> scored on the training split, which the network learned from: optimistic.")
    elif split in ("val", "all"):
        out.append(
            f"<b>In-sample:</b> the {esc(split)} split {'is' if split == 'val' else 'holds'} the one that chose the "
            "best epoch and the thresholds: optimistic."
        )
    ops = m.get("operating_points") or {}
    if ops.get("in_sample") and split not in ("val", "all"):
        out.append("<b>In-sample thresholds:</b> " + esc(ops.get("note") or "chosen on the split they are scored on"))
    confounded = (m.get("shortcuts") or {}).get("confounded") or []
    for sentence in confounded:
        out.append(f"<b>Confounded source:</b> {esc(sentence)}.")
    if confounded:
        out[-1] += _within_source(ev)  # the AUROC within one source, once under the last of them
    reached = []
    for label, e in ev.labels.items():
        name, s = best_shortcut(m, label)
        if name and not _status(e) and reaches(e, s):
            reached.append(f"{esc(label)}: {esc(name)} alone {_ci(s)}, the model {_ci(e)}")
    if reached:
        out.append(
            f"<b>Metadata alone reaches the model's interval</b> on {len(reached)} of {len(ev.labels)} "
            f"label{'' if len(ev.labels) == 1 else 's'}: there the model is not shown to use more than how and of whom the image was taken."
            + "<ul>"
            + "".join(f"<li>{r}</li>" for r in reached)
            + "</ul>"
        )
    for kind in ("not_computable", "not_estimable"):
        hit = [f"{esc(l)} ({esc(e[kind])})" for l, e in ev.labels.items() if e.get(kind)]
        if hit:
            word = kind.replace("_", " ")
            out.append(
                f"<b>{word[:1].upper() + word[1:]}:</b> {'; '.join(hit)}: no interval"
                + (", left out of the mean." if len(ev.labels) > 1 else ".")
            )
    ext = m.get("external") or {}
    if ext.get("in_sample"):
        out.append("<b>In-sample external set:</b> some of its images were seen in training.")
    return out


def headline(ev: Evaluation) -> str:
    """The answer block: what was scored, the main AUROC with its interval, the warnings in words."""
    m = ev.metrics
    what, value = main_result(ev)
    ext = m.get("external") or {}
    extra = ""
    if ext.get("mean"):
        em = ext["mean"]
        extra = (
            f"<p>External ({esc(ext.get('data', ''))}): mean AUROC "
            f"{esc(fmt_ci(em.get('estimate'), em.get('low'), em.get('high'), missing='not computable'))}</p>"
        )
    items = warnings(ev)
    warn_html = (
        "<ul class=warn>" + "".join(f"<li>{w}</li>" for w in items) + "</ul>"
        if items
        else "<p class=ok>No warning: no metadata-only baseline reaches the model's interval, every label is estimable.</p>"
        if m.get("shortcuts")
        else "<p class=note>No shortcut baselines in this evaluation (no metadata), so none could warn.</p>"
    )
    return (
        f"<section class=headline id='{esc(ev.anchor)}-headline'><h2>{esc(ev.title)}</h2>"
        f"<p class=answer>{esc(what)}: {esc(value)}</p>"
        f"<p class=sub>{esc('; '.join(facts(ev)))}. <a href='#{esc(ev.anchor)}'>Details</a></p>{extra}{warn_html}</section>"
    )


def forest_rows(ev: Evaluation) -> list[ForestRow]:
    markers = published_markers(ev)
    rows = []
    for label, e in ev.labels.items():
        why = _status(e)
        rows.append(
            ForestRow(
                name=label,
                estimate=number_or_none(e.get("auroc")),
                low=None if why else number_or_none(e.get("auroc_low")),
                high=None if why else number_or_none(e.get("auroc_high")),
                note=("not computable" if e.get("not_computable") else "not estimable") if why else None,
                others={n: v[label] for n, v in markers.items() if label in v},
            )
        )
    mean = ev.metrics.get("mean") or {}
    if len(ev.labels) > 1 and number_or_none(mean.get("estimate")) is not None:
        rows.append(ForestRow(MEAN, mean.get("estimate"), mean.get("low"), mean.get("high"), summary=True))
    return rows
