"""The report's other sections: training (curves, per-epoch table), CAMs and box scores, embeddings.

Each reads the files its command wrote and shows them for people: headings in words, numbers
with significant digits (a learning rate as 1e-4, not 0.000), tables that would run long folded
away with the CSV named, an empty table said in a sentence. A section whose command has not run
says so and names the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import read_json
from ..errors import CxrError
from ..formatting import fmt, fmt_ci, fmt_count, fmt_sci, fmt_sig
from ..models.provenance import STALE, cam_status
from ..runs import RunPaths
from ..safeio import restore_cells
from .markup import details, esc, file_figure, file_link, missing, note, table

MAX_CAM_EXAMPLES = 8
SHOWN_EPOCHS = 12  # longer per-epoch tables are folded away


def read_csv(path: Path) -> pd.DataFrame | None:
    try:
        # cells quoted against formulas; file names that are not UTF-8 are their bytes (runs.atomic_write_text)
        return restore_cells(pd.read_csv(path, encoding_errors="surrogateescape")) if path.is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def pngs(folder: Path, limit: int | None = None) -> list[Path]:
    if not folder.is_dir():
        return []
    found = sorted(folder.rglob("*.png"))
    return found[:limit] if limit else found


def _heading(column: str) -> str:
    """metrics.csv column -> heading: val_auroc_Mass -> 'Mass val AUROC', images_per_s -> 'images/s'."""
    known = {
        "epoch": "Epoch",
        "train_loss": "Train loss",
        "val_loss": "Val loss",
        "val_auroc_mean": "Mean val AUROC",
        "lr": "Learning rate",
        "images_per_s": "Images/s",
        "seconds": "Seconds",
    }
    if column in known:
        return known[column]
    if column.startswith("val_auroc_"):
        return f"{column[len('val_auroc_') :]} val AUROC"
    return column.replace("_", " ")


def _cell(column: str, value: Any) -> str:
    if column == "lr":
        return fmt_sci(value)
    if column in ("epoch", "fold", "images"):
        return fmt_count(value)
    if "auroc" in column or "accuracy" in column:  # scores in [0, 1]: three decimals, as everywhere
        return fmt(value)
    if isinstance(value, float):
        return fmt_sig(value)
    return "" if value is None else str(value)


def frame_table(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    rows = [[_cell(c, None if pd.isna(v) else v) for c, v in zip(columns, r)] for r in frame.itertuples(index=False)]
    return table([_heading(c) for c in columns], rows)


def epochs_table(frame: pd.DataFrame, page: Path, csv: Path) -> str:
    """The per-epoch table: the main columns shown, every label's val AUROC folded away."""
    per_label = [c for c in frame.columns if c.startswith("val_auroc_") and c != "val_auroc_mean"]
    main = frame[[c for c in frame.columns if c not in per_label or len(per_label) == 1]]
    link = f"<p class=sub>Every column: {file_link(csv, page)}.</p>"
    body = frame_table(main)
    if len(frame) > SHOWN_EPOCHS:
        body = details(f"Per-epoch table ({len(frame)} epochs)", body)
    if len(per_label) > 1:
        body += details(
            f"Validation AUROC of each of {len(per_label)} labels per epoch",
            frame_table(frame[["epoch", *per_label]] if "epoch" in frame else frame[per_label]),
        )
    return body + link


def training(paths: RunPaths, page: Path) -> str:
    parts = []
    if paths.curves.is_file():
        parts.append(file_figure(paths.curves, "learning curves"))
    if (frame := read_csv(paths.metrics)) is not None and len(frame):
        parts.append("<h4>Per epoch</h4>" + epochs_table(frame, page, paths.metrics))
    if (folds := read_csv(paths.root / "cv_summary.csv")) is not None:
        parts.append("<h4>Cross-validation folds</h4>" + frame_table(folds))
    return "".join(parts) or missing("Training", "cxrtool pretrain / finetune")


# box_scores.csv's rates, each shown as one "estimate [low, high]" cell (the CSV keeps the ends apart).
BOX_RATES = {
    "pointing_hit_rate": "Pointing-game hit rate",
    "prior_hit_rate": "Prior pointer (other patients' densest boxes)",
    "box_fraction": "Box share of the image (chance)",
    "model_minus_prior": "Hit rate − prior, paired (same maps)",
}
BOX_HEADINGS = {
    "class": "Class",
    "method": "Method",
    "images": "Images",
    "patients": "Patients",
    "interval": "95% interval",
}


