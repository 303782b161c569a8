"""Label vocabularies and the conventions for multi-label targets.

NIH ChestX-ray14 order is the canonical order of the 14 findings; "No Finding" is all zeros.
COVID-19 is one more label. A label a source does not annotate is NaN in index.csv, and losses
and metrics skip it.
"""

from __future__ import annotations

from ..errors import CxrError, did_you_mean

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

# Spellings seen in other collections, mapped to the NIH names.
ALIASES = {
    "pleural thickening": "Pleural_Thickening",
    "pleural_thickening": "Pleural_Thickening",
    "covid": COVID_LABEL,
    "covid19": COVID_LABEL,
    "covid-19": COVID_LABEL,
    "sars-cov-2": COVID_LABEL,
    "effusions": "Effusion",
    "pleural effusion": "Effusion",
}


def canonical(name: str) -> str:
    """The canonical spelling of a label name (NIH names, COVID-19), else the name stripped."""
    stripped = name.strip()
    for known in NIH_LABELS + [COVID_LABEL]:
        if stripped.lower() == known.lower():
            return known
    return ALIASES.get(stripped.lower(), stripped)


def resolve_class(name: str, labels: list[str]) -> int:
    """Index of a class given by name (case-insensitive, aliases allowed); error lists the choices."""
    wanted = canonical(name)
    for i, label in enumerate(labels):
        if label == wanted or label.lower() == name.strip().lower():
            return i
    raise CxrError(
        f"unknown class {name!r}; the model's classes are: {', '.join(labels)}.{did_you_mean(name, labels)}"
    )
