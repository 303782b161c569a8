"""The Cohen/Dao COVID-19 image data collection (ieee8023/covid-chestxray-dataset layout).

`metadata.csv` has one row per image: patientid, finding, view, modality, folder, filename, sex,
age. Kept: X-rays in frontal views (PA, AP, AP Supine by default). COVID-19 is read from both
vocabularies the collection has used: flat (`COVID-19`, `COVID-19, ARDS`) and hierarchical
(`Pneumonia/Viral/COVID-19`): 1 when a part of the finding is COVID-19, 0 when the finding is
another diagnosis (or `No Finding`), and unknown (NaN) when it says nothing about COVID-19:
`todo` (not yet labelled upstream), `Unknown`, blank, or a part `Unknown` without COVID-19
(`Pneumonia/Viral/Unknown`). Such rows are kept, labels unknown, so that they still join the
patient split and the near-duplicate search. `Pneumonia` can be asked for too (any infectious
finding; `No Finding` is 0, anything else not annotated). The finding itself is kept in the
index (`finding`): `prepare combine` maps it to NIH findings and `embed` classes images by it.
Files are decoded by content (some `.jpg` files hold PNG data). A row whose file is absent is
listed as skipped, with the reason MISSING_images.txt gives when it lists the file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import parse_list, require
from ...errors import CxrError
from ..imageio import file_problem
from ..labels import COVID_LABEL, NO_FINDING, UNKNOWN_CLASS, canonical, count_summary, examples
from .base import PrepareOptions, SourceTable, unique_ids
from .registry import Source, SourceOption, register_source

DEFAULT_VIEWS = ["PA", "AP", "AP Supine"]
SUPPORTED = [COVID_LABEL, "Pneumonia"]
# Findings of the flat vocabulary that are pneumonias (the hierarchical one says "Pneumonia/...").
PNEUMONIAS = {
    "covid-19",
    "sars",
    "mers",
    "mers-cov",
    "pneumonia",
    "viral",
    "bacterial",
    "fungal",
    "lipoid",
    "pneumocystis",
    "streptococcus",
    "klebsiella",
    "mycoplasma bacterial pneumonia",
    "mycoplasma",
    "legionella",
    "varicella",
    "e.coli",
    "chlamydophila",
    "influenza",
    "herpes",
    "aspergillosis",
    "nocardia",
    "staphylococcus",
    "h1n1",
    "aspiration",
}
COLUMNS = ("patientid", "finding", "view", "modality", "filename")
# Every finding name the collection has used; a name close to one of these but not one of them
# is taken as a typo (its row's labels are then unknown, not negative). A new, unrelated name is
# another finding, as the collection intends.
KNOWN_FINDINGS = PNEUMONIAS | {"covid-19", "no finding", "ards", "tuberculosis", "unknown", "todo"}


def suspect_tokens(finding: str) -> list[str]:
    """Tokens of a finding cell that look like misspelt known findings ('COVD-19', 'Pnuemonia')."""
    return [
        t
        for t in finding_tokens(finding)
        if t not in KNOWN_FINDINGS
        and canonical(t) != COVID_LABEL
        and difflib.get_close_matches(t, sorted(KNOWN_FINDINGS), n=1, cutoff=0.8)
    ]


@dataclass(kw_only=True)
class PrepareCovidConfig(PrepareOptions):
    root: Path
    out: Path = Path("data/covid")
    views: list[str] | None = None  # None: PA, AP, AP Supine
    findings: list[str] | None = None  # None: COVID-19 only

    def __post_init__(self) -> None:
        super().__post_init__()
        self.root = Path(self.root)
        require(self.root.is_dir(), f"{self.root}: no such folder (ROOT of the covid-chestxray-dataset)")
        self.views = parse_list(self.views, "--views") if self.views is not None else list(DEFAULT_VIEWS)
        if self.findings is not None:
            self.findings = [canonical(f) for f in parse_list(self.findings, "--findings")]
            unknown = [f for f in self.findings if f not in SUPPORTED]
            require(
                not unknown,
                f"--findings: {', '.join(unknown)} cannot be read from this collection; choose from {', '.join(SUPPORTED)}",
            )


def finding_tokens(finding: str) -> list[str]:
    """'COVID-19, ARDS' and 'Pneumonia/Viral/COVID-19' -> their parts, lower-case."""
    return [t.strip().lower() for part in str(finding).split(",") for t in part.split("/") if t.strip()]


# Parts of a finding that say nothing about the diagnosis.
UNINFORMATIVE = {"todo", "unknown"}


def says_nothing(finding: str) -> bool:
    """Whether a finding cell names no diagnosis at all: blank, `todo`, `Unknown`."""
    return all(t in UNINFORMATIVE for t in finding_tokens(finding))


def finding_class(finding: str) -> str:
    """The class an image of this finding belongs to when none of a cache's labels is positive:
    'SARS', 'Streptococcus', 'COVID-19, ARDS', the last part of a hierarchical finding
    ('Pneumonia/Bacterial/Klebsiella' -> 'Klebsiella'), 'No Finding' only when it says so, and
    'unknown' when it says nothing (todo, Unknown, blank)."""
    if says_nothing(finding):
        return UNKNOWN_CLASS
    if str(finding).strip().lower() == NO_FINDING.lower():
        return NO_FINDING
    named = [
        [t.strip() for t in p.split("/") if t.strip() and t.strip().lower() not in UNINFORMATIVE]
        for p in str(finding).split(",")
    ]
    return ", ".join(canonical(p[-1]) for p in named if p)


def label_value(finding: str, label: str) -> float:
    tokens = finding_tokens(finding)
    if label == COVID_LABEL:
        if any(canonical(t) == COVID_LABEL for t in tokens):
            return 1.0
        # 'todo', 'Unknown', blank, 'Pneumonia/Viral/Unknown': the cause is not said, so COVID-19 is not 0.
        return np.nan if not tokens or any(t in UNINFORMATIVE for t in tokens) else 0.0
    if label == "Pneumonia":
        if any(t in PNEUMONIAS or canonical(t) == COVID_LABEL for t in tokens):
            return 1.0
        return 0.0 if str(finding).strip().lower() == NO_FINDING.lower() else np.nan
    raise ValueError(label)


def missing_list(root: Path) -> dict[str, str]:
    """MISSING_images.txt (status<TAB>path), when the copy has one."""
    path = root / "MISSING_images.txt"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and not line.startswith("#"):
            out.setdefault(parts[1].strip(), parts[0].strip())
    return out


def read_covid(cfg: PrepareCovidConfig) -> SourceTable:
    root = cfg.root
    meta_path = root / "metadata.csv"
    if not meta_path.is_file():
        raise CxrError(f"{root}: no metadata.csv; is this the covid-chestxray-dataset folder?")
    try:
        meta = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CxrError(f"{meta_path}: cannot read ({str(exc).splitlines()[0]})") from None
    if meta.empty:
        raise CxrError(f"{meta_path}: has a header but no rows; is it the complete file?")
    for col in COLUMNS:
        if col not in meta.columns:
            raise CxrError(f"{meta_path}: no column {col!r}")
    labels = cfg.findings or [COVID_LABEL]
    views = {v.strip().lower() for v in cfg.views}
    xray = meta["modality"].str.strip().str.lower() == "x-ray"
    frontal = meta["view"].str.strip().str.lower().isin(views)
    finding = meta["finding"].str.strip()
    unlabelled = finding.map(says_nothing)
    keep = xray & frontal
    notes = [
        f"{meta_path}: {len(meta)} rows; kept {int(keep.sum())} X-rays in views {', '.join(cfg.views)} "
        f"({int((~xray).sum())} other modalities, {int((xray & ~frontal).sum())} other or blank views left out); "
        f"{int((keep & unlabelled).sum())} of them name no finding yet (todo, Unknown or blank): labels unknown"
    ]
    meta = meta[keep].reset_index(drop=True)
    folder = (
        meta["folder"].str.strip().replace("", "images")
        if "folder" in meta.columns
        else pd.Series("images", index=meta.index)
    )
    source_path = folder + "/" + meta["filename"].str.strip()
    paths = source_path.map(lambda p: root / p)
    problems = paths.map(file_problem)  # a FIFO or device is named for what it is, never opened
    present = problems.isna()
    listed = missing_list(root)
    ids = unique_ids(meta["filename"].str.strip(), meta["patientid"].str.strip())
    skipped = pd.DataFrame(
        {
            "source_path": source_path[~present],
            "id": ids[~present],
            "patient": meta["patientid"][~present].str.strip(),
            "reason": [
                f"file not found ({listed[p]} in MISSING_images.txt)"
                if p in listed and why == "file not found"
                else why
                for p, why in zip(source_path[~present], problems[~present])
            ],
        }
    )
    rows = pd.DataFrame(
        {
            "id": ids,
            "patient": meta["patientid"].str.strip(),
            "view": meta["view"].str.strip(),
            "path": paths.map(str),
            "source_path": source_path,
        }
    )
    rows["finding"] = finding.loc[keep].reset_index(drop=True)  # kept so `prepare combine` can map it to NIH findings
    if "sex" in meta.columns:
        rows["sex"] = meta["sex"].str.strip()
    if "age" in meta.columns:
        rows["age"] = pd.to_numeric(meta["age"], errors="coerce")
    kept_findings = finding.loc[keep].reset_index(drop=True)
    suspects = kept_findings.map(suspect_tokens)
    unsure = suspects.map(bool).to_numpy()
    for label in labels:
        values = kept_findings.map(lambda f, l=label: label_value(f, l)).to_numpy(dtype=float)
        rows[label] = np.where(unsure & (values != 1), np.nan, values)
    warnings = []
    if unsure.any():
        counts: dict[str, int] = {}
        for tokens in suspects[unsure]:
            for t in tokens:
                counts[t] = counts.get(t, 0) + 1
        warnings.append(
            f"{meta_path}: {int(unsure.sum())} row(s) name findings that look misspelt ({count_summary(counts)}; "
            f"images {examples(source_path[unsure].tolist())}); their labels are kept as unknown, not negative"
        )
    rows = rows[present.to_numpy()].reset_index(drop=True)
    return SourceTable(
        name="covid", rows=rows, labels=labels, skipped=skipped.reset_index(drop=True), notes=notes, warnings=warnings
    )


register_source(
    Source(
        name="covid",
        help="Cohen/Dao COVID-19 collection -> cache (frontal X-rays, split by patient, duplicates grouped).",
        config=PrepareCovidConfig,
        read=read_covid,
        options=(
            SourceOption("root", Path, "The covid-chestxray-dataset folder (metadata.csv, images/).", argument=True),
            SourceOption("views", str | None, "Views to keep (default: PA,AP,AP Supine).", ("--views",)),
            SourceOption(
                "findings", str | None, "Labels: COVID-19 and/or Pneumonia (default: COVID-19).", ("--findings",)
            ),
        ),
        examples=("cxrtool prepare covid ~/data/covid-chestxray-dataset --out data/covid",),
        rank=20,
    )
)
