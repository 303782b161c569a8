"""`cxrtool cam`: maps for image files or a prepared cache's split, written into RUN/cam/.

For every image and chosen class: `overlays/<image>_<class>_<method>.png` (the X-ray under the
map, the class and its probability in the title) and `maps/<image>_<class>_<method>.npy` (the
raw map at cache resolution, float32; CAM values are in logit units). `cams.csv` indexes what the
folder holds. Inputs that share a file name (`a/img.png`, `b/img.png`) get a short hash of their
path in their maps' names, so no map replaces another. With boxes (`--boxes FILE`, or a cache's
own boxes.csv) each map of a class that
has a box on its image is scored: `box_scores_per_image.csv` and `box_scores.csv` (per class and
overall: pointing-game hit rate, IoU at each threshold). Classes are `--class` names, the `--top`
K most probable, or by default each image's boxed classes (when there are boxes) or its most
probable class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_write, atomic_write_text
from ..config import parse_list, require
from ..data.cache import SPLITS, PreparedData
from ..data.labels import needs_any_class, needs_classes, resolve_class
from ..data.lineage import ALLOW_SEEN, Lineage, check_data_hash, check_seen, read_lineage
from ..device import resolve_device
from ..errors import CxrError
from ..inference import InferenceEngine, resolve_data
from ..models.checkpoint import LoadedModel, open_model, resolve_model_source
from ..models.provenance import weights_sha256
from ..optionspec import option
from ..owned import OwnedFolder
from ..progress import info, print_table, result, warn
from ..run_locks import holds_locks, own_output
from ..runs import RunNeed, RunPaths, run_of
from ..safeio import csv_text, restore_cells
from .baselines import PAIRED, patient_finder, with_prior
from .boxes import DEFAULT_THRESHOLDS, boxes_by_image, clean_boxes, read_box_file, score_map, summarise
from .images import CamImages, cache_images, file_images
from .maps import METHODS, feature_grid, low_res_maps, upsample
from .overlay import save_overlay

INDEX_NAME = "cams.csv"
SCORES_NAME = "box_scores.csv"
PER_IMAGE_NAME = "box_scores_per_image.csv"
SKIPPED_NAME = "skipped.csv"
TABLE_ROWS_MAX = 20  # list each map on the console up to this many


@dataclass
class CamConfig:
    inputs: list[Path] = field(default_factory=list)  # image files and folders; none: a cache split
    run: Path | None = option(None, help="Run directory or checkpoint folder (default: the newest run under ./runs).")
    classes: list[str] = option(
        default_factory=list,
        help="Class to map (repeat, or comma-separate). Default: the image's boxed classes with boxes, else its most probable class.",
        flags=("--class", "-c"),
    )
    top: int | None = option(None, help="Map the K most probable classes of each image.")
    method: str = option(
        "cam",
        help="cam (default; the head's weights over the last feature map), gradcam or gradcam++.",
        choices=METHODS,
    )
    out: Path | None = option(None, help="Output folder (default RUN/cam).")
    data: Path | None = option(
        None, help="Prepared cache to map instead of files (default, when no files are given: the run's data)."
    )
    split: str = option("test", help="Cache split: train, val, test (default) or all.", choices=(*SPLITS, "all"))
    max_images: int | None = option(None, help="Map at most this many images.")
    boxes: Path | None = option(
        None,
        help="Score maps against boxes: NIH BBox_List_2017.csv or a cache's boxes.csv (default with a cache: its own boxes).",
    )
    thresholds: list[float] = option(
        default_factory=lambda: list(DEFAULT_THRESHOLDS),
        help="IoU thresholds as fractions of the map's range (default 0.3,0.5,0.7).",
        type=str,
    )
    batch_size: int = option(32, help="Images per batch (default 32).")
    device: str = option("auto", help="auto (default), cpu, cuda or mps.")
    checkpoint: str = option("best", help="best (default) or last.", choices=("best", "last"))
    align: bool = option(
        True,
        help="Place feature cells at their receptive-field centres (default) or resize plainly.",
        flags=("--align/--no-align",),
    )
    overlays: bool = option(True, help="Write overlay PNGs (default on).", flags=("--overlays/--no-overlays",))
    maps: bool = option(True, help="Write raw maps as .npy (default on).", flags=("--maps/--no-maps",))
    overwrite: bool = option(False, help="Replace maps and scores already in the output folder.")
    allow_seen: bool = option(
        False,
        help="Score images the run (or a run it was finetuned from) trained or validated on, labelled in-sample.",
    )

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.classes = parse_list(self.classes, "--class") if self.classes else []
        require(self.method in METHODS, f"--method: unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        require(not (self.classes and self.top is not None), "--class and --top: give one of them, not both")
        require(self.top is None or self.top >= 1, f"--top: must be at least 1, got {self.top}")
        require(not (self.inputs and self.data is not None), "give image files or --data DIR, not both")
        require(
            self.split in (*SPLITS, "all"),
            f"--split: unknown split {self.split!r}; choose one of {', '.join(SPLITS)} or all",
        )
        require(
            self.max_images is None or self.max_images >= 1, f"--max-images: must be at least 1, got {self.max_images}"
        )
        require(self.batch_size >= 1, f"--batch-size: must be at least 1, got {self.batch_size}")
        require(self.checkpoint in ("best", "last"), f"--checkpoint: choose best or last, got {self.checkpoint!r}")
        try:
            raw = parse_list(
                self.thresholds if isinstance(self.thresholds, str) else [str(t) for t in self.thresholds],
                "--thresholds",
            )
            self.thresholds = [float(t) for t in raw]
        except ValueError:
            raise CxrError(
                f"--thresholds: give numbers between 0 and 1 such as 0.3,0.5,0.7, got {self.thresholds!r}"
            ) from None
        require(
            all(0 < t <= 1 for t in self.thresholds), f"--thresholds: each must be in (0, 1], got {self.thresholds}"
        )
        require(
            self.overlays or self.maps or self.boxes is not None or not self.inputs,
            "--no-overlays and --no-maps together write nothing; give --boxes to score maps",
        )
        for name in ("run", "out", "data", "boxes"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))


@dataclass
class CamInputs:
    """What one `cam` call reads, opened at its door (`resolve_cam`)."""

    model: LoadedModel
    run: Path | None  # the run the model belongs to (its data and lineage); None: a loose checkpoint folder
    lineage: Lineage
    given: list[int]  # the --class names, as the model's output columns
    images: CamImages
    data: PreparedData | None  # the cache mapped; None for image files
    seen_entry: dict  # the lineage entry of the images mapped (check_seen)
    seen: np.ndarray  # which images the lineage trained or validated on
    boxes: dict | None  # {id: {class: [boxes]}} of the model's classes; None: no boxes in play
    prior: tuple  # (box table, size, patient finder) for the prior pointer

    @property
    def default_out(self) -> Path:
        """RUN/cam, or SOURCE/cam for a checkpoint folder outside a run."""
        return RunPaths(self.run).cam if self.run is not None else self.model.source / "cam"


def _need(cfg: CamConfig) -> tuple[RunNeed | None, PreparedData | None]:
    """What the model must output, so that no run given picks the newest run that can answer (and
    the cache opened to say so, read again by nothing)."""
    if cfg.classes:
        return needs_classes(list(cfg.classes)), None
    if cfg.data is not None and not cfg.inputs:
        data = PreparedData(cfg.data)
        return needs_any_class(data.labels, f"a label of {cfg.data}"), data
    return None, None


def resolve_cam(cfg: CamConfig) -> CamInputs:
    """Open the model, the images, their lineage check and the boxes; refuse (one line) what cannot be mapped."""
    device = resolve_device(cfg.device)
    need, data = _need(cfg) if cfg.run is None else (None, None)
    model = open_model(resolve_model_source(cfg.run, need=need), cfg.checkpoint, device)
    model.announce()
    labels = model.labels
    given = [resolve_class(c, labels) for c in cfg.classes]  # unknown names fail before any work
    if cfg.boxes is not None:
        _refuse_boxes_of_other_classes(cfg.boxes, read_box_file(cfg.boxes, model.cache_size), labels)
    run_dir = run_of(model.source)  # a run, or RUN/checkpoints/best
    lineage = read_lineage(run_dir)
    if cfg.inputs:
        images, data = file_images(cfg.inputs, cfg.max_images, model.cache_size), None
    else:
        if cfg.data is None and run_dir is None:
            raise CxrError(f"{cfg.run}: a checkpoint folder records no data; pass --data DIR or image files")
        if cfg.data is None:
            data = resolve_data(None, run_dir)
            check_data_hash(run_dir, data, lineage)
        elif data is None:
            data = PreparedData(cfg.data)
        images = cache_images(data, lineage, cfg.split)
    seen_entry, seen = check_seen(lineage, images.keys, cfg.allow_seen, f"cam {model.source}: {images.what}")
    boxes, box_table = _load_boxes(cfg, images.size, data, labels)
    # The prior pointer learns from every box of the table, leaving each scored image's patient out.
    patients = dict(zip(data.index["id"].astype(str), data.index["patient"].astype(str))) if data is not None else None
    prior = (box_table, images.size, patient_finder(patients))
    return CamInputs(model, run_dir, lineage, given, images, data, seen_entry, seen, boxes, prior)


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)

    atomic_write(path, write)


class _Names:
    """The files this call writes: an earlier call's need --overwrite, another command's are never replaced,
    and no name is written twice in one call (two maps never share a file)."""

    def __init__(self, owned: OwnedFolder, overwrite: bool):
        self.owned, self.overwrite, self.taken = owned, overwrite, set()

    def claim(self, path: Path) -> Path:
        if path in self.taken:
            raise CxrError(f"{path}: two maps of this call would share this file name; map the images in two calls")
        self.taken.add(path)
        return self.owned.check_replace(path, self.overwrite)


@holds_locks
def run_cam(cfg: CamConfig) -> dict[str, Any]:
    """Make, save and (with boxes) score the maps `cfg` asks for; returns what was written.

    Keys: out, index (cams.csv), overlays and maps (lists of paths), pairs (one row per map:
    id, class, method, probability, label, overlay, map), images (how many were mapped), skipped
    ((path, reason) pairs), and, when boxes were scored, box_scores (per class + 'all'),
    per_image, box_scores_csv and per_image_csv; otherwise those are None.
    """
    inputs = resolve_cam(cfg)  # everything below reads this, never the run's files
    model, labels, images, data, boxes = inputs.model, inputs.model.labels, inputs.images, inputs.data, inputs.boxes
    given, seen, image_size = inputs.given, inputs.seen, inputs.model.image_size
    # Every map records the weights it was made of, so a report of a run trained further since
    # can say which maps describe a model that is no longer there (models/provenance.cam_status).
    made_of = {"checkpoint": model.which, "weights_sha256": weights_sha256(model.folder)}
    mode = "given" if given else ("top" if cfg.top else ("boxes" if boxes is not None else "top"))
    top = cfg.top or 1
    positions = np.arange(len(images.ids))
    if mode == "boxes":
        positions = np.array([p for p in positions if boxes.get(images.ids[p])], dtype=int)
        if not len(positions):
            raise CxrError(
                f"{cfg.boxes or 'the cache boxes'}: no box falls on any of the {len(images.ids)} images "
                "of a class the model knows; check the ids match the file names, or pass --class/--top"
            )
    if cfg.max_images is not None and data is not None:
        positions = positions[: cfg.max_images]
    if (
        cfg.boxes is not None
        and mode == "given"
        and not any(labels[c] in boxes.get(images.ids[p], {}) for p in positions for c in given)
    ):
        # Box scoring was asked for and no map would be scored: refused before anything is written.
        raise CxrError(
            f"{cfg.boxes}: no box of {', '.join(labels[c] for c in given)} falls on the {len(positions)} image(s) "
            "mapped, so nothing would be scored; check --class against the boxes"
        )
    grid = feature_grid(model.network, image_size) if cfg.align else None
    engine = InferenceEngine(model.network, model.device, image_size)
    chosen: dict[int, list[int]] = {}
    if mode == "top" and cfg.boxes is not None:
        # --top K takes its classes from the model's output, so whether any map will be scored is
        # known only after a forward pass: it is made first (one extra pass, only with --top and
        # --boxes) so that a call that would score nothing is refused before anything is written.
        chosen = _top_classes(engine, images.dataset, positions, cfg.batch_size, top)
        if not any(labels[c] in boxes.get(images.ids[p], {}) for p, cs in chosen.items() for c in cs):
            raise CxrError(
                f"{cfg.boxes}: none of the top {top} classes of the {len(positions)} image(s) mapped has a box on its "
                "image, so nothing would be scored; pass --class with a boxed class, or no --top to map each "
                "image's boxed classes"
            )
    # The output folder is claimed only now: a call refused above writes nothing into the run.
    out = cfg.out or inputs.default_out
    owned = own_output(out, "CAM folder", "cam")  # a folder holding a file no cxrtool command wrote is refused
    for fname in (INDEX_NAME, SKIPPED_NAME):  # rewritten by every call, but only cam's own
        owned.check_replace(out / fname, overwrite=True)
    names = _Names(owned, cfg.overwrite)

    def classes_of(position: int, probs: np.ndarray) -> list[int]:
        if mode == "given":
            return given
        if mode == "boxes":
            return [labels.index(c) for c in boxes.get(images.ids[position], {})]
        if position in chosen:
            return chosen[position]
        return [int(i) for i in np.argsort(-probs, kind="stable")[:top]]

    def name(position: int, cls: int) -> str:
        return (
            f"{images.stems[position]}_{re.sub(r'[^A-Za-z0-9._-]+', '_', labels[cls])}_{cfg.method.replace('+', 'p')}"
        )

    scoring = boxes is not None
    if scoring:
        for fname in (SCORES_NAME, PER_IMAGE_NAME):
            owned.check_replace(out / fname, cfg.overwrite)
    if mode == "given":  # every name is known now: refuse before mapping anything
        check = _Names(owned, cfg.overwrite)
        for p in positions:
            for c in given:
                if cfg.overlays:
                    check.claim(out / "overlays" / f"{name(p, c)}.png")
                if cfg.maps:
                    check.claim(out / "maps" / f"{name(p, c)}.npy")

    pairs, scores = [], []
    read = 0
    try:
        # One engine pass: its loader reads (or decodes) the batches and its bar counts them.
        for batch in engine.batches(
            images.dataset,
            cfg.batch_size,
            positions=positions,
            description=f"{cfg.method} maps",
            skipped=images.skipped,
        ):
            if batch.x is None:
                continue
            chunk, x = batch.positions, batch.x
            read += len(chunk)
            probs = engine.forward(x, "probs").cpu().numpy() if mode == "top" and not chosen else None
            wanted = [classes_of(int(p), probs[j] if probs is not None else None) for j, p in enumerate(chunk)]
            union = sorted({c for cs in wanted for c in cs})
            if not union:
                continue
            with engine.autocast():  # CAM needs the cam layer's activations (and gradients): its own pass
                mb = low_res_maps(engine.model, x, union, cfg.method)
            probs = mb.probs.cpu().numpy()
            picks = [(j, union.index(c), c) for j, cs in enumerate(wanted) for c in cs]
            low = torch.stack([mb.maps[j, k] for j, k, _ in picks]).unsqueeze(1)
            full = upsample(low, images.size, grid, image_size)[:, 0].cpu().numpy()
            pixels = batch.images.numpy()
            for (j, _, c), cam in zip(picks, full):
                p = int(chunk[j])
                label, prob = labels[c], float(probs[j, c])
                own_boxes = boxes.get(images.ids[p], {}).get(label, []) if scoring else []
                row = {
                    "id": images.ids[p],
                    "class": label,
                    "method": cfg.method,
                    "probability": round(prob, 6),
                    "label": images.truth(p, label) if images.truth else float("nan"),
                    "overlay": "",
                    "map": "",
                    "in_sample": int(seen[p]),
                    **made_of,
                }
                if cfg.maps:
                    path = names.claim(out / "maps" / f"{name(p, c)}.npy")
                    _atomic_npy(path, cam.astype(np.float32))
                    row["map"] = str(path)
                if cfg.overlays:
                    path = names.claim(out / "overlays" / f"{name(p, c)}.png")
                    seen_note = f" · seen in training ({ALLOW_SEEN})" if seen[p] else ""
                    save_overlay(
                        path,
                        pixels[j],
                        cam,
                        f"{label}: p = {prob:.2f}",
                        f"{images.ids[p]} · {cfg.method}{seen_note}",
                        own_boxes,
                    )
                    row["overlay"] = str(path)
                pairs.append(row)
                if own_boxes:
                    scores.append(
                        {
                            **{k: row[k] for k in ("id", "class", "method", "probability", "label", "in_sample")},
                            "boxes": len(own_boxes),
                            **score_map(cam, own_boxes, cfg.thresholds),
                            **made_of,
                        }
                    )
            del mb, low, full  # free the batch's maps before the next one
    except BaseException:
        # A halfway stop (Ctrl-C, a full disk, a name already taken) still leaves an index of the maps
        # written so far, so no map in the folder is unlisted.
        if pairs:
            _write_index(out, pairs)
        raise

    for path, reason in images.skipped[:10]:
        warn(f"{path}: skipped ({reason})")
    if len(images.skipped) > 10:
        warn(f"... and {len(images.skipped) - 10} more skipped inputs (listed in {out / SKIPPED_NAME})")
    if not read:
        first = f" ({images.skipped[0][0]}: {images.skipped[0][1]})" if images.skipped else ""
        raise CxrError(f"none of the {len(positions)} input(s) could be read as an X-ray image{first}")
    return {**_finish(cfg, out, pairs, scores, images, scoring, read, inputs.prior), "lineage": inputs.seen_entry}


def _top_classes(
    engine: InferenceEngine, dataset, positions: np.ndarray, batch_size: int, top: int
) -> dict[int, list[int]]:
    """Each position's `top` most probable classes, from a forward pass without maps."""
    chosen: dict[int, list[int]] = {}
    # Unreadable files are listed by the mapping pass that follows; this pass only skips them.
    for batch in engine.batches(dataset, batch_size, positions=positions, description="top classes", skipped=[]):
        if batch.x is None:
            continue
        probs = engine.forward(batch.x, "probs").cpu().numpy()
        for j, p in enumerate(batch.positions):
            chosen[int(p)] = [int(i) for i in np.argsort(-probs[j], kind="stable")[:top]]
    return chosen


