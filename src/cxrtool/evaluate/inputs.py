"""What one model's evaluation reads, resolved once at the door of `evaluate`.

`resolve_evaluation` turns a config and a run into an `EvaluationInputs`: the output folder
(locked and claimed), the checkpoint (loaded, and narrowed to the labels the data annotates), the
cache and the run's lineage, the rows scored and their seen-image check, and the label columns.
Everything after it (evaluate/pipeline.py) reads this object; nothing goes back to the run, the
card or the cache's files. The steps run in the order the command has always taken them, so its
messages and refusals come in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.cache import PreparedData
from ..data.lineage import Lineage, check_data_hash, check_seen, content_keys, read_lineage, scored_rows
from ..device import resolve_device
from ..inference import predict_probs, resolve_data
from ..models.checkpoint import LoadedModel, open_model
from ..progress import info, warn
from .config import EvaluateConfig
from .outputs import prepare_out


@dataclass
class ScoredModel:
    """The model as evaluate runs it: the checkpoint's network, narrowed to the labels scored,
    with the pass settings of the call (batch size, test-time flip)."""

    loaded: LoadedModel
    batch_size: int
    tta: bool

    def probs(self, data: PreparedData, rows: np.ndarray, description: str) -> np.ndarray:
        """Probabilities (n, labels scored) for `rows` of `data`."""
        return predict_probs(
            self.loaded.network,
            data,
            rows,
            self.loaded.image_size,
            self.batch_size,
            self.loaded.device,
            self.tta,
            description=description,
        )


@dataclass
class Scores:
    """The scored model's answers on a set of images: labels, truths, probabilities, and the
    index rows that say whose images they are."""

    labels: list[str]
    targets: np.ndarray
    probs: np.ndarray
    frame: pd.DataFrame

    @property
    def patients(self) -> np.ndarray:
        return self.frame["patient"].to_numpy()


@dataclass
class EvaluationInputs:
    """One evaluation's inputs: the run, where it writes, the model, the data and the rows it scores."""

    cfg: EvaluateConfig
    run: Path
    out: Path
    model: ScoredModel  # its network answers for `labels` only (`only_outputs`)
    data: PreparedData
    lineage: Lineage
    data_changed: bool  # the run's recorded cache changed since training (warned)
    rows: np.ndarray  # the rows scored
    scored: str  # their name: "test split", "held-out fold 2", ...
    seen: dict  # the lineage entry of the scored rows (check_seen)
    seen_mask: np.ndarray  # which scored rows the lineage trained or validated on
    labels: list[str]  # the labels scored: the model's that the data annotates
    unmatched: dict[str, str]  # label -> why it cannot be scored
    cols: list[int]  # the data's column of each scored label

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The index rows scored."""
        return self.data.index.iloc[self.rows]

    @cached_property
    def targets(self) -> np.ndarray:
        """The scored rows' truths, one column per scored label (NaN: not annotated)."""
        return self.data.targets(self.rows)[:, self.cols]

    def part_rows(self, role: str) -> np.ndarray:
        """The rows of the run's own `role` part (val: thresholds; train: shortcut baselines).

        A fold's run has its own validation and training parts inside the cache it was cut from;
        any other run (or a cache it was not cut from) uses the cache's split of that name.
        """
        lineage, data = self.lineage, self.data
        if lineage.fold is None or data.data_hash != lineage.data_hash or not lineage.recorded:
            return data.rows(role)
        return scored_rows(lineage, data, role, announce=False)[0]


def resolve_evaluation(cfg: EvaluateConfig, run: Path) -> EvaluationInputs:
    """Open everything one model's evaluation reads; refuse (one line) what cannot be scored."""
    device = resolve_device(cfg.device)
    out = prepare_out(cfg, run)
    model = open_model(run, cfg.checkpoint, device)
    data = resolve_data(cfg.data, run)
    lineage = read_lineage(run)
    data_changed = check_data_hash(run, data, lineage) if cfg.data is None else False
    rows, scored = scored_rows(lineage, data, cfg.split)
    seen, seen_mask = check_seen(
        lineage, content_keys(data, rows), cfg.allow_seen, f"evaluate {run}: its {scored} of {data.root}"
    )
    card_labels = model.labels
    labels, unmatched = match_labels(card_labels, data, run, imported=bool(model.card.get("source")))
    if labels != card_labels:
        model.network = only_outputs(model.network, [card_labels.index(l) for l in labels])
    cols = data.require_labels(labels, f"the model in {run}")
    trained_size = (model.card.get("preprocessing") or {}).get("cache_size")
    if trained_size and int(trained_size) != data.size:
        warn(
            f"{data.root}: cached at {data.size} px but the model was trained on a {trained_size}-px cache; "
            f"images are resized to {model.image_size} px either way, but detail differs (prepare with --size {trained_size})"
        )
    scored_model = ScoredModel(model, cfg.batch_size, cfg.tta)
    return EvaluationInputs(
        cfg, run, out, scored_model, data, lineage, data_changed, rows, scored, seen, seen_mask, labels, unmatched, cols
    )


def match_labels(model_labels: list[str], data, run: Path, imported: bool = False) -> tuple[list[str], dict[str, str]]:
    """The model's labels the data annotates (matched by name), and why each other label cannot
    be scored: the model's that the data lacks, and (for a model imported from another toolkit,
    whose label set was not chosen on this data) the data's that the model lacks. No shared label
    at all is an error."""
    shared = [l for l in model_labels if l in data.labels]
    if not shared:
        data.require_labels(model_labels, f"the model in {run}")  # the one-line error naming them
    unmatched = {l: "the data does not annotate this label" for l in model_labels if l not in shared}
    if imported:
        unmatched.update({l: "the model has no output for this label" for l in data.labels if l not in model_labels})
    if unmatched:
        info(f"scoring the {len(shared)} label(s) that the model and {data.root} share (matched by name)")
    return shared, unmatched


def only_outputs(model, columns: list[int]):
    """The model with only the outputs `columns` (the labels scored), for every pass evaluate makes."""

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @property
        def num_labels(self) -> int:
            return len(columns)

        def forward(self, x):
            return self.model(x)[:, columns]

    return Outputs()
