"""Weights files into a network: read without unpickling, ImageNet through torchvision, and a
report of what matched.

Every way of starting from weights (`--weights imagenet`, `--weights PATH`, `finetune --from RUN`)
ends in `load_body_weights`, which counts the backbone tensors that matched, are missing from the
file, are in the file but not in the network (unexpected), or have another shape. Anything short
of every backbone tensor is an error unless the caller allows a partial load; then the names are
kept in the report, which the run's manifest stores. The classifier head is never counted: a
transfer to new labels gets a new head by design.

ImageNet weights come the way torchvision gets them: from the torch cache
(`torch.hub.get_dir()/checkpoints`, under `TORCH_HOME`) when the file is there, else downloaded
into it with a progress bar. Offline, one line names the file, its address and the exact path to
put it at.
"""

from __future__ import annotations

import http.client
import re
import socket
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import CxrError
from ..progress import info, warn
from .archs import get_spec

# Tensors of a classifier head (ours, and the one the architecture's entry names, e.g.
# torchvision's ResNet `fc`) and the normalisation buffers: never part of the backbone, so
# neither missing nor unexpected when they differ.
OUR_HEAD = "head"
NOT_WEIGHTS = ("mean", "std")
# Older torchvision DenseNet files name layers 'norm.1' where the modules are now 'norm1'.
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
NAMES_SHOWN = 3  # names quoted in the one-line error


@dataclass
class LoadReport:
    """What a weights file gave the backbone: matched, missing, unexpected and reshaped tensors."""

    source: str
    total: int  # backbone tensors of the network (BatchNorm counters not counted)
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: file shape != network shape"

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"{len(self.matched)} of {self.total} backbone tensors matched, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} with another shape"
        )

    def manifest(self) -> dict:
        """For manifest.json: the counts always, the names of whatever did not match."""
        entry = {
            "source": self.source,
            "matched": len(self.matched),
            "total": self.total,
            "complete": self.complete,
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "mismatched": len(self.mismatched),
        }
        if not self.complete:
            entry["names"] = {"missing": self.missing, "unexpected": self.unexpected, "mismatched": self.mismatched}
        return entry


def _is_backbone_tensor(name: str) -> bool:
    return not name.endswith("num_batches_tracked")  # a BatchNorm step counter, not a weight


def _ignorable(name: str, heads: tuple[str, ...]) -> bool:
    """Head or normalisation tensors of a file, with or without a DDP 'module.' prefix."""
    name = name[len("module.") :] if name.startswith("module.") else name
    return name.startswith(heads) or name in NOT_WEIGHTS or not _is_backbone_tensor(name)


def head_prefixes(arch: str) -> tuple[str, ...]:
    """The prefixes of a weights file's head tensors for `arch`: ours, and its entry's `head`."""
    head = get_spec(arch).head
    return (f"{OUR_HEAD}.", *((f"{head}.",) if head else ()))


def legacy_densenet_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision's old DenseNet keys (as torchvision's own loader does); others unchanged."""
    out = {}
    for key, value in state.items():
        m = _DENSENET_LEGACY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def match_body(
    body: torch.nn.Module, state: dict[str, torch.Tensor], source: str, heads: tuple[str, ...]
) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Map a file's tensors onto `body` (a cxrtool model, a bare body, a torchvision model, DDP).

    `heads`: the prefixes of the file's head tensors (`head_prefixes`), which are not the body's.
    """
    own = body.state_dict()
    wanted = {k for k in own if _is_backbone_tensor(k)}
    state = legacy_densenet_names(state)
    best_prefix, best = "", {}
    # cxrtool checkpoints prefix the body with "body."; DDP adds "module."; torchvision has none.
    for prefix in ("body.", "", "module.body.", "module."):
        mapped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        hits = {k: v for k, v in mapped.items() if k in own}
        if len(hits) > len(best):
            best_prefix, best = prefix, hits
    report = LoadReport(source, total=len(wanted))
    loadable = {}
    for key, value in best.items():
        if tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append(f"{key}: {tuple(value.shape)} != {tuple(own[key].shape)}")
        else:
            loadable[key] = value
            if key in wanted:
                report.matched.append(key)
    report.missing = sorted(wanted - set(best))
    report.unexpected = sorted(
        k
        for k in state
        if not (k.startswith(best_prefix) and k[len(best_prefix) :] in own) and not _ignorable(k, heads)
    )
    return report, loadable


def load_body_weights(model, state: dict[str, torch.Tensor], source: str, allow_partial: bool = False) -> LoadReport:
    """Load the backbone from `state`; every backbone tensor must match unless `allow_partial`.

    `source` names the option and file in messages, e.g. "--weights w.pth" or "--from RUN".
    """
    report, loadable = match_body(model.body, state, source, head_prefixes(model.arch))
    if not report.matched:
        raise CxrError(f"{source} does not fit {model.arch} (0 of {report.total} backbone tensors match)")
    if not report.complete:
        first = [*report.missing, *report.unexpected, *report.mismatched][:NAMES_SHOWN]
        if not allow_partial:
            raise CxrError(
                f"{source} does not fully fit {model.arch}: {report.summary()} "
                f"(e.g. {', '.join(first)}); pass --allow-partial to load it anyway (the rest stays random)"
            )
        warn(f"{source}: partial load into {model.arch}: {report.summary()}; the names are in the run's manifest")
    else:
        info(f"{source}: {report.summary()}")
    model.body.load_state_dict(loadable, strict=False)
    return report


# ---------------------------------------------------------------- ImageNet, as torchvision does it


def imagenet_cache_path(url: str) -> Path:
    """Where torch.hub keeps (and looks for) the file of `url`: TORCH_HOME/hub/checkpoints/NAME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def imagenet_state_dict(enum_path: str, progress: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's ImageNet state dict (from the torch cache, or downloaded there) and its address."""
    # lazy: torchvision, only to fetch ImageNet weights
    import torchvision.models as tvm

    enum_name, member = enum_path.split(".")
    weights = getattr(getattr(tvm, enum_name), member)
    target = imagenet_cache_path(weights.url)
    try:
        # The same call torchvision's builders make; weights_only: loading never unpickles code.
        state = weights.get_state_dict(progress=progress, check_hash=True, map_location="cpu", weights_only=True)
    except (TimeoutError, urllib.error.URLError, socket.gaierror, ConnectionError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CxrError(
            f"--weights imagenet: cannot download {target.name} from {weights.url} ({reason}); "
            f"on a connected machine fetch that file and put it at {target}, "
            f"or use --weights PATH / --weights none"
        ) from None
    except OSError as exc:  # e.g. the cache folder is not writable
        raise CxrError(f"--weights imagenet: {target}: {exc}") from None
    except Exception as exc:  # a truncated or foreign file in the cache
        raise CxrError(
            f"--weights imagenet: {target}: not a readable weights file ({type(exc).__name__}); "
            f"delete it to download it again"
        ) from None
    return state, weights.url
