"""Numbers as the tables and summaries print them: fixed decimals, and a word for a missing value.

Every stage prints AUROCs, rates and intervals; `fmt` and `fmt_ci` are the one way to write them,
so that "0.873 [0.851, 0.894]" reads the same in evaluate's tables, compare's findings, the CV
summary, embed's scores and the demo. A value that is absent (None) or not a number (NaN,
infinity) prints as `missing`, which each table chooses ("-", "n/a", "" or a phrase).

For values of any size (losses, throughput, distances, learning rates) `fmt_sig` keeps
significant digits rather than decimals, and `fmt_sci` writes a learning rate as people write it
("1e-4", not "0.000"); `fmt_count` puts thousands separators in counts.
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


def fmt_sci(value: Any, digits: int = 2, missing: str = "-") -> str:
    """Scientific notation with at most `digits` significant digits: 0.0001 -> '1e-4', 0.00025 -> '2.5e-4'."""
    number = number_or_none(value)
    if number is None:
        return missing
    if number == 0:
        return "0"
    mantissa, exponent = f"{number:.{max(digits, 1) - 1}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def fmt_sig(value: Any, digits: int = 3, missing: str = "-") -> str:
    """`digits` significant digits: 0.123456 -> '0.123', 12.345 -> '12.3', 12345.6 -> '12,346',
    0.0001234 -> '1.23e-4' (scientific below 0.001, where decimals would hide the value)."""
    number = number_or_none(value)
    if number is None:
        return missing
    if number == 0:
        return "0"
    size = abs(number)
    if size < 1e-3:
        return fmt_sci(number, digits)
    if size >= 10 ** (digits - 1):
        return f"{number:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(size))
    text = f"{number:.{decimals}f}"
    # Rounding can carry a digit over (9.996 -> '10.00'): keep `digits` significant digits.
    if len(text.replace("-", "").replace(".", "").lstrip("0")) > digits and "." in text:
        text = text[:-1].rstrip(".")
    return text


def fmt_count(value: Any, missing: str = "-") -> str:
    """A whole number with thousands separators ('1,234'); `missing` when absent."""
    number = number_or_none(value)
    return missing if number is None else f"{round(number):,}"
