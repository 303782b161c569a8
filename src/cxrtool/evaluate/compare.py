"""`cxrtool compare`: one results table over several evaluated runs (the report's experiments).

Each *arm* is a training recipe (from scratch, ImageNet only, NIH-pretrained, the 15-class model,
...) given as an evaluated run (`RUN/eval/metrics.json`, written by `cxrtool evaluate`) and,
optionally, its cross-validated twin (`finetune --folds K`, also evaluated). One row per arm holds,
for the label of interest (COVID-19 by default): the test AUROC with its patient-bootstrap 95%
interval, the k-fold mean and spread of the per-fold AUROCs, the pooled out-of-fold AUROC, the
external score when the evaluation had `--external`, the best metadata-only shortcut beside it, and
the mean over the run's other labels (for the 15-class model: the 14 NIH findings). Arms that could
not run are listed with the reason instead of silently missing.

A second table puts a pretraining run's per-finding NIH AUROC beside published numbers (CheXNet,
Wang et al., and any table the user supplies as a CSV, such as the report's own Table 1).

The arms' own numbers are read from the evaluations, so the table can never disagree with them.
What is computed here is each arm against the reference (`--reference`, default the first arm):
the paired difference in AUROC on the same test patients, read image by image from the
evaluations' predictions.csv (evaluate/pairing.py, evaluate/paired.py). Arms scored on different
test sets are refused unless `--allow-different-test-sets`. An arm trained with `finetune --seeds
N` also shows the spread of its AUROC over the seeds. Written to `--out`: table.md, arms.csv,
differences.csv and (with `--pretrain`) findings.csv.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text, read_json
from ..errors import CxrError
from ..formatting import fmt, fmt_ci, number_or_none
from ..locks import require_writable
from ..optionspec import option
from ..progress import info, result
from ..run_locks import holds_locks, own_output
from ..safeio import csv_text
from .metrics import mean_and_sd
from .paired_tables import PAIRED_NOTES, against_markdown
from .pairing import PAIRING_COLUMNS, fill_differences, pair_arms
from .published import PublishedResult, label_key, published_auroc, published_results
from .trust import check_evaluations

ARM_COLUMNS = [
    "arm",
    "status",
    "run",
    "label",
    "test_auroc",
    "test_low",
    "test_high",
    "test_patients",
    "test_positives",
    "test_negatives",
    "cv_run",
    "cv_folds",
    "cv_mean",
    "cv_sd",
    "cv_pooled",
    "cv_pooled_low",
    "cv_pooled_high",
    "external_auroc",
    "external_low",
    "external_high",
    "shortcut",
    "shortcut_auroc",
    "shortcut_low",
    "shortcut_high",
    "other_labels",
    "other_mean",
    *PAIRING_COLUMNS,
]


@dataclass
class CompareConfig:
    arms: list[str] = option(
        default_factory=list,
        help="NAME=RUN: an evaluated run, one row of the table (repeat for each arm).",
        flags=("--arm",),
    )  # "NAME=RUN": an evaluated run per arm
    cv: list[str] = option(
        default_factory=list, help="NAME=RUN: the arm's evaluated cross-validation run (finetune --folds K)."
    )  # "NAME=RUN": the arm's evaluated cross-validation run
    skipped: list[str] = option(
        default_factory=list, help="NAME=REASON: an arm that could not run, listed with its reason."
    )  # "NAME=why": arms that could not run
    label: str = option("COVID-19", help="The label the arms are compared on.")
    pretrain: list[str] = option(
        default_factory=list,
        help="RUN or NAME=RUN: an evaluated pretraining run, its per-finding AUROC beside published ones (repeatable).",
    )  # "RUN" or "NAME=RUN": evaluated NIH pretraining runs
    published: list[str] = option(
        default_factory=list,
        help="chexnet (default), wang, or TITLE=FILE.csv (columns label,auroc), e.g. the report's Table 1.",
    )  # "chexnet", "wang", or "TITLE=FILE.csv" (label,auroc)
    out: Path = option(
        Path("results"), help="Folder for table.md, arms.csv, differences.csv, findings.csv and report.html."
    )
    overwrite: bool = option(False, help="Replace an earlier table in --out.")
    allow_stale: bool = option(
        False, help="Tabulate evaluations of earlier weights than the run's, labelled stale."
    )  # tabulate evaluations of earlier weights (labelled stale)
    allow_seen: bool = option(
        False, help="Tabulate evaluations of images the run had seen, labelled in-sample."
    )  # tabulate in-sample evaluations (evaluate --allow-seen; labelled in-sample)
    reference: str | None = option(
        None, help="The arm every other arm is paired with (default: the first arm given)."
    )  # the arm every other arm is paired with (default: the first)
    allow_different_test_sets: bool = option(
        False,
        help="List arms scored on other test sets (each row names its set) instead of refusing; they are not paired.",
    )  # list such arms unpaired instead of refusing
    bootstrap: int = option(
        1000, help="Replicates of the paired patient bootstrap."
    )  # replicates of the paired patient bootstrap
    seed: int = option(0, help="Seed of the paired bootstrap.")

    def __post_init__(self) -> None:
        # Said first: with no arm, nothing else (such as the state of --out) matters yet.
        if not (self.arms or self.cv or self.skipped):
            raise CxrError("give at least one --arm NAME=RUN (an evaluated run) or --cv NAME=RUN")
        if int(self.bootstrap) < 100:
            raise CxrError(f"--bootstrap: give at least 100 replicates (got {self.bootstrap})")
        self.bootstrap = int(self.bootstrap)


def parse_pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    """'NAME=VALUE' items of a repeatable option, in order; names must be unique."""
    pairs, seen = [], set()
    for item in values:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise CxrError(f"{option}: expected NAME=VALUE, got {item!r}")
        if name in seen:
            raise CxrError(f"{option}: the name {name!r} is given twice")
        seen.add(name)
        pairs.append((name, value))
    return pairs


def read_evaluation(run: Path, option: str) -> dict:
    """The metrics.json of `run`'s evaluation (RUN/eval, or a folder holding metrics.json)."""
    run = Path(run)
    for candidate in (run / "metrics.json", run / "eval" / "metrics.json"):
        if candidate.is_file():
            metrics = read_json(candidate)
            if not isinstance(metrics, dict) or "labels" not in metrics:
                raise CxrError(f"{candidate}: not an evaluation written by cxrtool evaluate ({option})")
            return metrics
    if not run.exists():
        raise CxrError(f"{option}: {run} does not exist")
    raise CxrError(f"{option}: {run} has no evaluation (no eval/metrics.json); run `cxrtool evaluate {run}` first")


