"""Label vocabularies and the conventions for multi-label targets.

NIH ChestX-ray14 order is the canonical order of the 14 findings; "No Finding" is all zeros.
COVID-19 is one more label. A label a source does not annotate is NaN in index.csv, and losses
and metrics skip it. A label file is never trusted to be clean: a finding name that is not a
known label (a typo) makes the row's other labels unknown rather than negative, and an image
listed twice with different labels is reported (`conflicting_rows`, `count_summary`).
Other spellings of a label are accepted wherever a label is named (`canonical`): our own
vocabulary's variants here, and each source's publisher names from the source registry
(`sources.registry`, e.g. the "Pleural Effusion" of CheXpert-style CSVs).
"""

from __future__ import annotations

import pandas as pd

from ..errors import CxrError, did_you_mean
from ..runs import RunNeed
from .sources.registry import label_aliases

NIH_LABELS: list[str] = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
COVID_LABEL = "COVID-19"
NO_FINDING = "No Finding"
UNKNOWN_CLASS = "unknown"  # an image whose findings nobody has said (every label NaN, a Cohen `todo`)

# Variants of our own labels' names (lower case); a source's publisher names are registered
# with the source (sources/registry.py).
SPELLINGS = {
    "pleural thickening": "Pleural_Thickening",
    "pleural_thickening": "Pleural_Thickening",
    "covid": COVID_LABEL,
    "covid19": COVID_LABEL,
    "covid-19": COVID_LABEL,
    "sars-cov-2": COVID_LABEL,
}


def canonical(name: str) -> str:
    """The canonical spelling of a label name (NIH names, COVID-19), else the name stripped."""
    stripped = name.strip()
    for known in [*NIH_LABELS, COVID_LABEL]:
        if stripped.lower() == known.lower():
            return known
    lower = stripped.lower()
    return SPELLINGS.get(lower) or label_aliases().get(lower, stripped)


def resolve_class(name: str, labels: list[str]) -> int:
    """Index of a class given by name (case-insensitive, aliases allowed); error lists the choices."""
    wanted = canonical(name)
    for i, label in enumerate(labels):
        if label == wanted or label.lower() == name.strip().lower():
            return i
    raise CxrError(f"unknown class {name!r}; the model's classes are: {', '.join(labels)}.{did_you_mean(name, labels)}")


def _knows(name: str, labels: list[str]) -> bool:
    try:
        resolve_class(name, labels)
    except CxrError:
        return False
    return True


def needs_classes(names: list[str]) -> RunNeed:
    """A run whose model outputs every class in `names` (aliases allowed)."""
    what = ("the class " if len(names) == 1 else "the classes ") + ", ".join(names)

    def hint(labels: list[str]) -> str:
        return "".join(did_you_mean(n, labels) for n in names if not _knows(n, labels))

    return RunNeed(what, lambda labels: all(_knows(n, labels) for n in names), hint)


def needs_any_class(names: list[str], what: str) -> RunNeed:
    """A run whose model outputs at least one class in `names`; `what` names them in messages."""
    return RunNeed(what, lambda labels: any(_knows(n, labels) for n in names))


def conflicting_rows(keys: pd.Series, values: pd.DataFrame | pd.Series) -> pd.Series:
    """True for the rows whose key is listed again with other values (a blank counts as a value)."""
    frame = values.to_frame() if isinstance(values, pd.Series) else values
    signature = pd.Series([repr(row) for row in frame.itertuples(index=False, name=None)], index=keys.index)
    per_key = signature.groupby(keys.to_numpy()).nunique()
    return keys.isin(per_key.index[per_key > 1])


def count_summary(counts: dict[str, int], limit: int = 6) -> str:
    """ "'Efusion' x3, 'Nodle' x1" (most frequent first; the rest counted)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{name!r} x{n}" for name, n in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def examples(names: list[str], limit: int = 5) -> str:
    """'a.png, b.png, c.png and 7 more'."""
    text = ", ".join(str(n) for n in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")
