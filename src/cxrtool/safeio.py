"""Text formats that meet untrusted hands: JSON read within limits, CSV cells safe in a spreadsheet.

JSON (`loads_json`): every JSON file cxrtool reads (manifests, model cards, metrics, thresholds)
may have been edited or planted; one over MAX_JSON_BYTES or nested deeper than MAX_JSON_DEPTH
is refused with one line before it is parsed (Python's parser recurses: 2,000 levels would be a
RecursionError traceback, and code walking a parsed document recurses too).

CSV (`csv_text`, `restore_cells`): a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return is run as a formula by Excel, LibreOffice and Google Sheets (CSV injection; an image named
`=HYPERLINK(...).png` would become a live link in predictions.csv). Following OWASP's advice, such
a text cell is written with a leading `'`, which spreadsheets show but do not run; a cell that
already starts with `'` gets one more, so `restore_cells` (used where cxrtool reads its own CSVs
back: index.csv, cams.csv, skipped.csv, ...) gives back exactly the original text. Numbers,
including negative ones, and text that reads as a plain number ("-1", "+3.5") are left as they
are: a spreadsheet takes those as numbers, not formulas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import CxrError

MAX_JSON_BYTES = 64 * 1024 * 1024  # the largest manifest or card cxrtool writes is well under 1 MB
MAX_JSON_DEPTH = 64  # cxrtool's own documents nest at most 6 levels

# Cells a spreadsheet would evaluate (OWASP: =, +, -, @, tab, carriage return), and the quote
# that neutralises them (doubled on a cell that starts with one, so the change can be undone).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), in one pass."""
    depth = deepest = 0
    for match in re.finditer(r"[\[\]{}]", _STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(text: str, path: Path | str) -> Any:
    """`json.loads(text)` within MAX_JSON_BYTES and MAX_JSON_DEPTH; CxrError naming `path` otherwise."""
    if len(text) > MAX_JSON_BYTES:
        raise CxrError(f"{path}: {len(text):,} characters, over the {MAX_JSON_BYTES // (1024 * 1024)} MiB JSON limit")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise CxrError(
            f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; not a file cxrtool wrote (damaged or planted)"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CxrError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:  # unreachable within MAX_JSON_DEPTH; kept so no traceback can escape
        raise CxrError(f"{path}: JSON nested too deeply") from None


def read_json_file(path: Path | str) -> Any:
    """A JSON file within the limits: one line for a missing file, a folder, non-UTF-8 or bad JSON."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CxrError(f"{path}: over the {MAX_JSON_BYTES // (1024 * 1024)} MiB JSON limit")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CxrError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CxrError(f"{path}: is a folder, not a JSON file") from None
    except UnicodeDecodeError as exc:
        raise CxrError(f"{path}: not UTF-8 text (byte {exc.start}); not a JSON file cxrtool wrote") from None
    except OSError as exc:
        raise CxrError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return loads_json(text, path)


def _needs_quote(value: str) -> bool:
    """Text a spreadsheet would run as a formula (plain numbers excepted), or one already quoted."""
    return value.startswith(QUOTE) or (value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value))


def safe_cell(value: Any) -> Any:
    """`value` as it may go into a CSV: text a spreadsheet would run gets a leading quote."""
    if isinstance(value, str) and _needs_quote(value):
        return QUOTE + value
    return value


def restore_cell(value: Any) -> Any:
    """The original text of a cell `safe_cell` wrote (one leading quote removed)."""
    if isinstance(value, str) and value.startswith(QUOTE):
        return value[1:]
    return value


def _is_text(series) -> bool:
    return series.dtype == object or str(series.dtype) in ("string", "str")


def _map_some(series, test, change):
    """`series` with `change` applied to the cells that pass `test` (dtype kept when none do)."""
    hit = series.map(lambda v: isinstance(v, str) and test(v)).to_numpy(dtype=bool)
    if not hit.any():
        return series
    out = series.astype(object).copy()
    out[hit] = [change(v) for v in series[hit]]
    return out


def safe_frame(frame):
    """A copy of a pandas DataFrame with every text cell passed through `safe_cell` (headers too)."""
    out = frame.copy()
    for col in out.columns:
        if _is_text(out[col]):
            out[col] = _map_some(out[col], _needs_quote, safe_cell)
    out.columns = [safe_cell(c) for c in out.columns]
    if _is_text(out.index):
        out.index = out.index.map(safe_cell)
    return out


def csv_text(frame, **to_csv: Any) -> str:
    """`frame.to_csv(**to_csv)` with formula-like text cells neutralised (see the module docstring)."""
    return safe_frame(frame).to_csv(**to_csv)


def restore_cells(frame):
    """A CSV read back from `csv_text`: the quotes it added removed from text cells and headers."""
    for col in frame.columns:
        if _is_text(frame[col]):
            frame[col] = _map_some(frame[col], lambda v: v.startswith(QUOTE), restore_cell)
    frame.columns = [restore_cell(c) for c in frame.columns]
    return frame
