"""Pictures of the maps: scatters coloured by finding (and by source), and the SOM's panels.

A scatter per space and method, coloured by each image's primary finding with one colour per
finding across every plot of a run (so "Effusion" is the same colour in the t-SNE and the SOM),
and, when the data mixes source datasets, a second panel coloured by source: if sources separate
more cleanly than findings, the network may be recognising the hospital rather than the disease.
For the SOM: the U-matrix (light ridges separate clusters), each neuron's majority finding, and
COVID-19's share of each neuron when the data has that label. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from ..atomic import atomic_write
from ..data.labels import NO_FINDING
from .features import MULTIPLE

_GREY = (0.72, 0.72, 0.72, 1.0)
_BLACK = (0.15, 0.15, 0.15, 1.0)


def class_colours(names: list[str]) -> dict[str, tuple]:
    """A fixed colour per class: grey for No Finding, dark for multiple, tab20 for the findings."""
    palette = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    colours, i = {}, 0
    for name in names:
        if name == NO_FINDING:
            colours[name] = _GREY
        elif name == MULTIPLE:
            colours[name] = _BLACK
        else:
            colours[name] = palette(i % palette.N)
            i += 1
    return colours


def class_order(classes: np.ndarray) -> list[str]:
    """Findings by frequency, with No Finding and multiple last (drawn first, underneath)."""
    names, counts = np.unique(classes, return_counts=True)
    ordered = [str(n) for n, _ in sorted(zip(names, counts), key=lambda t: -t[1]) if n not in (NO_FINDING, MULTIPLE)]
    return ordered + [n for n in (MULTIPLE, NO_FINDING) if n in names]


def _save(fig, path: Path) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def _scatter_panel(ax, coords: np.ndarray, groups: np.ndarray, order: list[str], colours: dict, title: str) -> None:
    size = float(np.clip(3000 / max(len(coords), 1), 2, 30))
    # Background classes first so rare findings stay visible on top.
    for name in reversed(order):
        m = groups == name
        if m.any():
            ax.scatter(
                coords[m, 0],
                coords[m, 1],
                s=size,
                color=colours[name],
                label=f"{name} ({int(m.sum())})",
                alpha=0.75,
                linewidths=0,
            )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1],
        labels[::-1],
        fontsize=7,
        markerscale=max(1.0, 20 / size),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )


def scatter_plot(
    path: Path,
    coords: np.ndarray,
    findings: np.ndarray,
    colours: dict,
    title: str,
    sources: np.ndarray | None = None,
    invert_y: bool = False,
) -> Path:
    """One PNG: coloured by finding, plus a panel by source when `sources` has several values."""
    mixed = sources is not None and len(np.unique(sources)) > 1
    fig, axes = plt.subplots(1, 2 if mixed else 1, figsize=(13 if mixed else 7, 5.5), squeeze=False)
    _scatter_panel(axes[0, 0], coords, findings, class_order(findings), colours, f"{title}: finding")
    if mixed:
        src_order = class_order(sources)
        src_colours = {s: plt.get_cmap("Set1")(i % 9) for i, s in enumerate(src_order)}
        _scatter_panel(axes[0, 1], coords, sources, src_order, src_colours, f"{title}: source")
    if invert_y:
        for ax in axes[0]:
            ax.invert_yaxis()
    fig.tight_layout()
    return _save(fig, path)


def som_plot(
    path: Path,
    umatrix: np.ndarray,
    majority: np.ndarray,
    names: list[str],
    colours: dict,
    title: str,
    covid_share: np.ndarray | None = None,
) -> Path:
    """U-matrix | majority finding per neuron | COVID-19 share per neuron (when given)."""
    panels = 3 if covid_share is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6))
    im = axes[0].imshow(umatrix, cmap="bone_r", interpolation="nearest")
    axes[0].set_title(f"{title}: U-matrix")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04, label="mean distance to neighbours")

    present = [i for i in range(len(names)) if (majority == i).any()]
    cmap = ListedColormap([(1, 1, 1, 1)] + [colours[names[i]] for i in present])
    code = np.zeros_like(majority)
    for k, i in enumerate(present, start=1):
        code[majority == i] = k
    axes[1].imshow(code, cmap=cmap, vmin=0, vmax=len(present), interpolation="nearest")
    axes[1].set_title(f"{title}: majority finding")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[names[i]]) for i in present]
    axes[1].legend(
        handles, [names[i] for i in present], fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False
    )
    if covid_share is not None:
        im = axes[2].imshow(np.ma.masked_invalid(covid_share), cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
        axes[2].set_title(f"{title}: COVID-19 share")
        fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04, label="share of the neuron's images")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)
