"""Figures for evaluation: ROC curves and reliability (calibration) diagrams, one panel per label.

Shared by `evaluate` and anything else that plots per-label curves. matplotlib runs with the Agg
backend (no display needed); every figure is written atomically as PNG and closed, so long
sessions do not accumulate open figures. `save_figure` makes every text readable where the PNG is
shown at its own size (the report shows it so): no text under MIN_TEXT_PX pixels, and a figure
title wrapped to the figure's width rather than cut at its edges.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.text import Text
from sklearn.metrics import roc_curve

from ..atomic import atomic_write

# The smallest text, in pixels of the PNG: about 10 px is the least that reads at 100% zoom.
MIN_TEXT_PX = 11


def panel_grid(n_panels: int, panel_inches: float = 2.6, max_cols: int = 4):
    """A figure with n_panels axes in rows of at most `max_cols`; unused axes are hidden."""
    cols = min(max_cols, max(1, n_panels))
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_inches * cols, panel_inches * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def make_readable(fig, dpi: int) -> None:
    """Raise every text below MIN_TEXT_PX (at `dpi`) to it; wrap figure-level titles to the width.

    Panels set small sizes to fit; enforcing the floor in one place keeps every figure above it.
    A long title (a data folder's path) is wrapped at the width its font allows, so that it is
    never cut at the figure's edges.
    """
    fig.canvas.draw()  # tick labels exist only once drawn
    floor = MIN_TEXT_PX * 72 / dpi
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < floor:
            text.set_fontsize(floor)
    width_px = fig.get_figwidth() * dpi
    renderer = fig.canvas.get_renderer()
    for text in fig.texts:  # suptitle and other figure-level text: wrapped at spaces
        chars = max(12, int(width_px * 0.92 / (text.get_fontsize() * dpi / 72 * 0.6)))
        lines = text.get_text().splitlines() or [""]
        wrapped = "\n".join(
            textwrap.fill(line, chars, break_long_words=False, break_on_hyphens=False) for line in lines
        )
        added = wrapped.count("\n") - text.get_text().count("\n")
        text.set_text(wrapped)
        if added > 0:  # the panels keep their height: the figure grows by the title's new lines
            fig.set_figheight(fig.get_figheight() + added * text.get_fontsize() * 1.3 / 72)
        # A word longer than the figure (a path) widens the figure rather than being cut.
        needed = text.get_window_extent(renderer).width / fig.dpi + 0.3
        if needed > fig.get_figwidth():
            fig.set_figwidth(needed)


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Write a figure as PNG atomically and close it."""
    try:
        make_readable(fig, dpi)
        fig.tight_layout()
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)
    return Path(path)


def _roc(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    if len(y) == 0 or y.min() == y.max():
        return None
    fpr, tpr, _ = roc_curve(y, p)
    return fpr, tpr


def roc_figure(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    labels: Sequence[str],
    path: Path,
    aurocs: dict[str, dict] | None = None,
    title: str = "ROC",
) -> Path:
    """One ROC panel per label plus a last panel with every curve and their mean (macro) curve.

    `aurocs` maps a label to {"auroc", "auroc_low", "auroc_high"} for the panel titles; the mean
    curve averages the labels' true-positive rates on a common false-positive grid.
    """
    aurocs = aurocs or {}
    fig, axes = panel_grid(len(labels) + 1)
    grid = np.linspace(0, 1, 201)
    mean_tpr, drawn = np.zeros_like(grid), 0
    for j, (label, ax) in enumerate(zip(labels, axes)):
        curve = _roc(np.asarray(y_true[:, j], dtype=float), np.asarray(y_prob[:, j], dtype=float))
        ax.plot([0, 1], [0, 1], ls="--", color="0.7", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("1 - specificity", fontsize=7)
        ax.set_ylabel("sensitivity", fontsize=7)
        ax.tick_params(labelsize=6)
        if curve is None:
            ax.set_title(f"{label}\nnot computable", fontsize=8)
            continue
        fpr, tpr = curve
        ax.plot(fpr, tpr, color="C0", lw=1.4)
        axes[-1].plot(fpr, tpr, lw=0.7, alpha=0.5)
        mean_tpr += np.interp(grid, fpr, tpr)
        drawn += 1
        info = aurocs.get(label, {})
        text = f"{label}\nAUROC {info['auroc']:.3f}" if info.get("auroc") is not None else label
        if info.get("not_estimable"):
            text += f" (not estimable: {info.get('positive_patients')}+ patients)"
        elif info.get("auroc_low") is not None:
            text += f" [{info['auroc_low']:.3f}, {info['auroc_high']:.3f}]"
            if info.get("skipped_replicates"):  # the interval is conditional on the drawn replicates
                text += f"\n{info['skipped_replicates']} replicates skipped"
        ax.set_title(text, fontsize=8)
        point = (info.get("operating_points") or {}).get("youden")
        if point:  # the val-chosen Youden threshold, where it falls on this split's curve
            ax.plot(1 - point["specificity"], point["sensitivity"], "o", color="C3", ms=4)
    ax = axes[-1]
    ax.plot([0, 1], [0, 1], ls="--", color="0.7", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if drawn:
        ax.plot(grid, mean_tpr / drawn, color="k", lw=2, label="mean")
        ax.legend(fontsize=6, loc="lower right")
    mean = aurocs.get("__mean__", {})
    mean_text = f"mean AUROC {mean['estimate']:.3f}" if mean.get("estimate") is not None else "mean"
    if mean.get("low") is not None:
        mean_text += f"\n[{mean['low']:.3f}, {mean['high']:.3f}]"
    ax.set_title(mean_text, fontsize=8)
    ax.set_xlabel("1 - specificity", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def reliability_figure(calibrations: dict[str, dict | None], path: Path, title: str = "Reliability") -> Path:
    """One reliability panel per label: fraction positive against mean probability per bin.

    `calibrations` maps a label to the dict from `metrics.calibration` (None: not computable).
    Point sizes follow the bin's share of images, so sparse bins do not look as certain as full ones.
    """
    labels = list(calibrations)
    fig, axes = panel_grid(len(labels))
    for label, ax in zip(labels, axes):
        ax.plot([0, 1], [0, 1], ls="--", color="0.7", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("mean predicted probability", fontsize=7)
        ax.set_ylabel("fraction positive", fontsize=7)
        ax.tick_params(labelsize=6)
        cal = calibrations[label]
        if not cal:
            ax.set_title(f"{label}\nnot computable", fontsize=8)
            continue
        bins = [b for b in cal["bins"] if b["count"]]
        total = sum(b["count"] for b in bins) or 1
        xs = [b["mean_prob"] for b in bins]
        ys = [b["frac_pos"] for b in bins]
        sizes = [10 + 120 * b["count"] / total for b in bins]
        ax.plot(xs, ys, color="C1", lw=1)
        ax.scatter(xs, ys, s=sizes, color="C1", zorder=3)
        ax.set_title(f"{label}\nECE {cal['ece']:.3f}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
