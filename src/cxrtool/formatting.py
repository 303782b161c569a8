"""Numbers as the tables and summaries print them: fixed decimals, and a word for a missing value.

Every stage prints AUROCs, rates and intervals; `fmt` and `fmt_ci` are the one way to write them,
so that "0.873 [0.851, 0.894]" reads the same in evaluate's tables, compare's findings, the CV
summary, embed's scores and the demo. A value that is absent (None) or not a number (NaN,
infinity) prints as `missing`, which each table chooses ("-", "n/a", "" or a phrase).
"""

from __future__ import annotations

import math
from typing import Any


def number_or_none(value: Any) -> float | None:
    """The value as a float, or None when it is None, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt(value: Any, digits: int = 3, missing: str = "-") -> str:
    """`value` with `digits` decimals; `missing` when it is None, NaN or infinite."""
    number = number_or_none(value)
    return missing if number is None else f"{number:.{digits}f}"


def fmt_ci(estimate: Any, low: Any = None, high: Any = None, digits: int = 3, missing: str = "-") -> str:
    """'est [low, high]', or 'est' when either end is missing, or `missing` when the estimate is."""
    if number_or_none(estimate) is None:
        return missing
    text = fmt(estimate, digits)
    if number_or_none(low) is not None and number_or_none(high) is not None:
        text += f" [{fmt(low, digits)}, {fmt(high, digits)}]"
    return text