@dataclass
class Evaluated:
    """One evaluated run named on the command line: its name, the path as given, its metrics.json."""

    name: str
    run: str
    metrics: dict


@dataclass
class CompareInputs:
    """What `compare` reads, opened once at its door (`resolve_compare`): each evaluation given, read once."""

    arms: list[Evaluated]  # --arm, in the order given
    cv: list[Evaluated]  # --cv, in the order given
    skipped: list[tuple[str, str]]  # --skipped NAME=why
    pretrain: list[Evaluated]  # --pretrain
    flagged: dict[str, str]  # arm -> "stale" / "in-sample" (allowed, and said in its status)

    def cv_of(self, name: str) -> Evaluated | None:
        return next((e for e in self.cv if e.name == name), None)


def resolve_compare(cfg: CompareConfig) -> CompareInputs:
    """Parse the arms, refuse stale or in-sample evaluations (unless allowed), and read every evaluation.

    They are read in the order the table lists them (each arm, then its cross-validated twin;
    then the arms evaluated by cross-validation only; then the pretraining runs).
    """
    arms, cv, pretrain = parse_pairs(cfg.arms, "--arm"), parse_pairs(cfg.cv, "--cv"), pretrain_runs(cfg.pretrain)
    flagged = check_evaluations(
        [(n, r, f"--arm {n}") for n, r in arms]
        + [(n, r, f"--cv {n}") for n, r in cv]
        + [(n, r, f"--pretrain {r}") for n, r in pretrain],
        cfg.allow_stale,
        cfg.allow_seen,
    )
    skipped = parse_pairs(cfg.skipped, "--skipped")
    cv_runs = dict(cv)
    read: dict[str, Evaluated] = {}

    def cv_twin(name: str) -> None:
        read["cv " + name] = Evaluated(name, cv_runs[name], read_evaluation(Path(cv_runs[name]), f"--cv {name}"))

    for name, run in arms:
        read["arm " + name] = Evaluated(name, run, read_evaluation(Path(run), f"--arm {name}"))
        if name in cv_runs:
            cv_twin(name)
    for name in cv_runs:
        if "cv " + name not in read:  # an arm evaluated by cross-validation only
            cv_twin(name)
    return CompareInputs(
        arms=[read["arm " + n] for n, _ in arms],
        cv=[read["cv " + n] for n, _ in cv],
        skipped=skipped,
        pretrain=[Evaluated(n, r, read_evaluation(Path(r), f"--pretrain {r}")) for n, r in pretrain],
        flagged=flagged,
    )


