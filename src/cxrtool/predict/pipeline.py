"""`cxrtool predict`: a trained model's answer for X-ray files on disk.

PNG, JPEG and DICOM files (folders are walked for them) are decoded, by the inference engine's
loader workers a batch at a time, and preprocessed exactly as
`cxrtool prepare` did for the cache the model was trained on (the card's
`preprocessing.cache_size`: centre square crop and resize, MONOCHROME1 DICOM inverted), then
brought to the network's input size by the same `to_model_input` as in training. The result is a
probability per label and, when `cxrtool evaluate` has chosen operating points on the validation
split (RUN/eval*/thresholds.json, or `--thresholds FILE`), a positive/negative call per label;
predict says which thresholds it used and where they came from (`cxrtool.evaluate.thresholds`).
A file that cannot be read is reported and skipped; the command fails only when none could be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_write_text, to_json
from ..config import require
from ..data.lineage import Lineage, file_keys, read_lineage, seen_mask
from ..data.pool import cap_workers
from ..data.walk import collect_image_files
from ..device import resolve_device
from ..errors import CxrError, InputsMissing
from ..evaluate.thresholds import find_thresholds, pick_operating_point
from ..inference import ArrayDataset, FileDataset, InferenceEngine, predictions_table, write_predictions
from ..models.checkpoint import LoadedModel, open_model, resolve_model_source
from ..optionspec import option
from ..owned import claim_file
from ..progress import info, print_table, warn
from ..run_locks import holds_locks
from ..runs import run_of

OUT_SUFFIXES = (".csv", ".json")
TABLE_LABELS_MAX = 8  # more labels than this: the printed table lists positives and the top three


@dataclass
class PredictConfig:
    inputs: list[Path] = field(default_factory=list)  # image files and folders
    run: Path | None = option(None, help="Run directory or checkpoint folder (default: the newest run).")
    out: Path | None = option(None, help="Write the predictions to FILE.csv or FILE.json.")
    tta: bool = option(False, help="Average each prediction with its horizontal flip.", flags=("--tta/--no-tta",))
    device: str = option("auto", help="auto, cpu, cuda or mps.")
    batch_size: int = option(32, help="Images per batch.")
    workers: int | None = option(None, help="Processes decoding the files (default: every core).")
    checkpoint: str = option("best", help="best or last.", choices=("best", "last"))
    overwrite: bool = option(False, help="Replace an existing --out file.")
    thresholds: Path | None = option(
        None, help="A thresholds.json from cxrtool evaluate (default: the run's newest, chosen on val)."
    )
    operating_point: str = option("youden", help="youden, or the fixed-sensitivity point (e.g. sens90).")

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        if self.thresholds is not None:
            self.thresholds = Path(self.thresholds)
            require(
                self.thresholds.is_file(),
                f"--thresholds {self.thresholds}: file not found (a thresholds.json written by cxrtool evaluate)",
            )
        require(len(self.inputs) > 0, "give at least one image file or folder to predict")
        require(self.batch_size >= 1, f"--batch-size: must be at least 1, got {self.batch_size}")
        require(self.workers is None or self.workers >= 0, f"--workers: must be 0 or more, got {self.workers}")
        if self.workers is not None:
            self.workers = cap_workers(self.workers)
        require(self.checkpoint in ("best", "last"), f"--checkpoint: choose best or last, got {self.checkpoint!r}")
        if self.out is not None:
            self.out = Path(self.out)
            require(self.out.suffix.lower() in OUT_SUFFIXES, f"--out {self.out}: give a .csv or .json file name")
            require(
                not self.out.exists() or self.overwrite, f"--out {self.out}: exists; pass --overwrite to replace it"
            )
            require(_writable_folder(self.out.parent), f"--out {self.out}: cannot write into {self.out.parent}")


def _writable_folder(folder: Path) -> bool:
    """Whether files can be made in `folder` (or, if it does not exist yet, its nearest existing parent)."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def predict_arrays(
    model: torch.nn.Module, images: np.ndarray, image_size: int, device, tta: bool = False, batch_size: int = 32
) -> np.ndarray:
    """Probabilities (n, L) for preprocessed uint8 images (n, S, S), as in training."""
    engine = InferenceEngine(model, device, image_size, tta=tta)
    return engine.run(
        engine.batches(ArrayDataset(images), batch_size, workers=0), "probs", int(getattr(model, "num_labels", 0))
    )


