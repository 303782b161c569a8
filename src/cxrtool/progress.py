"""Progress bars and console output: the only module that touches rich.

Every loop over data goes through `track` or `progress_bar`, which show items per second. When
the output is a file or a pipe (not a terminal) nothing is redrawn or wrapped: bars become an
occasional whole line, info lines are never folded, tables keep their natural width. Quiet mode
(`--quiet`, the environment variable CXRTOOL_QUIET=1, or `set_quiet(True)` in tests) silences bars
and informational lines but never errors or warnings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

T = TypeVar("T")

PLAIN_EVERY_S = 30.0  # a long loop's heartbeat line in a log file
PLAIN_SUMMARY_AFTER_S = 5.0  # loops shorter than this leave no line in a log file
_quiet = os.environ.get("CXRTOOL_QUIET", "") not in ("", "0")
_console = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


def printable(text: object) -> str:
    """`text` with any byte of a file name that is not UTF-8 (a lone surrogate) shown as U+FFFD.

    Python reads such names with surrogateescape; printed as they are, they stop the command with
    UnicodeEncodeError on a UTF-8 terminal or log file.
    """
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def console() -> Console:
    """The console for progress and messages (stderr, so stdout stays clean for data)."""
    return _console


class _RateColumn(ProgressColumn):
    """Items per second with the unit, e.g. '312.4 images/s'."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"? {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {self.unit}/s", style="progress.data.speed")


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **kwargs) -> None:
        pass


class _PlainBar:
    """Progress for a log file or pipe: no redraws, whole lines only.

    A loop that runs long prints a line every PLAIN_EVERY_S seconds (so a log shows it is alive)
    and, if it took at least PLAIN_SUMMARY_AFTER_S, one summary line at the end; short loops
    print nothing (the command's own summary line says what happened).
    """

    def __init__(self, total: int | None, description: str, unit: str):
        self.total, self.description, self.unit = total, description, unit
        self.done, self.status = 0, ""
        self.start = self.last = time.perf_counter()
        self.printed = False

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        rate = f"{self.done / elapsed:,.1f} {self.unit}/s" if elapsed > 0 else f"? {self.unit}/s"
        status = f" {self.status}" if self.status else ""
        return f"{self.description}: {count} {self.unit}, {rate}, {elapsed:.0f}s{status}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= PLAIN_EVERY_S:
            self.last, self.printed = now, True
            _console.print(self._line(now), soft_wrap=True, markup=False)

    def update(self, **kwargs) -> None:
        if "status" in kwargs:
            self.status = str(kwargs["status"])
        if "completed" in kwargs:
            self.done = int(kwargs["completed"])
        if "total" in kwargs:
            self.total = kwargs["total"]

    def close(self) -> None:
        now = time.perf_counter()
        if self.printed or now - self.start >= PLAIN_SUMMARY_AFTER_S:
            _console.print(self._line(now), soft_wrap=True, markup=False)


class _Bar:
    def __init__(self, progress: Progress, task_id):
        self._progress = progress
        self._task = task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def update(self, **kwargs) -> None:
        self._progress.update(self._task, **kwargs)


def _make_progress(unit: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=_console,
        transient=False,
    )


@contextmanager
def progress_bar(total: int | None, description: str, unit: str = "images") -> Iterator[_Bar | _NullBar]:
    """A bar advanced by hand: `with progress_bar(n, 'decode') as bar: bar.advance(k)`."""
    if _quiet:
        yield _NullBar()
        return
    if not _console.is_terminal:
        plain = _PlainBar(total, description, unit)
        yield plain
        plain.close()
        return
    with _make_progress(unit) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, status=""))


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "images") -> Iterator[T]:
    """Iterate with a progress bar showing items/s."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, description, unit) as bar:
        for item in items:
            yield item
            bar.advance(1)


def info(message: str) -> None:
    """An informational line; silenced by quiet mode."""
    if not _quiet:
        _console.print(printable(message), soft_wrap=True)


def notice(message: str) -> None:
    """A line that is shown even in quiet mode, on stderr (e.g. which model a prediction used)."""
    _console.print(escape(printable(message)), soft_wrap=True)


def warn(message: str) -> None:
    """A warning line; always shown."""
    _console.print(f"[yellow]warning:[/yellow] {escape(printable(message))}", soft_wrap=True)


def error(message: str) -> None:
    """An error line (one per line of `message`); always shown, never wrapped (scripts grep it)."""
    for line in printable(message).splitlines() or [""]:
        _console.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    # A cell never wraps (an interval "0.62 [0.49, 0.75]" or a number split over two lines is
    # unreadable); the headings, words, may.
    table = Table(title=title)
    for col in columns:
        table.add_column(str(col), no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*["" if v is None else printable(v) for v in row])
    return table


def _fitting_columns(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], width: int) -> int:
    """How many leading columns fit `width` at their natural width (no cell cut or wrapped); 0 if not two."""
    for n in range(len(columns), 1, -1):
        table = _table(title, columns[:n], [row[:n] for row in rows])
        if table.__rich_measure__(_out, _out.options.update_width(10_000)).maximum <= width:
            return n
    return 0


def _print_records(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    # Too narrow for two columns: one block per row, a line per value, so each value stays whole.
    _out.print(title, markup=False)
    for row in rows:
        _out.print("" if row[0] is None else printable(row[0]), soft_wrap=True, markup=False)
        for heading, value in zip(columns[1:], row[1:]):
            _out.print(f"  {heading}: {'' if value is None else printable(value)}", soft_wrap=True, markup=False)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table on stdout (shown in quiet mode too: it is the command's result).

    On a terminal the table fits its width: columns that do not fit are left out from the right
    and named below the table (the command's output files hold the whole table); narrower than two
    columns, each row is printed as a block of `heading: value` lines. No cell breaks across lines.
    In a log file or pipe the table keeps its natural width.
    """
    if not _out.is_terminal:
        table = _table(title, columns, rows)
        width = max(80, table.__rich_measure__(_out, _out.options.update_width(100_000)).maximum)
        Console(file=_out.file, width=width, highlight=False, color_system=None).print(table)
        return
    shown = _fitting_columns(title, columns, rows, _out.width)
    if not shown:
        _print_records(title, columns, rows)
        return
    _out.print(_table(title, columns[:shown], [row[:shown] for row in rows]))
    if shown < len(columns):
        left_out = ", ".join(str(c) for c in columns[shown:])
        _out.print(
            f"(not shown at {_out.width} columns: {left_out}; widen the terminal, or read the output files)",
            markup=False,
        )


def result(message: str) -> None:
    """A line of the command's result on stdout (shown in quiet mode too)."""
    _out.print(printable(message), soft_wrap=True)
