"""Generated chest-like radiographs with findings drawn at known boxes.

The phantom has a body, two lung fields, a heart, a spine and ribs; each finding is a lesion drawn
into it at a recorded box, so a network trained on these images has a real signal to learn and
CAM box scores have a ground truth:

- Cardiomegaly: the heart drawn wider (box: the heart);
- Effusion: a bright fluid level filling one lung base (box: the filled region);
- Mass: a large bright disc in a lung; Nodule: a small bright disc in a lung;
- Pneumothorax: a dark crescent, free of lung markings, at one lung apex;
- COVID-19 (the held-back finding): hazy patches in the periphery of both lower lungs.

Images of one patient share their anatomy (follow-ups look alike, as in NIH), which makes
patient-level splits and the patient bootstrap matter. A planted shortcut (`shortcut`) makes the
"AP" view tag more likely for COVID-19 images, for the shortcut-baseline checks.
`generate_arrays` returns everything in memory (fast test fixtures); `write_raw` writes a dataset
in the NIH layout (images/, Data_Entry_2017.csv, BBox_List_2017.csv with 1024-pixel boxes) that
`cxrtool prepare nih` reads like the real thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from ...errors import CxrError
from ...optionspec import option
from ...progress import track

SYNTHETIC_FINDINGS = ["Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax", "COVID-19"]
PRETRAIN_FINDINGS = SYNTHETIC_FINDINGS[:5]  # what `demo` pretrains on; COVID-19 is held back
NIH_BOX_SPACE = 1024  # NIH's box file is in 1024-pixel coordinates


@dataclass
class SyntheticConfig:
    n_patients: int = option(200, help="Number of patients (each has 1-3 images).", flags=("--patients",))
    max_followups: int = 3
    size: int = option(256, help="Image side in pixels.")
    seed: int = option(0, help="Random seed: the same seed writes the same images.")
    prevalence: dict[str, float] = field(
        default_factory=lambda: {
            "Cardiomegaly": 0.2,
            "Effusion": 0.2,
            "Mass": 0.15,
            "Nodule": 0.15,
            "Pneumothorax": 0.15,
            "COVID-19": 0.2,
        }
    )
    shortcut: float = option(
        0.0, help="0..1: how strongly the AP view tag predicts COVID-19 (a planted shortcut)."
    )  # 0: view independent of findings; 1: every COVID-19 image is AP
    noise: float = 6.0


@dataclass
class Anatomy:
    """A patient's body geometry, in fractions of the image side."""

    cx: float
    lung_w: float
    lung_h: float
    lung_top: float
    heart_w: float
    heart_h: float
    brightness: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Anatomy:
        return cls(
            cx=rng.uniform(0.47, 0.53),
            lung_w=rng.uniform(0.16, 0.19),
            lung_h=rng.uniform(0.30, 0.36),
            lung_top=rng.uniform(0.16, 0.22),
            heart_w=rng.uniform(0.10, 0.12),
            heart_h=rng.uniform(0.10, 0.13),
            brightness=rng.uniform(0.85, 1.15),
        )


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _box(y0, x0, y1, x1, s):
    """(x, y, w, h) in pixels, clipped to the image."""
    x0, y0 = max(0.0, x0 * s), max(0.0, y0 * s)
    x1, y1 = min(float(s), x1 * s), min(float(s), y1 * s)
    return (x0, y0, x1 - x0, y1 - y0)