def best_shortcut(metrics: dict, label: str) -> tuple[str | None, dict]:
    """The metadata-only predictor with the highest AUROC on `label`, and its entry."""
    predictors = ((metrics.get("shortcuts") or {}).get("predictors")) or {}
    best_name, best = None, {}
    for name, entries in predictors.items():
        entry = entries.get(label) or {}
        if entry.get("auroc") is not None and (best_name is None or entry["auroc"] > best["auroc"]):
            best_name, best = name, entry
    return best_name, best


def label_fold_spread(metrics: dict, label: str) -> tuple[int | None, float | None, float | None]:
    """Number of folds, mean and sample SD of `label`'s per-fold AUROC in a CV evaluation."""
    folds = ((metrics.get("cv") or {}).get("folds")) or {}
    values = [f["auroc"].get(label) for f in folds.values() if isinstance(f.get("auroc"), dict)]
    mean, sd = mean_and_sd(values)
    return (len(folds) or None), mean, sd


def arm_row(name: str, metrics: dict, label: str, run: str) -> dict:
    """The arm's row from its (single-split) evaluation."""
    if label not in metrics["labels"]:
        raise CxrError(
            f"--arm {name}: the evaluation of {run} has no label {label!r} (it has {', '.join(metrics['labels'])})"
        )
    e = metrics["labels"][label]
    row = {
        "arm": name,
        "status": "ok",
        "run": run,
        "label": label,
        "test_patients": metrics.get("patients"),
        "test_positives": e.get("positives"),
        "test_negatives": e.get("negatives"),
    }
    if e.get("not_computable"):
        row["status"] = f"{label} not computable on the test split: {e['not_computable']}"
    else:
        row.update(
            test_auroc=number_or_none(e.get("auroc")),
            test_low=number_or_none(e.get("auroc_low")),
            test_high=number_or_none(e.get("auroc_high")),
        )
    external = ((metrics.get("external") or {}).get("labels") or {}).get(label) or {}
    row.update(
        external_auroc=number_or_none(external.get("auroc")),
        external_low=number_or_none(external.get("auroc_low")),
        external_high=number_or_none(external.get("auroc_high")),
    )
    shortcut, entry = best_shortcut(metrics, label)
    row.update(
        shortcut=shortcut,
        shortcut_auroc=number_or_none(entry.get("auroc")),
        shortcut_low=number_or_none(entry.get("auroc_low")),
        shortcut_high=number_or_none(entry.get("auroc_high")),
    )
    # Left out of "mean of other labels": labels not estimable, and labels the source alone predicts.
    others = [
        l
        for l, v in metrics["labels"].items()
        if l != label
        and not v.get("not_computable")
        and not v.get("not_estimable")
        and not v.get("source_confounded")
        and v.get("auroc") is not None
    ]
    if others:
        row.update(other_labels=len(others), other_mean=float(np.mean([metrics["labels"][l]["auroc"] for l in others])))
    spread = ((metrics.get("seeds") or {}).get("spread") or {}).get(label) or {}
    if spread.get("n"):
        row.update(
            seeds=spread["n"],
            seeds_mean=spread.get("mean"),
            seeds_sd=spread.get("sd"),
            seeds_min=spread.get("min"),
            seeds_max=spread.get("max"),
        )
    return row


