"""`cxrtool export RUN --format onnx|torchscript`: the network as inference servers run it.

The exported network is the checkpoint's classifier as it is: input `image`, float32
(batch, 1, S, S) in [0, 1] (S = the card's image_size; the batch axis is dynamic), output
`logits` (batch, labels); the input convention (ImageNet or torchxrayvision normalisation, grey
to three channels) is inside the graph. Beside it goes the card (labels, preprocessing, input
convention) with an `export` section, in RUN/export/FORMAT/ unless `out` says otherwise. After
writing, the file is loaded by its own runtime (onnxruntime, or torch.jit.load) and run on a few images, of the run's data when it has some,
else generated ones; its logits must match PyTorch's within the printed tolerance, or nothing
is left behind. Files are written under temporary names and renamed, and an earlier export is
replaced only with `overwrite`.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_json
from ..config import require
from ..data.cache import PreparedData
from ..data.tensors import to_model_input
from ..errors import CxrError, did_you_mean
from ..locks import require_writable
from ..models.checkpoint import CARD, load_checkpoint, resolve_checkpoint
from ..optionspec import option
from ..owned import note_written
from ..progress import info, result
from ..run_locks import holds_locks, own_output
from ..runs import MANIFEST, read_manifest, resolve_run
from . import require_package

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
CHECK_IMAGES = 8
RTOL = 1e-4  # of the largest logit (at least 1): float32 kernels differ in summation order only
OPSET = 18
ONNX_PACKAGES = "onnx onnxscript onnxruntime"  # the onnx extra


@dataclass
class ExportConfig:
    run: Path | None = option(
        None, help="Run directory or checkpoint folder (default: the newest run under ./runs).", argument=True
    )  # run directory or checkpoint folder; the newest run when None
    format: str = option(
        "onnx", help="onnx (needs pip install onnx onnxscript onnxruntime) or torchscript.", choices=tuple(FORMATS)
    )
    out: Path | None = option(
        None, help="Output folder. (default: RUN/export/FORMAT)"
    )  # folder; RUN/export/FORMAT when None
    data: Path | None = option(
        None, help="Prepared cache whose images check the export. (default: the run's data)"
    )  # cache whose images the check runs on; the run's data when None
    checkpoint: str = option("best", help="best or last.", choices=("best", "last"))
    overwrite: bool = option(False, help="Replace an earlier export in the output folder.")

    def __post_init__(self) -> None:
        self.format = str(self.format).lower()
        require(
            self.format in FORMATS,
            f"--format: unsupported format {self.format!r}; choose one of "
            f"{', '.join(FORMATS)}.{did_you_mean(self.format, list(FORMATS))}",
        )
        require(self.checkpoint in ("best", "last"), f"--checkpoint: choose best or last, got {self.checkpoint!r}")


def _source(cfg: ExportConfig) -> tuple[Path, Path]:
    """(the run or checkpoint folder given, the checkpoint folder) for cfg.run."""
    if cfg.run is not None and not Path(cfg.run).exists():
        raise CxrError(f"{cfg.run}: no such run directory or checkpoint")
    given = Path(cfg.run) if cfg.run is not None and (Path(cfg.run) / CARD).is_file() else resolve_run(cfg.run)
    return given, resolve_checkpoint(given, cfg.checkpoint)


def check_images(cfg: ExportConfig, given: Path, card: dict) -> tuple[np.ndarray, str]:
    """A few uint8 images (n, S, S) to check the export on, and where they came from."""
    data_dir = cfg.data
    if data_dir is None and (given / MANIFEST).is_file():
        recorded = read_manifest(given).get("data")
        data_dir = Path(recorded) if recorded and Path(recorded).is_dir() else None
    if data_dir is not None:
        data = PreparedData(data_dir)
        rows = data.rows("test")
        rows = rows if len(rows) else np.arange(len(data))
        if len(rows):
            return np.asarray(
                data.images[np.sort(rows[:CHECK_IMAGES])]
            ), f"{min(CHECK_IMAGES, len(rows))} images of {data.root}"
    # lazy: the synthetic generator (scipy), only when no data is at hand
    from ..data.sources.synthetic import SyntheticConfig, generate_arrays

    size = int((card.get("preprocessing") or {}).get("cache_size") or card["image_size"])
    images = generate_arrays(SyntheticConfig(n_patients=CHECK_IMAGES, max_followups=1, size=size, seed=0))[0]
    return np.asarray(
        images[:CHECK_IMAGES]
    ), f"{min(CHECK_IMAGES, len(images))} generated images (no data given: --data DIR)"


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
    require_package("onnx", ONNX_PACKAGES, "export --format onnx")
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        require_package("onnxscript", ONNX_PACKAGES, "export --format onnx")
        batch = torch.export.Dim("batch", min=1, max=65536)
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each stage
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                external_data=False,
                dynamo=True,
                verbose=False,
            )
        return "torch.export"
    # torch < 2.5: the TorchScript-based exporter, with the batch axis named dynamic.
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    return "torchscript-based"


def _run_onnx(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    ort = require_package("onnxruntime", ONNX_PACKAGES, "export --format onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda x: session.run(["logits"], {"image": x})[0]), f"onnxruntime {ort.__version__}"


def _write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))
    return "torch.jit.trace"


def _run_torchscript(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    return run, f"torch.jit.load (torch {torch.__version__})"


WRITERS = {"onnx": (_write_onnx, _run_onnx), "torchscript": (_write_torchscript, _run_torchscript)}


def compare(run: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Run the exported network on x in two batch sizes; max |logit difference| to PyTorch and the tolerance."""
    with torch.no_grad():
        reference = model(x).numpy()
    # All at once, then one image alone: a batch axis that was not dynamic fails one of them.
    got = np.concatenate([run(x.numpy()), run(x[:1].numpy())])
    want = np.concatenate([reference, reference[:1]])
    if got.shape != want.shape:
        raise CxrError(f"the exported network returned shape {got.shape[1:]} per batch, PyTorch {want.shape[1:]}")
    diff = float(np.abs(got - want).max())
    return {"images": len(x), "max_abs_logit_diff": diff, "tolerance": RTOL * max(1.0, float(np.abs(want).max()))}


