"""Published per-label ROC AUCs on ChestX-ray14, for `evaluate --compare chexnet`.

Each entry says where it was measured: numbers from different test sets are not directly
comparable (CheXNet's test images were never released, and NIH's official test list came later),
so the table shows them beside ours as context, not as a head-to-head result.

- CheXNet (Rajpurkar et al. 2017, arXiv:1711.05225, the 14-pathology table): DenseNet-121 on
  CheXNet's own patient-wise random split of ChestX-ray14.
- Wang et al. 2017 (ChestX-ray8, CVPR), as quoted in the same CheXNet table.

The report this toolkit follows (Panagiotakopoulos et al., KTH) has its own Table 1; its exact
per-label numbers are not reproduced here because they could not be checked against the report,
and a wrong published number is worse than none. Add them to PUBLISHED when at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.labels import NIH_LABELS
from ..errors import CxrError, did_you_mean


@dataclass(frozen=True)
class PublishedResult:
    key: str
    name: str
    citation: str
    measured_on: str
    auroc: dict[str, float]

    @property
    def mean(self) -> float:
        return sum(self.auroc.values()) / len(self.auroc)


CHEXNET_2017 = PublishedResult(
    key="chexnet",
    name="CheXNet 2017",
    citation="Rajpurkar et al. 2017, arXiv:1711.05225",
    measured_on="ChestX-ray14, CheXNet's own patient-wise random test split (images not released)",
    auroc=dict(
        zip(
            NIH_LABELS,  # both papers' tables list the 14 findings in NIH order
            [
                0.8094,
                0.9248,
                0.8638,
                0.7345,
                0.8676,
                0.7802,
                0.7680,
                0.8887,
                0.7901,
                0.8878,
                0.9371,
                0.8047,
                0.8062,
                0.9164,
            ],
        )
    ),
)

WANG_2017 = PublishedResult(
    key="wang",
    name="Wang et al. 2017",
    citation="Wang et al. 2017, ChestX-ray8 (CVPR), as quoted by CheXNet",
    measured_on="ChestX-ray14, Wang et al.'s patient-wise test split",
    auroc=dict(
        zip(
            NIH_LABELS,
            [0.716, 0.807, 0.784, 0.609, 0.706, 0.671, 0.633, 0.806, 0.708, 0.835, 0.815, 0.769, 0.708, 0.767],
        )
    ),
)

# `--compare NAME` -> the published columns it adds (CheXNet's table brings both of its rows).
PUBLISHED: dict[str, list[PublishedResult]] = {
    "chexnet": [CHEXNET_2017, WANG_2017],
    "wang": [WANG_2017],
}


def published_results(name: str) -> list[PublishedResult]:
    """The published results for `--compare NAME`; an unknown name is a one-line error."""
    key = name.strip().lower()
    if key not in PUBLISHED:
        raise CxrError(
            f"--compare: unknown published result {name!r}; choose one of {', '.join(PUBLISHED)}.{did_you_mean(key, list(PUBLISHED))}"
        )
    return PUBLISHED[key]


def label_key(label: str) -> str:
    """Match 'Pleural Thickening', 'pleural_thickening' and 'Pleural_Thickening' alike."""
    return label.replace(" ", "_").lower()


def published_auroc(result: PublishedResult, label: str) -> float | None:
    """The published AUROC of `label`, or None when the paper did not report it."""
    wanted = label_key(label)
    for name, value in result.auroc.items():
        if label_key(name) == wanted:
            return value
    return None