def add_cv(row: dict, metrics: dict, label: str, run: str) -> None:
    """Fill the arm's k-fold columns from its cross-validation evaluation."""
    if label not in metrics["labels"]:
        raise CxrError(f"--cv {row['arm']}: the evaluation of {run} has no label {label!r}")
    if "cv" not in metrics:
        raise CxrError(f"--cv {row['arm']}: {run} is not a cross-validation run (its evaluation has no folds)")
    k, mean, sd = label_fold_spread(metrics, label)
    e = metrics["labels"][label]
    row.update(
        cv_run=run,
        cv_folds=k,
        cv_mean=mean,
        cv_sd=sd,
        cv_pooled=number_or_none(e.get("pooled_auroc", e.get("auroc"))),  # "auroc" is now the mean of folds
        cv_pooled_low=number_or_none(e.get("pooled_auroc_low", e.get("auroc_low"))),
        cv_pooled_high=number_or_none(e.get("pooled_auroc_high", e.get("auroc_high"))),
    )
    if row.get("shortcut") is None:  # a CV-only arm: its cross-fitted shortcut baseline
        shortcut, entry = best_shortcut(metrics, label)
        row.update(
            shortcut=shortcut,
            shortcut_auroc=number_or_none(entry.get("auroc")),
            shortcut_low=number_or_none(entry.get("auroc_low")),
            shortcut_high=number_or_none(entry.get("auroc_high")),
        )


def arms_table(cfg: CompareConfig, inputs: CompareInputs) -> pd.DataFrame:
    """One row per arm, in the order the arms were given (skipped arms included)."""
    names = [e.name for e in inputs.arms]
    rows = []
    for arm in inputs.arms:
        row = arm_row(arm.name, arm.metrics, cfg.label, arm.run)
        twin = inputs.cv_of(arm.name)
        if twin is not None:
            add_cv(row, twin.metrics, cfg.label, twin.run)
        rows.append(row)
    for twin in inputs.cv:
        if twin.name not in names:  # an arm evaluated by cross-validation only
            row = {"arm": twin.name, "status": "ok", "label": cfg.label}
            add_cv(row, twin.metrics, cfg.label, twin.run)
            rows.append(row)
    for name, why in inputs.skipped:
        if name in names or inputs.cv_of(name) is not None:
            raise CxrError(f"--skipped {name}: that arm is also given with --arm/--cv")
        rows.append({"arm": name, "status": f"skipped: {why}", "label": cfg.label})
    if not rows:
        raise CxrError("give at least one --arm NAME=RUN (an evaluated run) or --cv NAME=RUN")
    return pd.DataFrame(rows).reindex(columns=ARM_COLUMNS)


