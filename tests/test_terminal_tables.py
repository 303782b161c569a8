"""Tables printed to a terminal fit its width: no interval breaks across lines, no number splits."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from cxrtool import progress

LABELS = ["Atelectasis", "Cardiomegaly", "Pleural_Thickening", "Hernia"]
COLUMNS = ["label", "AUROC [95% CI]", "PR AUC [95% CI]", "positives", "negatives", "CheXNet", "Wang", "skipped"]
ROWS = [[l, "0.619 [0.485, 0.753]", "0.214 [0.101, 0.377]", "12", "1,203", "0.809", "0.716", "0"] for l in LABELS]


def printed(monkeypatch, width: int) -> str:
    buffer = io.StringIO()
    terminal = Console(file=buffer, width=width, force_terminal=True, color_system=None, highlight=False)
    monkeypatch.setattr(progress, "_out", terminal)
    progress.print_table("evaluate: test split", COLUMNS, ROWS)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_an_interval_never_breaks_across_lines(monkeypatch, width):
    text = printed(monkeypatch, width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert text.count("0.619 [0.485, 0.753]") == len(LABELS)  # every interval whole, on one line
    for line in lines:
        assert line.count("[") == line.count("]"), line  # no interval's halves on two lines (headings too)
    if width == 80:
        assert "not shown at 80 columns:" in text and "skipped;" in text.split("not shown")[1]


def test_at_40_columns_no_number_is_split(monkeypatch):
    text = printed(monkeypatch, 40)
    assert all(len(line) <= 40 for line in text.splitlines())
    numbers = set(re.findall(r"\d[\d.,]*\d|\d", " ".join(" ".join(r) for r in ROWS)))
    for token in re.findall(r"\d[\d.,]*\d|\d", text.split("(not shown")[0]):
        assert token.rstrip(",") in numbers or token in {"40", "95"}, token


def test_a_log_file_gets_the_whole_table(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "_out", Console(file=buffer, width=80, highlight=False))  # not a terminal
    progress.print_table("t", COLUMNS, ROWS)
    assert "skipped" in buffer.getvalue() and "not shown" not in buffer.getvalue()
