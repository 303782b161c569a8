"""Lesion boxes and how well a class activation map points at them.

Boxes come from NIH's `BBox_List_2017.csv` (1024-pixel coordinates; read by
`cxrtool.data.boxes`, which prepare uses too) or from a
prepared cache's `boxes.csv` (id, label, x, y, w, h in cache pixels). A box (x, y, w, h) covers
the pixels whose centres lie in [x, x + w] x [y, y + h].

Two scores per image and class, against the union of that class's boxes on the image:
- pointing game (Zhang et al. 2016, without tolerance): a hit when the map's maximum lies inside
  a box; a flat map points nowhere and misses;
- IoU of the thresholded map (pixels at or above t of the map's range, min-max scaled) with the
  boxes, at a few thresholds t.
`summarise` turns the per-image rows into per-class rates and an overall ('all') row, beside the
uniform and the location-prior pointers, each rate with a 95% interval (baselines.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.boxes import NIH_BOX_SPACE, box_label, is_nih_box_header, read_nih_boxes
from ..errors import CxrError
from .baselines import PAIRED, rate_intervals
from .maps import normalise

DEFAULT_THRESHOLDS = (0.3, 0.5, 0.7)


def read_box_file(path: Path, image_size: int) -> pd.DataFrame:
    """Boxes (id, label, x, y, w, h) in pixels of an `image_size` square image.

    NIH's file is scaled by image_size / 1024; a cache's boxes.csv is taken as it is (it is
    already in cache pixels, and `image_size` must be the cache's size).
    """
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"--boxes: {path}: file not found")
    try:
        head = path.open(encoding="utf-8-sig").readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise CxrError(f"--boxes: {path}: cannot read ({exc})") from None
    first = [c.strip().lower() for c in head.split(",")]
    if is_nih_box_header(head):
        try:
            raw = read_nih_boxes(path)
        except CxrError as exc:
            raise CxrError(f"--boxes: {exc}") from None
        scale = image_size / NIH_BOX_SPACE
        for col in ("x", "y", "w", "h"):
            raw[col] = raw[col] * scale
    elif {"id", "label", "x", "y", "w", "h"} <= set(first):
        raw = pd.read_csv(path, dtype={"id": str, "label": str}, encoding="utf-8-sig")[
            ["id", "label", "x", "y", "w", "h"]
        ]
        for col in ("x", "y", "w", "h"):
            raw[col] = pd.to_numeric(raw[col], errors="coerce")
    else:
        raise CxrError(
            f"--boxes: {path}: not a box file; give NIH's BBox_List_2017.csv or a cache's boxes.csv (id,label,x,y,w,h)"
        )
    bad = raw[["x", "y", "w", "h"]].isna().any(axis=1) | (raw["w"] <= 0) | (raw["h"] <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
        raise CxrError(f"--boxes: {path}: row {row} has no valid x, y, w, h (width and height must be positive)")
    return clean_boxes(raw)


def clean_boxes(boxes: pd.DataFrame) -> pd.DataFrame:
    """Canonical label spellings and string ids, so boxes match model classes and image ids."""
    out = boxes[["id", "label", "x", "y", "w", "h"]].copy()
    out["id"] = out["id"].astype(str).str.strip()
    out["label"] = [box_label(l) for l in out["label"]]
    return out.reset_index(drop=True)


def boxes_by_image(boxes: pd.DataFrame) -> dict[str, dict[str, list[tuple[float, float, float, float]]]]:
    """{image id: {label: [(x, y, w, h), ...]}}, for quick lookups while mapping."""
    table: dict[str, dict[str, list[tuple[float, float, float, float]]]] = {}
    for row in boxes.itertuples(index=False):
        table.setdefault(row.id, {}).setdefault(row.label, []).append(
            (float(row.x), float(row.y), float(row.w), float(row.h))
        )
    return table


def box_mask(boxes: Sequence[tuple[float, float, float, float]], size: int) -> np.ndarray:
    """(size, size) bool: pixels whose centre lies in any of the boxes."""
    centres = np.arange(size) + 0.5
    mask = np.zeros((size, size), dtype=bool)
    for x, y, w, h in boxes:
        rows = (centres >= y) & (centres <= y + h)
        cols = (centres >= x) & (centres <= x + w)
        mask |= rows[:, None] & cols[None, :]
    return mask


def score_map(
    cam: np.ndarray,
    boxes: Sequence[tuple[float, float, float, float]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict[str, float | int | bool]:
    """Pointing-game hit, the peak's position and IoU at each threshold, for one map and its boxes."""
    cam = np.asarray(cam, dtype=np.float32)
    size = cam.shape[0]
    truth = box_mask(boxes, size)
    scaled = normalise(cam)
    flat = not scaled.any()
    peak_y, peak_x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    out: dict[str, float | int | bool] = {
        "hit": bool(truth[peak_y, peak_x]) and not flat,
        "peak_x": int(peak_x),
        "peak_y": int(peak_y),
        "flat": flat,
        "box_fraction": float(truth.mean()),
    }
    for t in thresholds:
        pred = scaled >= t if not flat else np.zeros_like(truth)
        union = np.logical_or(pred, truth).sum()
        out[iou_column(t)] = float(np.logical_and(pred, truth).sum() / union) if union else 0.0
    return out


def iou_column(t: float) -> str:
    return f"iou@{t:g}"


def summarise(per_image: pd.DataFrame, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Per class and overall: maps and patients scored, pointing-game hit rate, mean IoU at each
    threshold, and the two baselines, each rate with its 95% interval (cam/baselines.py).

    'box_fraction' is the mean share of the image the boxes cover: the hit rate of a uniformly
    random pointer. 'prior_hit_rate' (when `per_image` has `prior_hit`, see baselines.with_prior)
    is that of the location-prior pointer, which aims where other patients' boxes of the finding
    are densest. A map that points well beats both.
    """
    has_prior = "prior_hit" in per_image.columns
    rates = ["pointing_hit_rate", *(["prior_hit_rate"] if has_prior else []), "box_fraction"]
    cols = [
        "class",
        "images",
        "patients",
        *[c for r in rates for c in (r, f"{r}_low", f"{r}_high")],
        "interval",
        *([PAIRED, f"{PAIRED}_low", f"{PAIRED}_high"] if has_prior else []),
        *[iou_column(t) for t in thresholds],
    ]
    if per_image.empty:
        return pd.DataFrame(columns=cols)

    def row(name: str, part: pd.DataFrame) -> dict:
        r = {"class": name, "images": len(part), "pointing_hit_rate": float(part["hit"].mean())}
        if has_prior:
            r["prior_hit_rate"] = float(part["prior_hit"].mean())
        r["box_fraction"] = float(part["box_fraction"].mean())
        r.update(rate_intervals(part))
        r.update({iou_column(t): float(part[iou_column(t)].mean()) for t in thresholds})
        return r

    rows = [row(c, part) for c, part in per_image.groupby("class", sort=True)]
    rows.append(row("all", per_image))
    return pd.DataFrame(rows, columns=cols)