def _refuse_boxes_of_other_classes(where: Path, table: pd.DataFrame, labels: list[str]) -> None:
    # Maps of other classes would be written and none scored: refused before the output folder
    # is claimed, so nothing is written into the run.
    if len(table) and not table["label"].isin(labels).any():
        raise CxrError(
            f"{where}: none of its boxes is of a class the model outputs ({', '.join(labels)}), so nothing "
            f"would be scored; give a run trained on {', '.join(sorted(set(table['label'])))} with --run"
        )


def _load_boxes(cfg: CamConfig, size: int, data, labels: list[str]) -> tuple[dict | None, pd.DataFrame | None]:
    """({id: {class: [boxes]}}, the box table) for classes the model knows, or (None, None) when
    no boxes are in play."""
    if cfg.boxes is not None:
        table = read_box_file(cfg.boxes, size)
        where = str(cfg.boxes)
    elif data is not None and data.boxes() is not None:
        table = clean_boxes(data.boxes())
        where = str(data.root / "boxes.csv")
        if not table["label"].isin(labels).any():
            # A cache whose boxes.csv holds none of the model's classes (or no row at all) has
            # nothing to score: map each image's most probable class, as for a cache without boxes.
            return None, None
        info(f"scoring maps against the cache's boxes ({where})")
    else:
        return None, None
    unknown = sorted(set(table["label"]) - set(labels))
    if unknown:
        info(f"{where}: boxes of {', '.join(unknown)} are not scored (the model has no such class)")
    table = table[table["label"].isin(labels)]
    return boxes_by_image(table), table


