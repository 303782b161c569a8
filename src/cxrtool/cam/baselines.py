"""What a pointing-game hit rate is read against, and how sure it is.

Two pointers that never look at the image:

- uniform: a point drawn uniformly over the image. It hits with probability the share of the
  image its boxes cover (`box_fraction`), so its hit rate is the mean of that share.
- location prior: the densest point of the other images' boxes of the same finding. The density
  counts, at each pixel, how many other images have a box of that finding covering it (an image
  with several boxes counts once). It is cross-fitted by patient: the boxes of the scored image
  and of every other image of its patient are left out (leave-one-patient-out), so no image's own
  box ever builds its prior. Ties go to the tied pixel nearest the tied pixels' centroid; with no
  other image's box the density is flat and the pointer aims at the image's centre. Cardiomegaly's
  box is nearly always in the same place, so this pointer is a much harder baseline than chance.

Patients: a cache's index names them; otherwise an NIH file name `<patient>_<follow-up>.png`
gives its patient, and any other id is its own patient.

Intervals (95%): a rate over images that are each their own patient is a binomial proportion and
gets the Wilson score interval (good at small counts and at rates near 0 or 1). When a patient has
several scored maps (follow-ups, or several findings on one image in the `all` row) the maps are
not independent, and the interval is a patient bootstrap (patients resampled with replacement,
`BOOTSTRAP_REPLICATES` times, seeded, percentile interval). The uniform pointer's interval treats
its expected hits (the sum of box fractions) as the count: the interval a realised uniform
pointer's hit rate would get, slightly wide, since the variance of a sum of Bernoulli draws of
unequal probabilities is at most the binomial one.

The model against the prior pointer (`model_minus_prior`): both point on the same maps, so their
difference is paired: the mean of each map's (hit - prior hit), with a patient-bootstrap interval
of that mean (every map of a drawn patient comes along, so both pointers see the same draw). An
interval above 0 says the map points better than where the finding usually is; one that spans 0
says this many maps cannot tell them apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

BOOTSTRAP_REPLICATES = 2000
Z95 = 1.959963984540054
NIH_FILE = re.compile(r"^(\d+)_\d+\.png$", re.IGNORECASE)
WILSON, BOOTSTRAP = "wilson", "patient bootstrap"


def patient_finder(patients: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """id -> patient: from `patients` (a cache's index) when it knows the id, else NIH's file naming, else the id."""
    known = dict(patients or {})

    def find(image_id: str) -> str:
        image_id = str(image_id)
        if image_id in known:
            return str(known[image_id])
        m = NIH_FILE.match(image_id)
        return m.group(1) if m else image_id

    return find


def _union_mask(boxes, size: int) -> np.ndarray:
    """(size, size) bool: pixels whose centre lies in any box (as cam.boxes.box_mask), by slicing."""
    mask = np.zeros((size, size), dtype=bool)
    for x, y, w, h in boxes:
        # Centre c = i + 0.5 lies in [x, x + w] for i in [ceil(x - 0.5), floor(x + w - 0.5)].
        c0, c1 = max(0, math.ceil(x - 0.5)), min(size - 1, math.floor(x + w - 0.5))
        r0, r1 = max(0, math.ceil(y - 0.5)), min(size - 1, math.floor(y + h - 0.5))
        if c1 >= c0 and r1 >= r0:
            mask[r0 : r1 + 1, c0 : c1 + 1] = True
    return mask


def densest_point(density: np.ndarray) -> tuple[int, int]:
    """(x, y) of the density's maximum; among ties, the one nearest the tied pixels' centroid."""
    ys, xs = np.nonzero(density == density.max())
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[k]), int(ys[k])


def prior_points(
    boxes: pd.DataFrame, size: int, wanted: list[tuple[str, str]], patient_of: Callable[[str], str]
) -> dict[tuple[str, str], dict]:
    """For each (image id, finding) in `wanted`: the location-prior pointer's point and hit.

    `boxes` (id, label, x, y, w, h, in pixels of a `size` square) is every box the prior may
    learn from; `wanted` pairs without a box of their own still get a point (hit False). Returns
    {(id, label): {"prior_x", "prior_y", "prior_hit", "prior_images"}}, prior_images being how
    many other images' boxes built the prior.
    """
    out: dict[tuple[str, str], dict] = {}
    by_label: dict[str, list[tuple[str, str]]] = {}
    for image_id, label in wanted:
        by_label.setdefault(label, []).append((str(image_id), label))
    for label, pairs in by_label.items():
        part = boxes[boxes["label"] == label]
        own: dict[str, list] = {}
        for r in part.itertuples(index=False):
            own.setdefault(str(r.id), []).append((float(r.x), float(r.y), float(r.w), float(r.h)))
        of_patient: dict[str, list[str]] = {}
        for image_id in own:
            of_patient.setdefault(patient_of(image_id), []).append(image_id)
        total = np.zeros((size, size), dtype=np.int32)
        for b in own.values():
            total += _union_mask(b, size)
        for image_id, _ in pairs:
            left_out = of_patient.get(patient_of(image_id), [])
            density = total.copy()
            for other in left_out:
                density -= _union_mask(own[other], size)
            x, y = densest_point(density)
            hit = bool(_union_mask(own.get(image_id, []), size)[y, x]) if image_id in own else False
            out[(image_id, label)] = {
                "prior_x": x,
                "prior_y": y,
                "prior_hit": hit,
                "prior_images": len(own) - len(left_out),
            }
    return out


def with_prior(
    per_image: pd.DataFrame, boxes: pd.DataFrame, size: int, patient_of: Callable[[str], str]
) -> pd.DataFrame:
    """`per_image` (one row per scored map: id, class, ...) with patient and the prior pointer's columns."""
    out = per_image.copy()
    if out.empty:
        return out
    out.insert(1, "patient", [patient_of(i) for i in out["id"]])
    points = prior_points(boxes, size, list(zip(out["id"].astype(str), out["class"])), patient_of)
    for col in ("prior_x", "prior_y", "prior_hit", "prior_images"):
        out[col] = [points[(str(i), c)][col] for i, c in zip(out["id"], out["class"])]
    return out


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / n` (NaN for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def patient_bootstrap(
    values: np.ndarray, patients: np.ndarray, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0
) -> list[tuple[float, float]]:
    """Percentile 95% intervals of the mean of each column of `values` (maps x columns),
    resampling patients with replacement (every map of a drawn patient comes along)."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    codes, _ = pd.factorize(pd.Series(patients).astype(str))
    n_patients = int(codes.max()) + 1
    sums = np.zeros((n_patients, values.shape[1]))
    np.add.at(sums, codes, values)
    counts = np.bincount(codes, minlength=n_patients).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(replicates, n_patients))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)[:, None]
    lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi)]


PAIRED = "model_minus_prior"  # the model's hit rate less the prior pointer's, on the same maps
RATES = (("pointing_hit_rate", "hit"), ("prior_hit_rate", "prior_hit"), ("box_fraction", "box_fraction"))


def rate_intervals(part: pd.DataFrame, seed: int = 0) -> dict[str, float | str | int]:
    """For one row of the summary: patients, and the 95% interval of the model's, the prior
    pointer's and the uniform pointer's hit rates (`<rate>_low`, `<rate>_high`), and `interval`
    (wilson or patient bootstrap, as the module docstring says)."""
    cols = [(name, col) for name, col in RATES if col in part.columns]
    n = len(part)
    patients = part["patient"].astype(str).to_numpy() if "patient" in part.columns else np.arange(n).astype(str)
    n_patients = len(set(patients))
    out: dict[str, float | str | int] = {"patients": n_patients}
    clustered = n_patients < n
    values = part[[col for _, col in cols]].astype(float).to_numpy()
    if clustered:
        bounds = patient_bootstrap(values, patients, seed=seed)
    else:
        bounds = [wilson(float(values[:, k].sum()), n) for k in range(len(cols))]
    for (name, _), (lo, hi) in zip(cols, bounds):
        out[f"{name}_low"], out[f"{name}_high"] = lo, hi
    out["interval"] = BOOTSTRAP if clustered else WILSON
    if {"hit", "prior_hit"} <= set(part.columns) and n:
        paired = part["hit"].astype(float).to_numpy() - part["prior_hit"].astype(float).to_numpy()
        out[PAIRED], ((out[f"{PAIRED}_low"], out[f"{PAIRED}_high"]),) = (
            float(paired.mean()),
            patient_bootstrap(paired, patients, seed=seed),
        )
    return out


def prior_baselines(boxes: pd.DataFrame, size: int, patient_of: Callable[[str], str] | None = None) -> pd.DataFrame:
    """Per finding of a box table (and `all`): the prior pointer's and the uniform pointer's hit
    rates on every boxed image, with intervals: what a map must beat, without any map."""
    patient_of = patient_of or patient_finder()
    per_image = pd.DataFrame(
        [(str(i), l) for i, l in dict.fromkeys(zip(boxes["id"].astype(str), boxes["label"]))], columns=["id", "class"]
    )
    owned = {}
    for r in boxes.itertuples(index=False):
        owned.setdefault((str(r.id), r.label), []).append((float(r.x), float(r.y), float(r.w), float(r.h)))
    per_image["box_fraction"] = [
        float(_union_mask(owned[k], size).mean()) for k in zip(per_image["id"], per_image["class"])
    ]
    per_image = with_prior(per_image, boxes, size, patient_of)
    rows = []
    for name, part in [*per_image.groupby("class", sort=True), ("all", per_image)]:
        rows.append(
            {
                "class": name,
                "images": len(part),
                "prior_hit_rate": float(part["prior_hit"].mean()),
                "box_fraction": float(part["box_fraction"].mean()),
                **rate_intervals(part),
            }
        )
    return pd.DataFrame(rows)
