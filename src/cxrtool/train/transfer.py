"""The starting network of a finetune: a parent run's body with a head for the new labels.

`resolve_parent` reads `--from`, `transfer_model` loads the parent and gives it a head for the
labels (rows of labels the parent already knew are carried over), and `finetune_model` does
either that or builds a fresh network (`--from none`); finetune and each cross-validation fold
start from it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..errors import CxrError
from ..models.backbones import XRayClassifier
from ..models.checkpoint import CARD, apply_input_convention, read_card, resolve_checkpoint
from ..models.registry import create_model, read_state_dict
from ..models.weights import load_body_weights
from ..runs import resolve_run
from .config import FinetuneConfig


def resolve_parent(parent: str | None) -> Path | None:
    """--from: None -> the newest run under ./runs; 'none' -> no parent; else a run or checkpoint."""
    if parent == "none":
        return None
    if parent is None:
        return resolve_checkpoint(resolve_run(None), "best")
    path = Path(parent)
    if not path.exists():
        raise CxrError(
            f"--from: {parent}: no such run or checkpoint (give a run directory, a checkpoint folder, or none)"
        )
    try:
        return resolve_checkpoint(path, "best")
    except CxrError as exc:
        raise CxrError(f"--from: {exc}") from None


def transfer_model(
    checkpoint: Path, labels: list[str], seed: int, allow_partial: bool = False
) -> tuple[XRayClassifier, dict[str, Any]]:
    """The parent's network with a head for `labels`; head rows of labels it already had are kept.

    The parent's body goes through the same matching as any weights file (counted, and refused
    when partial unless `allow_partial`); its head may differ, since the labels do.
    """
    card = read_card(checkpoint)
    model = create_model(card["arch"], int(card["num_labels"]), "none")
    apply_input_convention(model, card, checkpoint / CARD)  # e.g. an imported one-channel network
    state = read_state_dict(checkpoint)
    model.weights_report = load_body_weights(model, state, f"--from {checkpoint}", allow_partial).manifest()
    old_labels = list(card["labels"])
    old_weight, old_bias = state.get("head.weight"), state.get("head.bias")
    torch.manual_seed(seed)
    model.reset_head(len(labels))
    fits = old_weight is not None and old_bias is not None and old_weight.shape[1:] == model.head.weight.shape[1:]
    with torch.no_grad():
        for j, label in enumerate(labels):
            if fits and label in old_labels and old_labels.index(label) < len(old_weight):
                k = old_labels.index(label)
                model.head.weight[j].copy_(old_weight[k])
                model.head.bias[j].copy_(old_bias[k])
    return model.train(), card


def finetune_model(cfg: FinetuneConfig, labels: list[str]) -> tuple[XRayClassifier, FinetuneConfig, Path | None]:
    """The starting network for finetune and the config with arch/image size/parent resolved."""
    checkpoint = resolve_parent(cfg.parent)
    if checkpoint is None:
        arch = cfg.arch or "densenet121"
        torch.manual_seed(cfg.seed)
        model = create_model(arch, len(labels), cfg.weights, cfg.allow_partial)
        return model, dataclasses.replace(cfg, arch=arch, parent="none", image_size=cfg.image_size or 224), None
    card = read_card(checkpoint)
    if cfg.arch is not None and cfg.arch != card["arch"]:
        raise CxrError(f"--arch: the parent {checkpoint} is a {card['arch']}; --arch applies only with --from none")
    model, card = transfer_model(checkpoint, labels, cfg.seed, cfg.allow_partial)
    resolved = dataclasses.replace(
        cfg,
        arch=card["arch"],
        parent=str(checkpoint.resolve()),
        image_size=cfg.image_size or int(card.get("image_size", 224)),
    )
    return model, resolved, checkpoint.resolve()