INDEX_COLUMNS = ["id", "class", "method", "probability", "label", "overlay", "map"]
MADE_OF = ["checkpoint", "weights_sha256"]  # the weights each map was made of (not required of older files)


def _write_index(out: Path, pairs: list[dict]) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Write cams.csv: this call's rows and an earlier call's rows for maps this call did not rewrite."""
    out.mkdir(parents=True, exist_ok=True)
    # in_sample (data.lineage) is not required of an earlier index: older cams.csv files lack it.
    frame = pd.DataFrame(pairs, columns=[*INDEX_COLUMNS, "in_sample", *MADE_OF])
    index_path = out / INDEX_NAME
    frame_all = frame
    if index_path.is_file() and len(frame):
        old = restore_cells(pd.read_csv(index_path, dtype={"id": str}, encoding_errors="surrogateescape"))
        key = ["id", "class", "method"]
        if not set(INDEX_COLUMNS) <= set(old.columns):
            raise CxrError(
                f"{index_path}: is not a cams.csv cam wrote (no {', '.join(key)} columns); choose another --out"
            )
        # An earlier row goes when this call rewrote its file (two inputs sharing a file name have
        # one id and two maps, so the id alone does not say which row a map replaces).
        written = (set(frame["map"]) | set(frame["overlay"])) - {""}
        files = old[["map", "overlay"]].astype(object).fillna("").astype(str)
        no_file = (files["map"] == "") & (files["overlay"] == "")
        same_key = old.set_index(key).index.isin(frame.set_index(key).index)
        old = old[~(files["map"].isin(written) | files["overlay"].isin(written) | (no_file & same_key))]
        frame_all = pd.concat([old, frame], ignore_index=True)
    if len(frame_all):
        atomic_write_text(index_path, csv_text(frame_all, index=False))
    return index_path, frame, frame_all


def _finish(
    cfg: CamConfig,
    out: Path,
    pairs: list[dict],
    scores: list[dict],
    images: CamImages,
    scoring: bool,
    mapped: int,
    prior: tuple,
) -> dict[str, Any]:
    index_path, frame, frame_all = _write_index(out, pairs)
    if images.skipped:
        atomic_write_text(
            out / SKIPPED_NAME, csv_text(pd.DataFrame(images.skipped, columns=["path", "reason"]), index=False)
        )

    summary = per_image = None
    scores_csv = per_image_csv = None
    if scoring:
        per_image = with_prior(pd.DataFrame(scores), *prior)
        summary = summarise(per_image, cfg.thresholds)
        scores_csv, per_image_csv = out / SCORES_NAME, out / PER_IMAGE_NAME
        summary.insert(1, "method", cfg.method)
        atomic_write_text(scores_csv, csv_text(summary.round(6), index=False))
        atomic_write_text(per_image_csv, csv_text(per_image.round(6), index=False))
        if per_image.empty and cfg.boxes is not None:
            # --top K chose classes without a box: known only after the maps were made.
            raise CxrError(
                f"{cfg.boxes}: no map was of a class with a box on its image, so nothing was scored "
                f"(the maps are in {out}); pass --class with a boxed class, or no --top to map each image's boxed classes"
            )
        if per_image.empty:
            warn("no map was of a class with a box on its image: nothing scored (check --class against the boxes)")
        else:
            iou_cols = [c for c in summary.columns if c.startswith("iou@")]

            def ci(r: dict, k: str, sign: str = "") -> str:
                return f"{r[k]:{sign}.3f} [{r[k + '_low']:{sign}.2f}, {r[k + '_high']:{sign}.2f}]"

            print_table(
                f"Box scores ({cfg.method}): pointing-game hit rate [95% interval] beside a pointer aimed where "
                "other patients' boxes are densest (prior) and a uniformly random one (chance); the paired "
                "difference from the prior on the same maps; mean IoU",
                [
                    "class",
                    "n",
                    "hit rate",
                    "prior",
                    "chance",
                    "hit - prior",
                    *[c.replace("iou", "IoU") for c in iou_cols],
                ],
                [
                    [
                        r["class"],
                        r["images"],
                        ci(r, "pointing_hit_rate"),
                        ci(r, "prior_hit_rate"),
                        ci(r, "box_fraction"),
                        ci(r, PAIRED, "+"),
                        *[f"{r[c]:.3f}" for c in iou_cols],
                    ]
                    for r in summary.to_dict("records")
                ],
            )
    if 0 < len(frame) <= TABLE_ROWS_MAX:
        print_table(
            f"Class activation maps ({cfg.method})",
            ["image", "class", "probability", "written"],
            [
                [
                    r["id"],
                    r["class"],
                    f"{r['probability']:.3f}",
                    Path(r["overlay"] or r["map"]).name if (r["overlay"] or r["map"]) else "-",
                ]
                for r in frame.to_dict("records")
            ],
        )
    result(
        f"{len(frame)} map(s) of {mapped} image(s) written to {out}"
        + (f"; box scores in {scores_csv}" if scores_csv else "")
    )
    return {
        "out": out,
        "index": index_path if len(frame_all) else None,
        "pairs": frame,
        "overlays": [Path(p) for p in frame["overlay"] if p],
        "maps": [Path(p) for p in frame["map"] if p],
        "images": mapped,
        "skipped": images.skipped,
        "box_scores": summary,
        "per_image": per_image,
        "box_scores_csv": scores_csv,
        "per_image_csv": per_image_csv,
    }
