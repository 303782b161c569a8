"""Forest plots for the report pages: one row per label (or arm), its estimate and 95% interval.

A row is a `ForestRow`: an estimate with its interval, or an estimate alone that is marked "not
estimable" (an open marker, no bar: the interval would claim knowledge the data do not hold), or
no estimate and a reason ("not computable"). Published numbers (CheXNet, Wang et al., a user's
table) are drawn as extra markers on the rows that have them; they were measured on other test
sets, which the legend says. The figure is drawn in memory and returned as PNG bytes, since the
page inlines it and the run's folder gains no file. Sizes are chosen for the page: shown at its
own pixel size, no text is under about 12 px.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ..formatting import fmt_ci, number_or_none

DPI = 100
FONT = 11  # points at 100 dpi: about 15 px
MARKERS = ["D", "s", "^", "v", "P", "X"]
MARKER_COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


@dataclass
class ForestRow:
    name: str
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    note: str | None = None  # "not estimable", "not computable: ..." (shown in the right column)
    summary: bool = False  # the mean row: a diamond, set apart
    others: dict[str, float] = field(default_factory=dict)  # marker name -> value (published numbers)


NOTE_CHARS = 30  # what the column right of the plot holds on one line at FONT


def _text(row: ForestRow, digits: int) -> str:
    """The numbers (or the note) right of a row: at most two lines, shortened rather than cut off."""
    if row.note and row.estimate is None:
        text = row.note
    else:
        text = fmt_ci(row.estimate, row.low, row.high, digits=digits)
        text = f"{text} ({row.note})" if row.note else text
    return textwrap.fill(textwrap.shorten(text, 2 * NOTE_CHARS - 2, placeholder="…"), NOTE_CHARS)


def forest_png(
    rows: Sequence[ForestRow],
    title: str,
    xlabel: str = "AUROC (95% interval)",
    reference: float | None = 0.5,
    reference_label: str = "chance",
    xlim: tuple[float, float] | None = None,
    marker_note: str = "",
    digits: int = 2,
) -> bytes:
    """The forest plot as PNG bytes; rows top to bottom in the order given."""
    rows = list(rows)
    values = [v for r in rows for v in (r.estimate, r.low, r.high, *r.others.values()) if number_or_none(v) is not None]
    if xlim is None:
        low = min([*values, reference if reference is not None else 1.0, 0.5])
        high = max([*values, 1.0])
        pad = 0.03 * (high - low or 1)
        xlim = (low - pad, high + pad)
    names = sorted({n for r in rows for n in r.others})
    legend_rows = 1 + (len(names) + 2) // 4
    top_in, row_in, bottom_in = 0.45, 0.36, 0.75 + 0.3 * legend_rows
    height = top_in + row_in * len(rows) + bottom_in
    fig, ax = plt.subplots(figsize=(10.5, height), dpi=DPI)
    from matplotlib.lines import Line2D  # lazy: beside pyplot, only when a plot is drawn

    handles = [Line2D([], [], color="#1f4f82", lw=2.2, marker="s", ms=7, label="estimate, 95% interval")]
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        est = number_or_none(r.estimate)
        lo, hi = number_or_none(r.low), number_or_none(r.high)
        if est is not None and lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color="#1f4f82", lw=2.2, solid_capstyle="butt")
        if est is not None:
            if r.summary:
                ax.plot(est, y, marker="D", ms=10, color="black", zorder=3)
            elif lo is None:  # an estimate without an interval: an open marker
                ax.plot(est, y, marker="o", ms=8, mfc="white", mec="#1f4f82", mew=1.8, zorder=3)
            else:
                ax.plot(est, y, marker="s", ms=7, color="#1f4f82", zorder=3)
        for n, value in r.others.items():
            k = names.index(n) % len(MARKERS)
            if (value := number_or_none(value)) is not None:
                ax.plot(value, y, marker=MARKERS[k], ms=7, mfc="none", mec=MARKER_COLOURS[k], mew=1.6, zorder=4)
        ax.annotate(
            _text(r, digits),
            xy=(1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=FONT,
            color="#8a3b00" if r.note else "black",
        )
    if any(r.note and r.estimate is not None for r in rows):
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                ms=8,
                mfc="white",
                mec="#1f4f82",
                mew=1.8,
                label="not estimable: no interval",
            )
        )
    if any(r.summary for r in rows):
        handles.append(Line2D([], [], ls="none", marker="D", ms=9, color="black", label="mean"))
    for k, n in enumerate(names):
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker=MARKERS[k % len(MARKERS)],
                ms=7,
                mfc="none",
                mec=MARKER_COLOURS[k % len(MARKERS)],
                mew=1.6,
                label=n,
            )
        )
    if reference is not None:
        ax.axvline(reference, color="0.55", ls="--", lw=1)
        handles.append(Line2D([], [], color="0.55", ls="--", lw=1, label=f"{reference_label} ({reference:g})"))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.name for r in reversed(rows)], fontsize=FONT)
    for tick, r in zip(ax.get_yticklabels(), reversed(rows)):
        if r.summary:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(axis="x", color="0.9")
    ax.set_title(title, fontsize=FONT + 1, loc="left")
    fig.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.02, 0.01),
        ncol=4,
        fontsize=FONT - 1,
        frameon=False,
        title=marker_note or None,
        title_fontsize=FONT - 1,
        alignment="left",
    )
    # Room on the right for the numbers, on the left for the names, below for the legend.
    fig.subplots_adjust(left=0.19, right=0.74, top=1 - top_in / height, bottom=bottom_in / height)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buffer.getvalue()