def box_scores(frame: pd.DataFrame) -> str:
    if not len(frame):
        return note(
            "No box was scored: none of the mapped images has a drawn box of its class "
            "(give `cam --boxes FILE` with the boxes of the images mapped)."
        )
    ends = {f"{rate}{end}" for rate in BOX_RATES for end in ("_low", "_high")}
    columns = [c for c in frame.columns if c not in ends]

    def cell(record: dict, column: str) -> str:
        value = record[column]
        if column in BOX_RATES:
            digits, sign = (2, "+") if column == "model_minus_prior" else (3, "")
            text = fmt_ci(value, record.get(f"{column}_low"), record.get(f"{column}_high"), digits)
            return f"+{text}" if sign and not text.startswith(("-", "−")) and text != "-" else text
        return _cell(column, None if pd.isna(value) else value)

    rows = [[cell(r, c) for c in columns] for r in frame.to_dict("records")]
    headings = [
        BOX_RATES.get(c) or BOX_HEADINGS.get(c) or (f"IoU (map cut at {c[4:]})" if c.startswith("iou@") else c)
        for c in columns
    ]
    return table(headings, rows, left=2)


def cam(paths: RunPaths) -> str:
    if not paths.cam.is_dir():
        return missing("Class activation maps", "cxrtool cam IMAGE --class C")
    parts = []
    # Maps of weights the run no longer holds (it was trained further) describe another model.
    for listing in ("cams.csv", "box_scores_per_image.csv"):
        if (paths.cam / listing).is_file():
            state, why = cam_status(paths.cam / listing, paths.root)
            if state == STALE:
                parts.append(note(why))
    if (frame := read_csv(paths.cam / "box_scores.csv")) is not None:
        parts.append("<h4>Box scores: does the map point into the drawn box?</h4>" + box_scores(frame))
    found = pngs(paths.cam)
    if found:
        shown = found[:MAX_CAM_EXAMPLES]
        more = f" ({len(shown)} of {len(found)} shown; the rest in {paths.cam})" if len(found) > len(shown) else ""
        parts.append(
            f"<h4>Examples{esc(more)}</h4><div class=gallery>"
            + "".join(file_figure(p, p.stem, p.stem) for p in shown)
            + "</div>"
        )
    return "".join(parts) or missing("Class activation maps", "cxrtool cam IMAGE --class C")


def embed_scores(scores: dict[str, Any]) -> list[list[str]]:
    """One row per space and map: silhouette and k-NN accuracy (scores.json's `spaces`)."""
    rows = []
    for space, methods in (scores.get("spaces") or {}).items():
        for method, entry in (methods or {}).items():
            if isinstance(entry, dict):
                # `--split all` scores each split apart; the train split's latent scores are in-sample.
                for split, part in (entry.get("by_split") or {entry.get("scored_on"): entry}).items():
                    rows.append(
                        [
                            str(space),
                            "full (PCA)" if method == "full" else str(method),
                            f"{split} (in-sample)" if part.get("in_sample") else str(split),
                            fmt(part.get("silhouette")),
                            fmt(part.get("knn_accuracy")),
                        ]
                    )
    return rows


def near_covid(near: dict[str, Any]) -> str:
    rows = []
    for space, pairs in near.items():
        items = [p for p in pairs or [] if isinstance(p, (list, tuple)) and len(p) == 2]
        rows.append([str(space), ", ".join(f"{name} ({fmt_sig(d)})" for name, d in items) or "-"])
    return table(["Space", "Findings nearest COVID-19, nearest first (centroid distance)"], rows)


def embed(paths: RunPaths) -> str:
    if not paths.embed.is_dir():
        return missing("Embedding maps", "cxrtool embed --method all")
    parts = []
    scores: dict[str, Any] = {}
    if (paths.embed / "scores.json").is_file():
        try:
            loaded = read_json(paths.embed / "scores.json")
            scores = loaded if isinstance(loaded, dict) else {}
        except CxrError as exc:
            parts.append(note(f"Cluster scores not shown: {exc}"))
    if rows := embed_scores(scores):
        chance = scores.get("knn_chance")
        extra = f"; a k-NN accuracy of {fmt(chance)} is chance (the commonest finding's share)" if chance else ""
        parts.append(
            f"<h4>Cluster scores on {fmt_count(scores.get('n_images'))} images{esc(extra)}</h4>"
            + table(["Space", "Map", "Scored on", "Silhouette", "k-NN accuracy"], rows, left=3)
        )
    if scores.get("near_covid"):
        parts.append("<h4>Findings nearest COVID-19</h4>" + near_covid(scores["near_covid"]))
    found = pngs(paths.embed)
    if found:
        parts.append("<div class=gallery>" + "".join(file_figure(p, p.stem, p.stem) for p in found) + "</div>")
    return "".join(parts) or missing("Embedding maps", "cxrtool embed --method all")
