"""Checkpoints without pickles: weights as safetensors plus a JSON model card.

A checkpoint is a folder, `checkpoints/best/` or `checkpoints/last/` in a run:
- `model.safetensors`: the classifier's tensors (body, head, normalisation buffers);
- `card.json`: what is needed to use the weights without the run: architecture, label order,
  network input size, the cache's preprocessing (size, crop), the input convention (channels and
  value range; "imagenet" when a card has none), normalisation, the training data's hash and
  metrics (never changed afterwards: `evaluate` keeps its thresholds in its own folder);
- `state.safetensors` + `state.json` (only for resuming): optimiser, scheduler, RNG and
  sampler state, split into tensors and plain JSON by `save_state`/`load_state`.
Each folder is written under a temporary name and renamed into place, so a crash mid-save leaves
the previous checkpoint intact; the card is written last and records the size of every file
beside it, so a checkpoint truncated later (a copy cut short, a full disk) is refused on open. Loading never unpickles anything.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import to_json
from ..errors import CxrError, fs_reason
from ..owned import current_umask, note_written
from ..progress import notice
from ..runs import RunNeed, is_cv_run, is_seeds_run, resolve_run
from ..safeio import read_json_file
from ..signals import signals_deferred
from .archs import arch_names
from .backbones import INPUT_CONVENTIONS, XRayClassifier
from .registry import create_model

CARD = "card.json"
WEIGHTS = "model.safetensors"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
CARD_FORMAT = "cxrtool-checkpoint/1"


def _write_folder_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling folder, then swap it in place of `target`.

    Whatever stops the fill (a full disk, Ctrl-C, SIGTERM) removes the temporary folder and
    leaves the previous `target` as it was; a full or read-only disk is one line naming the folder
    (safetensors reports it as its own error type, not an OSError). The two renames of the swap run
    with interrupts held back, so that no signal lands between them and leaves no `target`.
    """
    target = Path(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        note_written(target, folder=True)  # the folder and its temporaries are the run's (owned.py)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        fill(tmp)
        with signals_deferred():
            if target.exists():
                os.replace(target, old)
            try:
                os.replace(tmp, target)
            except OSError:
                if old.exists() and not target.exists():
                    os.replace(old, target)  # put the previous checkpoint back
                raise
    except OSError as exc:
        raise _save_error(target, exc) from None
    except SafetensorError as exc:
        raise _save_error(target, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _save_error(target: Path, exc: Exception) -> CxrError:
    """One line for a checkpoint that could not be saved: why, and that the previous one is kept."""
    if isinstance(exc, OSError):
        reason = fs_reason(exc)
    else:  # safetensors' message carries the OS error: "... No space left on device (os error 28)"
        text = str(exc)
        full = "No space left" in text or "os error 28" in text or "StorageFull" in text
        reason = fs_reason(OSError(errno.ENOSPC, "")) if full else text.splitlines()[0] if text else type(exc).__name__
    kept = " (the previous one is kept)" if target.exists() else ""
    return CxrError(f"{target}: the checkpoint could not be saved{kept}: {reason}")


def model_card(
    model: XRayClassifier, labels: list[str], image_size: int, cache_size: int, **extra: Any
) -> dict[str, Any]:
    """The JSON description that makes a weights file usable on its own."""
    return {
        "format": CARD_FORMAT,
        "arch": model.arch,
        "labels": list(labels),
        "num_labels": model.num_labels,
        "num_features": model.num_features,
        "image_size": int(image_size),
        "preprocessing": {
            "cache_size": int(cache_size),
            "crop": "centre-square",
            "grayscale": "uint8",
            "scale": "1/255",
        },
        "input": model.input_convention(),
        "normalisation": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def _plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # DDP wraps the model; safetensors wants contiguous tensors that share no storage.
    inner = getattr(model, "module", model)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in inner.state_dict().items()}


def save_checkpoint(
    folder: Path, model: torch.nn.Module, card: dict[str, Any], state: dict[str, Any] | None = None
) -> Path:
    """Write weights, card and (optionally) resumable training state into `folder` atomically."""

    def fill(tmp: Path) -> None:
        save_file(_plain_state(model), str(tmp / WEIGHTS), metadata={"format": CARD_FORMAT})
        if state is not None:
            save_state(tmp, state)
        # The card is written last and lists the sizes of the files beside it: its completeness mark.
        (tmp / CARD).write_text(to_json({**card, "files": file_sizes(tmp)}), encoding="utf-8")
        for path in tmp.iterdir():  # safetensors creates its files 0600: give them the umask's mode
            os.chmod(path, 0o666 & ~current_umask())

    return _write_folder_atomically(Path(folder), fill)


def file_sizes(folder: Path) -> dict[str, int]:
    """Sizes of a checkpoint's data files, recorded in its card and checked when it is opened."""
    names = (WEIGHTS, STATE_TENSORS, STATE_JSON)
    return {n: (Path(folder) / n).stat().st_size for n in names if (Path(folder) / n).is_file()}


def check_files(folder: Path, card: dict[str, Any], names: tuple[str, ...]) -> None:
    """Refuse a checkpoint whose files are missing or differ in size from what its card recorded."""
    recorded = card.get("files")
    if not isinstance(recorded, dict):
        return  # a checkpoint saved before cards listed their files
    for name in names:
        path = Path(folder) / name
        if name not in recorded:
            continue
        if not path.is_file():
            raise CxrError(f"{path}: missing; the checkpoint is incomplete (its card lists it)")
        size = path.stat().st_size
        if size != recorded[name]:
            raise CxrError(
                f"{path}: truncated or changed since it was saved ({size} bytes, the card says "
                f"{recorded[name]}); the checkpoint is incomplete"
            )


def validate_card(card: Any, where: Path) -> dict[str, Any]:
    """A card must be a JSON object naming a known architecture and its label list; else one line naming it."""
    if not isinstance(card, dict):
        raise CxrError(f"{where}: not a model card (a JSON object was expected, found {type(card).__name__})")
    if card.get("format") != CARD_FORMAT:
        raise CxrError(f"{where}: unknown checkpoint format {card.get('format')!r}")
    arch = card.get("arch")
    if arch not in arch_names():
        raise CxrError(f"{where}: unknown architecture {arch!r} in the card; known: {', '.join(arch_names())}")
    labels = card.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise CxrError(f"{where}: 'labels' must be a non-empty list of label names")
    if card.get("num_labels", len(labels)) != len(labels):
        raise CxrError(f"{where}: 'num_labels' is {card.get('num_labels')!r} but {len(labels)} labels are listed")
    size = card.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise CxrError(f"{where}: 'image_size' must be a positive whole number (got {size!r})")
    return card


def resolve_checkpoint(path: Path, which: str = "best") -> Path:
    """A checkpoint folder from a run dir, a checkpoint folder, or a model.safetensors file."""
    path = Path(path)
    if path.is_file() and path.name.endswith(".safetensors"):
        path = path.parent
    if (path / "checkpoints" / which / CARD).is_file():
        return path / "checkpoints" / which
    if (path / CARD).is_file():
        return path
    if (path / "checkpoints").is_dir():
        raise CxrError(f"{path}: the run has no {which} checkpoint yet (checkpoints/{which}/card.json)")

    if is_cv_run(path):
        folds = sorted(p.name for p in path.glob("fold-*") if p.is_dir())
        raise CxrError(
            f"{path}: a cross-validation run has one model per fold; give one of its fold runs, "
            f"e.g. {path / (folds[0] if folds else 'fold-1')}"
        )
    if is_seeds_run(path):
        raise CxrError(f"{path}: a run trained once per seed has one model per seed; give one, e.g. {path / 'seed-1'}")
    raise CxrError(f"{path}: not a run directory or checkpoint (no {CARD})")


def read_card(path: Path, which: str = "best") -> dict[str, Any]:
    folder = resolve_checkpoint(path, which)
    card = read_json_file(folder / CARD)  # size and depth limits: a planted card is one line
    return validate_card(card, folder / CARD)


def load_checkpoint(
    path: Path, which: str = "best", device: str | torch.device = "cpu"
) -> tuple[XRayClassifier, dict[str, Any]]:
    """Rebuild the classifier from its card and load its weights (no pickle, no network)."""
    folder = resolve_checkpoint(path, which)
    card = read_card(folder)
    check_files(folder, card, (WEIGHTS,))
    model = create_model(card["arch"], len(card["labels"]), weights="none")
    apply_input_convention(model, card, folder / CARD)
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as exc:
        raise CxrError(f"{folder / WEIGHTS}: unreadable weights ({exc})") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CxrError(
            f"{folder / WEIGHTS}: weights do not fit {card['arch']} (missing {len(missing)}, unexpected {len(unexpected)})"
        )
    model.eval()
    return model.to(device), card


def apply_input_convention(model: XRayClassifier, card: dict[str, Any], where: Path) -> None:
    """Give the model the card's input convention (channels, mean/std); 'imagenet' when absent."""
    spec = card.get("input") or {"convention": "imagenet"}
    convention = spec.get("convention", "imagenet") if isinstance(spec, dict) else spec
    if convention not in INPUT_CONVENTIONS:
        raise CxrError(f"{where}: unknown input convention {convention!r}; known: {', '.join(INPUT_CONVENTIONS)}")
    channels = INPUT_CONVENTIONS[convention][0]
    norm = card.get("normalisation") or {}
    mean, std = norm.get("mean"), norm.get("std")
    if mean is not None and (len(mean) != channels or len(std or []) != channels):
        raise CxrError(f"{where}: normalisation has {len(mean)} channel(s) but the {convention} input has {channels}")
    if convention != "imagenet":
        model.set_input_convention(convention, mean, std)


# ---------------------------------------------------------------- training state


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        # JSON keys are strings: remember int keys (optimizer state is keyed by param index).
        return {"__dict__": [[k, _flatten(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, prefix) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        arr = np.asarray(obj)
        return {"__ndarray__": arr.tolist(), "dtype": str(arr.dtype)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in training state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Nested dicts/lists/tuples of tensors, arrays and scalars -> state.safetensors + state.json."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, tensors, "")
    save_file(tensors, str(Path(folder) / STATE_TENSORS))
    (Path(folder) / STATE_JSON).write_text(json.dumps(tree), encoding="utf-8")


def load_state(folder: Path) -> dict[str, Any]:
    """The inverse of `save_state`."""
    folder = Path(folder)
    if not (folder / STATE_JSON).is_file():
        raise CxrError(f"{folder}: no resumable training state here (state.json)")
    check_files(folder, read_card(folder), (STATE_TENSORS, STATE_JSON))
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
    except Exception as exc:  # safetensors raises its own error types for a damaged header or body
        raise CxrError(
            f"{folder / STATE_TENSORS}: unreadable training state ({exc}); the checkpoint is incomplete"
        ) from None
    try:
        tree = read_json_file(folder / STATE_JSON)
    except CxrError as exc:
        raise CxrError(f"{exc}; the checkpoint is incomplete") from None
    try:
        return _unflatten(tree, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise CxrError(
            f"{folder / STATE_JSON}: does not match {STATE_TENSORS} ({exc}); the checkpoint is incomplete"
        ) from None


def resolve_model_source(run: Path | None, need: RunNeed | None = None) -> Path:
    """A checkpoint folder or run directory to load; the newest run (that fits `need`) when None."""
    if run is not None and (Path(run) / "card.json").is_file():
        return Path(run)
    return resolve_run(run, need=need)


@dataclass
class LoadedModel:
    """A checkpoint as a stage uses it, opened once at the stage's door.

    `source` is what was given or found (a run directory or a checkpoint folder), `folder` the
    checkpoint folder it names (`which`: best or last), `network` the classifier on `device`, and
    `card` its model card; the stage reads these instead of going back to the files.
    """

    source: Path
    which: str
    folder: Path
    network: torch.nn.Module
    card: dict[str, Any]
    device: torch.device

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def image_size(self) -> int:
        """The network's input size."""
        return int(self.card["image_size"])

    @property
    def cache_size(self) -> int:
        """The size of the cache it was trained on (what loose files are preprocessed to); else its input size."""
        return int((self.card.get("preprocessing") or {}).get("cache_size") or self.image_size)

    def announce(self) -> None:
        """Say which model answers, always (even with --quiet), so a wrong one is never silent."""
        notice(f"model: {self.folder} ({self.card['arch']}, {len(self.labels)} labels)")


def open_model(source: Path, which: str, device: torch.device) -> LoadedModel:
    """Load the `which` checkpoint of `source` onto `device` (see `load_checkpoint`)."""
    network, card = load_checkpoint(source, which, device)
    return LoadedModel(Path(source), which, resolve_checkpoint(source, which), network, card, torch.device(device))
