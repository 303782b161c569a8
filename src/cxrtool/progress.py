"""Progress bars and console output: the only module that touches rich.

Every loop over data goes through `track` or `progress_bar`, which show items per second. Quiet
mode (`--quiet`, the environment variable CXRTOOL_QUIET=1, or `set_quiet(True)` in tests) silences
bars and informational lines but never errors or warnings.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence, TypeVar

from rich.console import Console
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

_quiet = os.environ.get("CXRTOOL_QUIET", "") not in ("", "0")
_console = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


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
        _console.print(message)


def warn(message: str) -> None:
    """A warning line; always shown."""
    _console.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def error(message: str) -> None:
    """An error line; always shown, never wrapped (scripts grep it)."""
    _console.print(f"[red]error:[/red] {message}", soft_wrap=True)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table on stdout (shown in quiet mode too: it is the command's result)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(str(col), overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    _out.print(table)


def result(message: str) -> None:
    """A line of the command's result on stdout (shown in quiet mode too)."""
    _out.print(message, soft_wrap=True)
