"""`run_embed`: from a run and its data to maps, plots and scores in RUN/embed/.

The steps: pick the images (a split, then a stratified seeded sample), compute each feature space
(latent: the network's pooled final-convolution output; pixels: downsampled images), reduce each
by PCA, score the reduced space, then for each method make a 2-D map, score it, and write its
coordinates and scatter; the SOM adds its U-matrix panels. A class-centroid distance table per
space says which findings lie near each other (and near COVID-19). `scores.json` collects the
numbers; running again with another method adds to it when the images and features are the same.

The scores are computed on images the network never trained on: `--split test` by default. With
`--split all` every split is mapped together (one map), but each score is computed per split,
among that split's images only (`by_split`); the headline numbers are the test split's, and the
train split's latent scores are marked `in_sample` (the network has seen those images, so their
structure is partly memorisation).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..atomic import atomic_write_json, atomic_write_text, read_json
from ..config import dump_config
from ..data.cache import PreparedData
from ..data.labels import COVID_LABEL
from ..data.lineage import (
    Lineage,
    check_data_hash,
    check_seen,
    content_keys,
    fold_split_names,
    read_lineage,
    scored_rows,
    seen_mask,
)
from ..device import resolve_device
from ..errors import CxrError
from ..formatting import fmt
from ..inference import resolve_data
from ..models.checkpoint import LoadedModel, open_model
from ..owned import OwnedFolder
from ..progress import info, print_table, result
from ..run_locks import holds_locks, own_output
from ..runs import RunPaths, resolve_run
from ..safeio import csv_text
from .config import EmbedConfig
from .features import (
    label_strings,
    latent_features,
    negative_classes,
    pixel_features,
    primary_findings,
    reduce_pca,
    stratified_sample,
)
from .maps import SMALL_FOR_THREADS, Neighbours, make_map
from .plots import class_colours, class_order, scatter_plot, som_plot
from .scores import centroid_distances, chance_accuracy, nearest_findings, structure_scores
from .som import neuron_majority, neuron_share

SCORES = "scores.json"
METHOD_TITLES = {"som": "SOM", "tsne": "t-SNE", "umap": "UMAP"}


def output_files(space: str, method: str) -> list[str]:
    names = [f"coords_{space}_{method}.csv", f"scatter_{space}_{method}.png"]
    return [*names, f"som_{space}.png"] if method == "som" else names


@dataclass
class EmbedInputs:
    """What one `embed` call reads, opened at its door (`resolve_embed`)."""

    run: Path | None  # None: a pixels-only map of a cache
    data: PreparedData
    out: Path
    lineage: Lineage | None  # read when the latent space is mapped (which images the network saw)
    model: LoadedModel | None  # loaded when the latent space is mapped


def resolve_embed(cfg: EmbedConfig) -> EmbedInputs:
    """The run, its data, the output folder, and for the latent space the lineage and the model.

    A pixels-only map of a cache needs no run.
    """
    if cfg.run is None and cfg.data is not None and cfg.spaces == ("pixels",):
        if cfg.out is None:
            raise CxrError("--out: a pixels-only map without --run needs an output folder (--out DIR)")
        return EmbedInputs(None, PreparedData(cfg.data), Path(cfg.out), None, None)
    run = resolve_run(cfg.run)
    data = resolve_data(cfg.data, run)
    latent = "latent" in cfg.spaces
    lineage = read_lineage(run) if latent else None
    if cfg.data is None and latent:
        check_data_hash(run, data, lineage)
    out = Path(cfg.out) if cfg.out is not None else RunPaths(run).embed
    model = open_model(run, cfg.checkpoint, resolve_device(cfg.device)) if latent else None
    return EmbedInputs(run, data, out, lineage, model)


def _check_outputs(out: Path, cfg: EmbedConfig, owned: OwnedFolder) -> None:
    """Refuse before any work: an earlier map without --overwrite, or any file another command wrote."""
    for name in (SCORES, "config.yaml"):  # merged and rewritten by every embed, but only embed's own
        owned.check_replace(out / name, overwrite=True)
    for space in cfg.spaces:
        for method in cfg.methods:
            for name in output_files(space, method):
                if (out / name).exists() and not cfg.overwrite:
                    raise CxrError(
                        f"{out / name}: exists from an earlier embed; pass --overwrite to replace it or choose another --out"
                    )
                owned.check_replace(out / name, overwrite=True)


def _fingerprint(ids: np.ndarray, cfg: EmbedConfig, run: Path | None, data: PreparedData) -> str:
    """Identifies the images and feature settings, so scores from separate calls are only merged when comparable."""
    key = (
        "\n".join(map(str, ids))
        + f"|{cfg.pca}|{cfg.pixel_size}|{cfg.checkpoint}|{cfg.image_size}|{cfg.seed}|{cfg.multi_label}|{cfg.knn}"
        + f"|{cfg.split}|{run}|{data.data_hash}"
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _compute_space(space: str, inputs: EmbedInputs, rows: np.ndarray, cfg: EmbedConfig) -> np.ndarray:
    data, model = inputs.data, inputs.model
    if space == "pixels":
        return pixel_features(data, rows, cfg.pixel_size, batch_size=max(cfg.batch_size, 256))
    image_size = int(cfg.image_size or model.card.get("image_size") or data.size)
    return latent_features(model.network, data, rows, image_size, cfg.batch_size, model.device)


SPLIT_ORDER = ("test", "val", "train")


def _in_sample(split: str, space: str, images: SampledImages) -> bool:
    """Whether the network saw some of the split's images (by its lineage: a run that records none
    is taken to have fitted its train split); pixels involve no network, so nothing is in-sample."""
    if space != "latent":
        return False
    if images.seen is None:
        return split == "train"
    return bool(images.seen[images.splits == split].any()) if split != "all" else bool(images.seen.any())


def split_scores(x: np.ndarray, images: SampledImages, cfg: EmbedConfig, space: str) -> dict[str, Any]:
    """Silhouette and k-NN accuracy of the images the network never trained on; per split for `all`.

    With one split the scores are that split's (labelled in-sample for train). With `all`, each
    split is scored among its own images (`by_split`, each with its size and k-NN chance), and the
    headline numbers are the first of test, val, train present, named in `scored_on`.
    """
    if cfg.split != "all":
        scores = structure_scores(x, images.classes, cfg.knn, images.patients, cfg.seed)
        return {**scores, "scored_on": cfg.split, "in_sample": _in_sample(cfg.split, space, images)}
    by_split: dict[str, Any] = {}
    for name in SPLIT_ORDER:
        member = images.splits == name
        if member.sum() < 2:
            continue
        scores = structure_scores(x[member], images.classes[member], cfg.knn, images.patients[member], cfg.seed)
        by_split[name] = {
            **scores,
            "images": int(member.sum()),
            "knn_chance": chance_accuracy(images.classes[member]),
            "in_sample": _in_sample(name, space, images),
        }
    head = next(iter(by_split), None)
    headline = (
        {k: by_split[head][k] for k in ("silhouette", "knn_accuracy")}
        if head
        else {"silhouette": float("nan"), "knn_accuracy": float("nan")}
    )
    return {
        **headline,
        "scored_on": head,
        "in_sample": bool(head and by_split[head]["in_sample"]),
        "by_split": by_split,
    }


def _write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> Path:
    return atomic_write_text(path, csv_text(frame, index=index, float_format="%.5g"))


class SampledImages:
    """The images a map is drawn for: a sample of the cache stratified by finding and source, and
    what is known about them (ids, patients, sources, findings)."""

    def __init__(self, data: PreparedData, cfg: EmbedConfig, lineage: Lineage | None = None):
        if lineage is not None and cfg.split != "all":
            rows = scored_rows(lineage, data, cfg.split)[0]  # a fold's run: its own held-out fold
        else:
            rows = data.require_rows(None if cfg.split == "all" else cfg.split)
        targets = data.targets(rows)
        # A Cohen image with no positive label is its own finding (SARS, ...), not "No Finding".
        findings = data.index["finding"].iloc[rows].to_numpy() if "finding" in data.index.columns else None
        classes = primary_findings(targets, data.labels, cfg.multi_label, findings)
        sources = data.index["source"].iloc[rows].astype(str).to_numpy()
        # Stratify by finding and source so a sample keeps rare findings and every dataset's share.
        strata = np.array([f"{c}|{s}" for c, s in zip(classes, sources)])
        pick = stratified_sample(strata, cfg.max_images, cfg.seed)
        self.rows, self.targets, self.classes, self.sources = rows[pick], targets[pick], classes[pick], sources[pick]
        self.negatives = negative_classes(self.targets, findings[pick] if findings is not None else None)
        if len(self.rows) < 10:
            raise CxrError(
                f"{data.root}: the {cfg.split} split has {len(self.rows)} images; a map needs at least 10 (try --split all)"
            )
        index = data.index.iloc[self.rows]
        self.ids = index["id"].astype(str).to_numpy()
        self.patients = index["patient"].astype(str).to_numpy()
        self.splits = (
            fold_split_names(lineage, data)[self.rows] if lineage is not None else index["split"].astype(str).to_numpy()
        )
        # Which images the network (or an ancestor) saw; None: not known (no lineage, or pixels only).
        self.seen = seen_mask(lineage, content_keys(data, self.rows)) if lineage is not None else None
        self.labels_text = label_strings(self.targets, data.labels, self.negatives)
        covid = data.labels.index(COVID_LABEL) if COVID_LABEL in data.labels else None
        self.covid = (np.nan_to_num(self.targets[:, covid]) > 0.5) if covid is not None else None

    def frame(self, coords: np.ndarray, som_winners: np.ndarray | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "id": self.ids,
                "patient": self.patients,
                "source": self.sources,
                "finding": self.classes,
                "labels": self.labels_text,
                "x": coords[:, 0],
                "y": coords[:, 1],
            }
        )
        if som_winners is not None:
            frame["som_row"] = som_winners[:, 0]
            frame["som_col"] = som_winners[:, 1]
        return frame


def _map_space(
    space: str,
    inputs: EmbedInputs,
    images: SampledImages,
    cfg: EmbedConfig,
    out: Path,
    entry: dict[str, Any],
    files: list[Path],
) -> pd.DataFrame:
    """Features, PCA and scores of one space, then each map; returns the space's centroid distance table."""
    classes, data = images.classes, inputs.data
    feats = _compute_space(space, inputs, images.rows, cfg)
    started = time.perf_counter()
    reduced, kept = reduce_pca(feats, cfg.pca, cfg.seed)
    entry["full"] = {
        "dims": int(reduced.shape[1]),
        "input_dims": int(feats.shape[1]),
        "variance_kept": kept,
        **split_scores(reduced, images, cfg, space),
        "seconds": time.perf_counter() - started,
    }
    table = centroid_distances(feats, images.targets, data.labels, negatives=images.negatives)
    files.append(_write_csv(out / f"centroids_{space}.csv", table.round(4), index=True))
    colours = class_colours(class_order(classes))
    neighbours = Neighbours(cfg.seed)  # large inputs: one neighbour graph for t-SNE and UMAP
    for method in cfg.methods:
        info(f"{space}: {METHOD_TITLES[method]} on {len(reduced):,} x {reduced.shape[1]}")
        started = time.perf_counter()
        mapped = make_map(method, reduced, cfg, neighbours=neighbours)
        seconds = time.perf_counter() - started
        entry[method] = {**split_scores(mapped.coords, images, cfg, space), "seconds": seconds, "params": mapped.params}
        winners = mapped.som.winners if mapped.som is not None else None
        files.append(_write_csv(out / f"coords_{space}_{method}.csv", images.frame(mapped.coords, winners)))
        title = f"{space} {METHOD_TITLES[method]}"
        files.append(
            scatter_plot(
                out / f"scatter_{space}_{method}.png",
                mapped.coords,
                classes,
                colours,
                title,
                images.sources,
                invert_y=method == "som",
            )
        )
        if mapped.som is not None:
            names = sorted(set(classes))
            majority = neuron_majority(winners, cfg.grid, classes, names)
            covid = images.covid
            share = neuron_share(winners, cfg.grid, covid) if covid is not None and covid.any() else None
            files.append(
                som_plot(out / f"som_{space}.png", mapped.som.umatrix, majority, names, colours, f"{space} SOM", share)
            )
    return table