def read_published_csv(title: str, path: Path) -> PublishedResult:
    """A user-supplied published table: a CSV with columns label,auroc."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise CxrError(f"--published {title}: {path} not found") from None
    except IsADirectoryError:
        raise CxrError(f"--published {title}: {path} is a folder; give a CSV file with columns label,auroc") from None
    except OSError as exc:
        raise CxrError(f"--published {title}: {path}: cannot read ({exc.strerror or exc})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CxrError(f"--published {title}: {path} is not a readable CSV ({exc})") from None
    if not {"label", "auroc"} <= set(frame.columns):
        raise CxrError(
            f"--published {title}: {path} needs the columns label,auroc (it has {', '.join(map(str, frame.columns))})"
        )
    values = pd.to_numeric(frame["auroc"], errors="coerce")
    bad = frame.index[values.isna() | (values < 0) | (values > 1)]
    if len(bad):
        raise CxrError(
            f"{path}: row {int(bad[0]) + 2}: auroc must be a number between 0 and 1 (got {frame['auroc'].iloc[bad[0]]!r})"
        )
    return PublishedResult(
        key=title,
        name=title,
        citation=str(path),
        measured_on=f"as given in {path}",
        auroc=dict(zip(frame["label"].astype(str), values.astype(float))),
    )


def published_columns(items: list[str]) -> list[PublishedResult]:
    out: list[PublishedResult] = []
    for item in items:
        if "=" in item:
            ((title, path),) = parse_pairs([item], "--published")
            out.append(read_published_csv(title, Path(path)))
        else:
            out.extend(r for r in published_results(item) if r.name not in {o.name for o in out})
    return out


def pretrain_runs(items: list[str]) -> list[tuple[str, str]]:
    """`--pretrain RUN` or `--pretrain NAME=RUN` (repeatable): named pretraining runs, in order."""
    return parse_pairs([item if "=" in item else f"{Path(item).name}={item}" for item in items], "--pretrain")


def findings_table(
    runs: list[tuple[str, dict]], published: list[PublishedResult], exclude: str | None = None
) -> pd.DataFrame:
    """Per-finding AUROC of each pretraining run (NAME, its metrics), with published numbers beside."""
    order: list[str] = []
    for _, metrics in runs:
        order += [
            l for l in metrics["labels"] if l not in order and not (exclude and label_key(l) == label_key(exclude))
        ]
    rows = []
    for label in order:
        row: dict = {"finding": label}
        for name, metrics in runs:
            e = metrics["labels"].get(label) or {"not_computable": "not a label of this run"}
            row.update(
                {
                    f"{name}_auroc": number_or_none(e.get("auroc")),
                    f"{name}_low": number_or_none(e.get("auroc_low")),
                    f"{name}_high": number_or_none(e.get("auroc_high")),
                    f"{name}_positives": e.get("positives"),
                    f"{name}_not_computable": e.get("not_computable"),
                }
            )
        for entry in published:
            row[entry.name] = published_auroc(entry, label)
        rows.append(row)
    return pd.DataFrame(rows)


def arms_markdown(table: pd.DataFrame, label: str) -> str:
    head = (
        f"| arm | {label} test AUROC [95% CI] | test patients (pos/neg images) | k-fold mean ± SD | "
        f"pooled out-of-fold [95% CI] | external [95% CI] | best metadata shortcut [95% CI] | mean of other labels | "
        "test set |"
    )
    lines = [head, "| " + " | ".join(["---"] * 9) + " |"]
    for r in table.to_dict("records"):
        r = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        if str(r["status"]).startswith("skipped"):
            lines.append(f"| {r['arm']} | {r['status']} |  |  |  |  |  |  |  |")
            continue
        counts = ""
        if r.get("test_patients") is not None:
            counts = f"{int(r['test_patients'])} ({int(r['test_positives'] or 0)}/{int(r['test_negatives'] or 0)})"
        test = fmt_ci(r.get("test_auroc"), r.get("test_low"), r.get("test_high"), missing="n/a") if r.get("run") else ""
        if r["status"] != "ok":
            test = str(r["status"])
        cv = ""
        if r.get("cv_mean") is not None:
            cv = f"{fmt(r['cv_mean'], missing='')} ± {fmt(r['cv_sd'], missing='')} ({int(r['cv_folds'])} folds)"
        pooled = (
            fmt_ci(r.get("cv_pooled"), r.get("cv_pooled_low"), r.get("cv_pooled_high"), missing="n/a")
            if r.get("cv_run")
            else ""
        )
        external = (
            fmt_ci(r.get("external_auroc"), r.get("external_low"), r.get("external_high"), missing="n/a")
            if r.get("external_auroc") is not None
            else ""
        )
        shortcut = ""
        if r.get("shortcut"):
            shortcut = (
                f"{r['shortcut']}: {fmt_ci(r['shortcut_auroc'], r['shortcut_low'], r['shortcut_high'], missing='n/a')}"
            )
        other = (
            f"{fmt(r['other_mean'], missing='')} ({int(r['other_labels'])} labels)"
            if r.get("other_mean") is not None
            else ""
        )
        sets = " / ".join(
            f"{what}{r[key]}" for key, what in (("test_set", ""), ("cv_test_set", "k-fold: ")) if r.get(key)
        )
        lines.append(
            f"| {r['arm']} | {test} | {counts} | {cv} | {pooled} | {external} | {shortcut} | {other} | {sets} |"
        )
    return "\n".join(lines)


def findings_markdown(table: pd.DataFrame, runs: list[str], published: list[PublishedResult]) -> str:
    names = [p.name for p in published]
    lines = [
        "| finding | " + " | ".join(f"{r} [95% CI]" for r in runs) + " | " + " | ".join(names) + " |",
        "| " + " | ".join(["---"] * (1 + len(runs) + len(names))) + " |",
    ]
    for r in table.to_dict("records"):
        cells = []
        for run in runs:
            why = r.get(f"{run}_not_computable")
            why = None if isinstance(why, float) else why
            cells.append(
                f"n/a ({why})" if why else fmt_ci(r[f"{run}_auroc"], r[f"{run}_low"], r[f"{run}_high"], missing="n/a")
            )
        lines.append(
            f"| {r['finding']} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(fmt(r.get(n), missing="") for n in names)
            + " |"
        )
    return "\n".join(lines)


NOTES = """\
How to read it: intervals are 95% patient-bootstrap intervals (every image of a resampled patient
counts); the k-fold columns come from `finetune --folds K` (per-fold AUROC mean and sample SD, and
the AUROC of all out-of-fold predictions pooled). The shortcut column is the best metadata-only
predictor (view, sex, age, source; no pixels) fitted on the training patients: where it reaches the
model's interval, the model is not shown to use more than how and of whom the image was taken. On
the 15-class NIH + COVID-19 set every COVID-19 positive comes from the COVID-19 collection, so
`source` alone predicts much of COVID-19: that arm's COVID-19 AUROC measures telling the collections
apart as well as the disease."""


def add_differences(cfg: CompareConfig, inputs: CompareInputs, arms: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """Pair every arm with the reference; fill the arms' test-set and difference columns."""
    split = [(e.name, e.run, e.metrics) for e in inputs.arms]
    cv = [(e.name, e.run, e.metrics) for e in inputs.cv]
    reference, diffs, split_sets, cv_sets = pair_arms(
        split, cv, cfg.reference, cfg.allow_different_test_sets, cfg.bootstrap, cfg.seed
    )
    fill_differences(arms, diffs, split_sets, cv_sets, reference, cfg.label)
    return reference, diffs