@holds_locks
def predict_files(cfg: PredictConfig) -> pd.DataFrame:
    """Predict every readable file; returns one row per file (file, prob_<label>, pred_<label>).

    Files are decoded by the loader's worker processes and predicted a batch at a time, so memory
    stays flat however many files are given. `df.attrs["skipped"]` lists (path, reason) for inputs
    that could not be read, `df.attrs["thresholds"]` the operating points used ({} when no
    evaluation chose any) and `df.attrs["threshold_source"]` where they came from.
    """
    if cfg.out is not None:  # never a cache's or a run's own file, and another file only with --overwrite
        claim_file(cfg.out, "predict", cfg.overwrite)
    inputs = resolve_predict(cfg)  # everything below reads this, never the run's files
    model, labels, thresholds = inputs.model, inputs.model.labels, inputs.thresholds
    files, skipped = collect_image_files(cfg.inputs)
    engine = InferenceEngine(model.network, model.device, model.image_size, tta=cfg.tta)
    # Written in place: nothing long-lived is allocated per batch, so the heap does not
    # fragment around each batch's temporaries and the memory stays flat over any number of files.
    probs = np.zeros((len(files), len(labels)), dtype=np.float32)
    readable = np.zeros(len(files), dtype=bool)
    for batch in engine.batches(
        FileDataset(files, model.cache_size),
        cfg.batch_size,
        workers=cfg.workers,
        description="predict",
        skipped=skipped,
    ):
        if batch.x is not None:
            probs[batch.positions] = engine.forward(batch.x, "probs").cpu().numpy()
            readable[batch.positions] = True
    read = [f for f, ok in zip(files, readable) if ok]
    for path, reason in skipped:
        warn(f"{path}: skipped ({reason})")
    if not read:
        first = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise CxrError(f"none of the {len(files) or len(cfg.inputs)} input(s) could be read as an X-ray image{first}")
    keys: dict = {"file": [str(p) for p in read]}
    seen = _seen_files(inputs, read)
    if seen is not None:
        keys["in_sample"] = seen.astype(int)
    table = predictions_table(keys, labels, probs[readable], thresholds=thresholds)
    table["thresholds"] = inputs.origin["text"]
    table.attrs["skipped"] = skipped
    table.attrs["thresholds"] = thresholds
    table.attrs["threshold_source"] = inputs.origin
    table.attrs["labels"] = labels
    if cfg.out is not None:
        write_output(cfg.out, table)
        info(f"wrote {cfg.out}")
    show(table)
    return table


def fail_if_inputs_missing(cfg: PredictConfig, table: pd.DataFrame) -> None:
    """Exit status 1 (after the predictions were shown and written) when a named input does not exist."""
    missing = [str(p) for p in cfg.inputs if not Path(p).exists()]
    if missing:
        raise InputsMissing(
            f"{missing[0]}: not found ({len(missing)} of {len(cfg.inputs)} input(s) missing); "
            f"the {len(table)} readable image(s) were predicted"
        )


@dataclass
class PredictInputs:
    """What one `predict` call reads, opened at its door (`resolve_predict`)."""

    model: LoadedModel
    thresholds: dict[str, float]  # label -> operating point; {} when no evaluation chose any
    origin: dict  # where the thresholds come from (file, operating point, text)
    run: Path | None  # the run the model belongs to; None: a checkpoint folder outside a run
    lineage: Lineage | None  # its record of the images it trained and validated on


def resolve_predict(cfg: PredictConfig) -> PredictInputs:
    """Open the model, its thresholds (a bad --operating-point fails before any file is read) and its lineage."""
    device = resolve_device(cfg.device)  # a bad --device fails before the run is looked for
    model = open_model(resolve_model_source(cfg.run), cfg.checkpoint, device)
    model.announce()
    thresholds, origin = thresholds_for(cfg, model)
    run = run_of(model.source)
    return PredictInputs(model, thresholds, origin, run, read_lineage(run) if run is not None else None)