@holds_locks
def run_embed(cfg: EmbedConfig) -> dict[str, Any]:
    """Map the images of a run's data in each space with each method; write and return the scores.

    Returns {"out": folder, "scores": the scores.json content, "files": [written paths],
    "n_images": int}.
    """
    inputs = resolve_embed(cfg)  # everything below reads this, never the run's files
    run, data, out, lineage = inputs.run, inputs.data, inputs.out, inputs.lineage
    owned = own_output(out, "embedding folder", "embed")  # refuses a folder holding a user's file
    _check_outputs(out, cfg, owned)
    images = SampledImages(data, cfg, lineage)
    if lineage is not None:
        # The headline scores (the split asked for; with `all`, the test split's) must be of unseen
        # images; with `all` the other splits are mapped too and their scores labelled in-sample.
        headline = images.splits == "test" if cfg.split == "all" else np.ones(len(images.rows), dtype=bool)
        check_seen(
            lineage,
            content_keys(data, images.rows[headline]),
            cfg.allow_seen,
            f"embed {run}: {cfg.split} images of {data.root}",
        )
    info(f"mapping {len(images.rows):,} images ({cfg.split}) of {data.root} into {out}")
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(images.ids, cfg, run, data)
    old = read_json(out / SCORES) if (out / SCORES).is_file() else {}
    spaces_scores: dict[str, Any] = old.get("spaces", {}) if old.get("fingerprint") == fingerprint else {}
    if old and not spaces_scores:
        info(f"{out / SCORES}: earlier scores were for other images or settings; replacing them")

    files: list[Path] = []
    centroids: dict[str, pd.DataFrame] = {}
    # Small samples run single-threaded: BLAS and OpenMP hand-offs cost more than they save there.
    with threadpool_limits(limits=1 if len(images.rows) < SMALL_FOR_THREADS else None):
        for space in cfg.spaces:
            centroids[space] = _map_space(space, inputs, images, cfg, out, spaces_scores.setdefault(space, {}), files)

    classes = images.classes
    scored_on = (
        cfg.split if cfg.split != "all" else next((s for s in SPLIT_ORDER if (images.splits == s).sum() >= 2), "train")
    )
    scores = {
        "fingerprint": fingerprint,
        "run": str(run) if run is not None else None,
        "data": str(data.root),
        "split": cfg.split,
        "n_images": len(images.rows),
        "classes": {str(k): int(v) for k, v in zip(*np.unique(classes, return_counts=True))},
        "sources": {str(k): int(v) for k, v in zip(*np.unique(images.sources, return_counts=True))},
        "splits": {str(k): int(v) for k, v in zip(*np.unique(images.splits, return_counts=True))},
        "scored_on": scored_on,
        "knn": cfg.knn,
        "knn_chance": chance_accuracy(classes[images.splits == scored_on] if cfg.split == "all" else classes),
        "knn_excludes_same_patient": True,
        "spaces": spaces_scores,
        "near_covid": (
            {s: nearest_findings(t, COVID_LABEL, 5) for s, t in centroids.items()} if images.covid is not None else {}
        ),
    }
    files.append(atomic_write_json(out / SCORES, scores))
    files.append(dump_config(cfg, out / "config.yaml"))
    _report(scores)
    return {"out": out, "scores": scores, "files": files, "n_images": len(images.rows)}