def _legacy_export(out: Path) -> dict[str, str]:
    """What an older export wrote into `out` (its card.json says it was one), its killed temporaries included."""
    try:
        card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(card, dict) or not isinstance(card.get("export"), dict):
        return {}
    names = ["card.json", *FORMATS.values()]
    temporaries = [p.name for p in out.iterdir() if re.fullmatch(r"\.model\.(onnx|pt)\.tmp-\d+", p.name)]
    return {name: "export" for name in [*names, *temporaries] if (out / name).is_file()}


@holds_locks
def export_run(cfg: ExportConfig) -> Path:
    """Write RUN/export/FORMAT/model.{onnx,pt} + card.json, checked against PyTorch; returns the file."""
    given, folder = _source(cfg)
    model, card = load_checkpoint(folder)
    model = model.float().eval()
    out = Path(cfg.out) if cfg.out else given / "export" / cfg.format
    require_writable(out, "--out" if cfg.out else "the run's export folder; choose another with --out")
    target, card_path = out / FORMATS[cfg.format], out / "card.json"
    # One export at a time per folder; a folder holding a file no cxrtool command wrote is refused.
    owned = own_output(out, "export", "export", legacy=_legacy_export)
    owned.remove_temporaries()  # a killed export's .model.onnx.tmp-PID: under the lock nobody writes it now
    if (target.exists() or card_path.exists()) and not cfg.overwrite:
        raise CxrError(f"{out}: holds an earlier export ({target.name}); pass --overwrite to replace it or --out DIR")
    for path in (target, card_path):
        owned.check_replace(path, overwrite=True)  # never a file another command wrote (--out RUN)
    images, where = check_images(cfg, given, card)
    x = to_model_input(torch.from_numpy(np.ascontiguousarray(images)), int(card["image_size"]))
    write, load = WRITERS[cfg.format]
    note_written(target)  # recorded before its temporary exists, so a killed export's temporary is known as ours
    tmp = out / f".{target.name}.tmp-{os.getpid()}"
    try:
        with warnings.catch_warnings():
            # Tracing warns about shape checks that are constant for this network, and recent
            # torch marks TorchScript deprecated: neither is the user's to act on.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            exporter = write(model, x[:2], tmp)
            run, runtime = load(tmp)
        check = compare(run, model, x)
        if not check["max_abs_logit_diff"] <= check["tolerance"]:
            raise CxrError(
                f"{cfg.format}: the exported network differs from PyTorch by {check['max_abs_logit_diff']:.3g} "
                f"in logits on {where} (tolerance {check['tolerance']:.3g}); nothing written"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    size = int(card["image_size"])
    card = {
        **card,
        "export": {
            "format": cfg.format,
            "file": target.name,
            "exporter": exporter,
            "checkpoint": str(folder.resolve()),
            "input": {"name": "image", "shape": ["batch", 1, size, size], "dtype": "float32", "range": [0.0, 1.0]},
            "output": {
                "name": "logits",
                "shape": ["batch", len(card["labels"])],
                "labels": list(card["labels"]),
                "activation": "sigmoid gives the probability of each label",
            },
            "check": {**check, "on": where, "runtime": runtime},
            "torch": torch.__version__,
            **({"opset": OPSET} if cfg.format == "onnx" else {}),
        },
    }
    atomic_write_json(card_path, card)
    result(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) and {card_path.name}")
    result(
        f"checked with {runtime} on {where}: max |logit difference| {check['max_abs_logit_diff']:.2e} "
        f"(tolerance {check['tolerance']:.2e})"
    )
    info(
        f"input 'image' (batch, 1, {size}, {size}) float32 in [0, 1]; output 'logits' for {len(card['labels'])} labels"
    )
    return target