def thresholds_for(cfg: PredictConfig, model: LoadedModel) -> tuple[dict[str, float], dict]:
    """The operating points to call positives with, and where they come from (said on stderr)."""
    labels = model.labels
    path, doc, note = find_thresholds(model.source, model.folder, cfg.thresholds)
    if doc is None:
        # Thresholds of an evaluation of earlier weights are never used; say so even with --quiet.
        (warn if "earlier weights" in note else info)(f"thresholds: none; {note}")
        return {}, {"file": None, "text": "none (probabilities only)", "note": note}
    thresholds = pick_operating_point(doc, cfg.operating_point, labels, path)
    info(f"thresholds: {cfg.operating_point} {note}")
    return thresholds, {
        "file": str(path),
        "operating_point": cfg.operating_point,
        "chosen_on": doc.get("chosen_on"),
        "data": doc.get("data"),
        "data_hash": doc.get("data_hash"),
        "text": f"{cfg.operating_point} from {path} (chosen on {doc.get('chosen_on')})",
    }


def _seen_files(inputs: PredictInputs, files: list[Path]) -> np.ndarray | None:
    """Which files the run (or an ancestor) trained or validated on (their bytes' hash), when any.

    predict scores nothing, so these are not refused: they are said and marked `in_sample`.
    """
    run, lineage = inputs.run, inputs.lineage
    if run is None or lineage is None:
        return None
    mask = seen_mask(lineage, file_keys(files)) if lineage.recorded else None
    if mask is None or not mask.any():
        return None
    warn(f"{int(mask.sum())} of {len(files)} files were trained or validated on by {run}'s lineage: in_sample = 1")
    return mask


def write_output(path: Path, table: pd.DataFrame) -> None:
    """CSV (one row per file) or JSON (records with probabilities, calls, and the skipped files)."""
    if path.suffix.lower() == ".csv":
        write_predictions(path, table)
        return
    labels, thresholds = table.attrs["labels"], table.attrs["thresholds"]
    records = []
    for row in table.to_dict("records"):
        rec = {"file": row["file"], "probabilities": {l: row[f"prob_{l}"] for l in labels}}
        if thresholds:
            rec["positive"] = {l: bool(row[f"pred_{l}"]) for l in thresholds}
        if "in_sample" in row:
            rec["in_sample"] = bool(row["in_sample"])
        records.append(rec)
    origin = {k: v for k, v in table.attrs["threshold_source"].items() if k != "text"}
    payload = {
        "thresholds": {**origin, "labels": thresholds},
        "predictions": records,
        "skipped": [{"file": f, "reason": r} for f, r in table.attrs["skipped"]],
    }
    atomic_write_text(path, to_json(payload))


def show(table: pd.DataFrame) -> None:
    labels, thresholds = table.attrs["labels"], table.attrs["thresholds"]

    def cell(row, label):
        text = f"{row[f'prob_{label}']:.3f}"
        if label in thresholds:
            text += " +" if row[f"pred_{label}"] else " -"
        return text

    rows = table.to_dict("records")
    if len(labels) <= TABLE_LABELS_MAX:
        origin = table.attrs["threshold_source"]["text"]
        print_table(
            "Predictions" + (f" (+/-: {origin})" if thresholds else " (probabilities only: no thresholds)"),
            ["file", *labels],
            [[Path(r["file"]).name, *[cell(r, l) for l in labels]] for r in rows],
        )
        return
    out = []
    for r in rows:
        top = sorted(labels, key=lambda l: -r[f"prob_{l}"])[:3]
        positives = [l for l in thresholds if r[f"pred_{l}"]]
        out.append(
            [
                Path(r["file"]).name,
                ", ".join(f"{l} {r[f'prob_{l}']:.2f}" for l in top),
                ", ".join(positives) if thresholds else "(no thresholds: run evaluate)",
            ]
        )
    title = f"Predictions (positive: {table.attrs['threshold_source']['text']})" if thresholds else "Predictions"
    print_table(title, ["file", "top 3", "positive"], out)