def _split_name(split: str | None, in_sample: bool) -> str:
    return f"{split} (in-sample)" if in_sample else str(split)


def _report(scores: dict[str, Any]) -> None:
    rows = []
    for space, entry in scores["spaces"].items():
        for method, s in entry.items():
            name = f"full PCA ({s['dims']}-d)" if method == "full" else METHOD_TITLES.get(method, method)
            # With --split all, one row per split; otherwise the one split scored.
            parts = s.get("by_split") or {s.get("scored_on"): s}
            for split, p in parts.items():
                rows.append(
                    [
                        space,
                        name,
                        _split_name(split, bool(p.get("in_sample"))),
                        fmt(p.get("silhouette")),
                        fmt(p.get("knn_accuracy")),
                        fmt(s.get("seconds"), 1),
                    ]
                )
    print_table(
        f"cluster scores: {scores['n_images']:,} images ({scores['split']}), k-NN k={scores['knn']} "
        f"(chance on {scores['scored_on']}: {fmt(scores['knn_chance'])})",
        ["space", "map", "scored on", "silhouette", "k-NN accuracy", "seconds"],
        rows,
    )
    spaces = scores["spaces"]
    if "latent" in spaces and "pixels" in spaces:
        a, b = spaces["latent"]["full"]["knn_accuracy"], spaces["pixels"]["full"]["knn_accuracy"]
        verdict = "more structured than" if a > b else "less structured than" if a < b else "as structured as"
        where = _split_name(scores["scored_on"], bool(spaces["latent"]["full"].get("in_sample")))
        result(f"latent space is {verdict} pixels on {where} images: k-NN accuracy {fmt(a)} vs {fmt(b)} (full space)")
    for space, near in scores.get("near_covid", {}).items():
        if near:
            result(f"nearest COVID-19 in {space} space: " + ", ".join(f"{n} ({d:.2f})" for n, d in near))