def draw_image(anat: Anatomy, findings: list[str], size: int, rng: np.random.Generator, noise: float = 6.0):
    """One radiograph (uint8, size x size) and its lesion boxes {finding: [(x, y, w, h), ...]}."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    img = np.full((s, s), 18.0, dtype=np.float32)
    img[_ellipse(yy, xx, 0.55, anat.cx, 0.48, 0.40)] = 120.0  # soft tissue
    lungs = []
    for side in (-1, 1):
        lcx = anat.cx + side * (anat.lung_w * 0.5 + 0.06)
        lcy = anat.lung_top + anat.lung_h
        lungs.append((lcy, lcx))
        img[_ellipse(yy, xx, lcy, lcx, anat.lung_h, anat.lung_w)] = 55.0
    # Lung markings: faint vessels make texture that a pneumothorax lacks.
    markings = gaussian_filter(rng.normal(0, 1, (s, s)).astype(np.float32), sigma=max(1.0, s / 128)) * 8
    lung_mask = img == 55.0
    img[lung_mask] += markings[lung_mask]
    # Ribs: bright arcs across the lung fields.
    for k in range(7):
        ry = anat.lung_top + 0.04 + k * anat.lung_h * 0.27
        rib = np.abs(yy - (ry + 0.25 * (xx - anat.cx) ** 2 * 4)) < 0.008
        img[rib & lung_mask] += 22.0
    img[(np.abs(xx - anat.cx) < 0.035) & (yy > 0.1)] = 150.0  # spine
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    heart_w = anat.heart_w * (1.7 if "Cardiomegaly" in findings else 1.0)
    hcy, hcx = anat.lung_top + anat.lung_h * 1.45, anat.cx + 0.03
    img[_ellipse(yy, xx, hcy, hcx, anat.heart_h, heart_w)] = 165.0
    if "Cardiomegaly" in findings:
        boxes["Cardiomegaly"] = [_box(hcy - anat.heart_h, hcx - heart_w, hcy + anat.heart_h, hcx + heart_w, s)]
    lung_side = int(rng.integers(0, 2))
    if "Effusion" in findings:
        lcy, lcx = lungs[lung_side]
        level = lcy + anat.lung_h * rng.uniform(0.2, 0.45)
        region = _ellipse(yy, xx, lcy, lcx, anat.lung_h * 1.02, anat.lung_w * 1.02) & (yy > level)
        img[region] = 150.0
        boxes["Effusion"] = [_box(level, lcx - anat.lung_w, lcy + anat.lung_h, lcx + anat.lung_w, s)]
    for name, radius in (("Mass", 0.075), ("Nodule", 0.035)):
        if name in findings:
            lcy, lcx = lungs[int(rng.integers(0, 2))]
            cy = lcy + rng.uniform(-0.5, 0.3) * anat.lung_h
            cx = lcx + rng.uniform(-0.4, 0.4) * anat.lung_w
            img[_ellipse(yy, xx, cy, cx, radius, radius)] = 175.0 if name == "Mass" else 185.0
            pad = radius * 1.2
            boxes[name] = [_box(cy - pad, cx - pad, cy + pad, cx + pad, s)]
    if "Pneumothorax" in findings:
        lcy, lcx = lungs[1 - lung_side]
        apex = lcy - anat.lung_h
        region = _ellipse(yy, xx, lcy, lcx, anat.lung_h, anat.lung_w) & (yy < apex + anat.lung_h * 0.55)
        inner = _ellipse(yy, xx, lcy + 0.05, lcx, anat.lung_h * 0.85, anat.lung_w * 0.7)
        crescent = region & ~inner
        img[crescent] = 8.0
        img[
            region & inner & ~_ellipse(yy, xx, lcy + 0.05, lcx, anat.lung_h * 0.85 - 0.01, anat.lung_w * 0.7 - 0.01)
        ] = 110.0
        boxes["Pneumothorax"] = [_box(apex, lcx - anat.lung_w, apex + anat.lung_h * 0.55, lcx + anat.lung_w, s)]
    if "COVID-19" in findings:
        boxes["COVID-19"] = []
        for side, (lcy, lcx) in zip((-1, 1), lungs):
            haze = np.zeros((s, s), dtype=np.float32)
            for _ in range(4):
                cy = lcy + rng.uniform(0.05, 0.7) * anat.lung_h
                cx = lcx + side * rng.uniform(0.3, 0.75) * anat.lung_w
                haze += _ellipse(yy, xx, cy, cx, 0.06, 0.05)
            haze = gaussian_filter(np.minimum(haze, 1.0), sigma=s / 64) * 60.0
            lung = _ellipse(yy, xx, lcy, lcx, anat.lung_h, anat.lung_w)
            img[lung] += haze[lung]
            x_out = lcx + side * anat.lung_w
            x_in = lcx
            boxes["COVID-19"].append(_box(lcy, min(x_in, x_out), lcy + anat.lung_h, max(x_in, x_out), s))
    img = gaussian_filter(img, sigma=max(0.6, s / 256)) * anat.brightness
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), boxes


def _plan(cfg: SyntheticConfig) -> list[dict]:
    """Who has which images with which findings: rows in NIH's label-file vocabulary."""
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for p in range(1, cfg.n_patients + 1):
        anat = Anatomy.sample(rng)
        chronic = [f for f, prev in cfg.prevalence.items() if rng.random() < prev]
        sex = "M" if rng.random() < 0.5 else "F"
        age = int(rng.integers(20, 90))
        for follow in range(int(rng.integers(1, cfg.max_followups + 1))):
            # Most findings persist across follow-ups; a few come and go.
            findings = [f for f in chronic if rng.random() < 0.85]
            covid = "COVID-19" in findings
            p_ap = 0.3 + 0.7 * cfg.shortcut if covid else 0.3 * (1 - cfg.shortcut)
            rows.append(
                dict(
                    image=f"{p:08d}_{follow:03d}.png",
                    patient=str(p),
                    follow=follow,
                    findings=findings,
                    anatomy=anat,
                    sex=sex,
                    age=age + follow,
                    view="AP" if rng.random() < p_ap else "PA",
                    seed=int(rng.integers(0, 2**31 - 1)),
                )
            )
    return rows