@holds_locks
def compare(cfg: CompareConfig, page: Callable[[Path], Path] | None = None) -> Path:
    """Build the tables and write them under cfg.out; returns the markdown file.

    `page` (the command passes report.compare_page's writer, which this layer may not import)
    writes a page of those tables into cfg.out, while the folder is still this call's (so it is
    recorded as compare's own file, like the tables).
    """
    out = Path(cfg.out)
    require_writable(out, "--out")  # a file, a read-only or full disk: one line before any work
    owned = own_output(out, "comparison", "compare")  # refuses a folder holding a user's file
    if owned.held("compare") and not cfg.overwrite:
        raise CxrError(f"{out}: holds an earlier table; pass --overwrite to replace it or --out DIR")
    # Stale or in-sample evaluations are refused, or (when allowed) their arm's status says so.
    inputs = resolve_compare(cfg)  # everything below reads this, never the evaluations' files
    flagged = inputs.flagged
    arms = arms_table(cfg, inputs)
    arms["status"] = [f"{s}; {flagged[a]}" if a in flagged else s for a, s in zip(arms["arm"], arms["status"])]
    reference, diffs = add_differences(cfg, inputs, arms)
    published = published_columns(cfg.published or ["chexnet"])
    findings = None
    pretrained = [(e.name, e.metrics) for e in inputs.pretrain]
    if pretrained:
        findings = findings_table(pretrained, published, exclude=cfg.label)
    owned.clear("compare")  # the earlier table's files (a findings.csv this call does not write included)
    against = against_markdown(arms, diffs, reference, cfg.label) if reference else ""
    text = [f"# {cfg.label}: the arms side by side", "", arms_markdown(arms, cfg.label), "", NOTES, ""]
    if reference:
        text += [
            f"# {cfg.label}: each arm against {reference}, on the same patients",
            "",
            against,
            "",
            PAIRED_NOTES,
            "",
        ]
    if findings is not None:
        text += [
            "# Pretraining on NIH: per-finding AUROC",
            "",
            findings_markdown(findings, [n for n, _ in pretrained], published),
            "",
        ]
        text += [f"- {p.name}: {p.citation}; measured on {p.measured_on}." for p in published] + [""]
        atomic_write_text(out / "findings.csv", csv_text(findings, index=False))
    atomic_write_text(out / "arms.csv", csv_text(arms, index=False))
    atomic_write_text(out / "differences.csv", csv_text(diffs, index=False))
    atomic_write_text(out / "table.md", "\n".join(text))
    if page is not None:
        page(out)
    result(arms_markdown(arms, cfg.label))
    if reference:
        result("")
        result(against)
    info(
        f"wrote {out / 'table.md'}, {out / 'arms.csv'}, {out / 'differences.csv'}"
        + (f", {out / 'findings.csv'}" if findings is not None else "")
        + (f", {out / 'report.html'}" if page is not None else "")
    )
    return out / "table.md"
