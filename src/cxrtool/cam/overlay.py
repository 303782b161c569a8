"""Overlay pictures: the X-ray in grey with a class activation map on top in a heat colour map.

Red is high ('jet', semi-transparent, scaled to the map's own range); the title names the class,
its predicted probability and the method, and the finding's boxes are outlined when they are
known. Figures are built with matplotlib's object API on the Agg canvas (no pyplot state, so
thousands of overlays do not accumulate open figures) and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..runs import atomic_write  # noqa: E402
from .maps import normalise  # noqa: E402

ALPHA = 0.45  # enough colour to read the map, enough grey to read the anatomy under it


def save_overlay(path: Path, image: np.ndarray, cam: np.ndarray, title: str, subtitle: str = "",
                 boxes: Sequence[tuple[float, float, float, float]] = ()) -> Path:
    """Write a PNG of `image` (uint8, S x S) under `cam` (S x S, any scale); boxes as (x, y, w, h)."""
    side = image.shape[0]
    inches = max(3.0, min(6.0, side / 64))
    fig = Figure(figsize=(inches, inches + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, inches / (inches + 0.5)))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
    ax.imshow(np.asarray(normalise(cam), dtype=np.float32), cmap="jet", vmin=0.0, vmax=1.0, alpha=ALPHA,
              interpolation="bilinear")
    for (x, y, w, h) in boxes:
        # Box pixels cover [x, x + w); imshow puts pixel centres on integers, hence the half pixel.
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="white", linewidth=1.5))
    ax.set_axis_off()
    fig.suptitle(title, fontsize=11, y=0.985, va="top")
    if subtitle:
        fig.text(0.5, 1 - 0.32 / (inches + 0.5), subtitle, ha="center", va="top", fontsize=7, color="dimgray")
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    return Path(path)