def generate_arrays(cfg: SyntheticConfig, findings: list[str] | None = None):
    """In-memory dataset: images (N,S,S) uint8, a frame (image, patient, view, sex, age, one column
    per finding) and boxes (image, label, x, y, w, h in pixels)."""
    findings = findings or SYNTHETIC_FINDINGS
    plan = _plan(cfg)
    images = np.empty((len(plan), cfg.size, cfg.size), dtype=np.uint8)
    records, box_rows = [], []
    for i, row in enumerate(plan):
        img, boxes = draw_image(
            row["anatomy"], row["findings"], cfg.size, np.random.default_rng(row["seed"]), cfg.noise
        )
        images[i] = img
        rec = {k: row[k] for k in ("image", "patient", "view", "sex", "age")}
        rec.update({f: float(f in row["findings"]) for f in findings})
        records.append(rec)
        for label, bxs in boxes.items():
            for x, y, w, h in bxs:
                box_rows.append(dict(image=row["image"], label=label, x=x, y=y, w=w, h=h))
    return images, pd.DataFrame(records), pd.DataFrame(box_rows, columns=["image", "label", "x", "y", "w", "h"])


def write_raw(out: Path, cfg: SyntheticConfig, overwrite: bool = False) -> dict[str, int]:
    """Write the dataset in the NIH layout; returns counts. Images are PNG at cfg.size.

    A folder that already holds files is refused unless `overwrite` (it may be someone's data)."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CxrError(
            f"{out}: folder exists and is not empty; pass --overwrite to write the synthetic set into it anyway"
        )
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrError(f"{out}: cannot create the folder ({exc.strerror})") from None
    plan = _plan(cfg)
    entries, box_rows = [], []
    scale = NIH_BOX_SPACE / cfg.size
    for row in track(plan, "generate", unit="images"):
        img, boxes = draw_image(
            row["anatomy"], row["findings"], cfg.size, np.random.default_rng(row["seed"]), cfg.noise
        )
        Image.fromarray(img, mode="L").save(out / "images" / row["image"])
        entries.append(
            {
                "Image Index": row["image"],
                "Finding Labels": "|".join(row["findings"]) or "No Finding",
                "Follow-up #": row["follow"],
                "Patient ID": int(row["patient"]),
                "Patient Age": row["age"],
                "Patient Gender": row["sex"],
                "View Position": row["view"],
                "OriginalImage[Width": cfg.size,
                "Height]": cfg.size,
                "OriginalImagePixelSpacing[x": 0.143,
                "y]": 0.143,
            }
        )
        for label, bxs in boxes.items():
            for x, y, w, h in bxs:
                box_rows.append([row["image"], label, x * scale, y * scale, w * scale, h * scale])
    pd.DataFrame(entries).to_csv(out / "Data_Entry_2017.csv", index=False)
    with open(out / "BBox_List_2017.csv", "w", encoding="utf-8") as fh:
        fh.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")  # NIH's own header, quirks included
        for r in box_rows:
            fh.write(f"{r[0]},{r[1]},{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f}\n")
    return {"images": len(entries), "patients": len({r["patient"] for r in plan}), "boxes": len(box_rows)}
