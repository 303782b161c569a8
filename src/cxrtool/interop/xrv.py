"""`cxrtool import xrv NAME`: one of torchxrayvision's DenseNet-121 models as a cxrtool run.

torchxrayvision publishes DenseNet-121 networks trained on NIH, CheXpert, MIMIC, PadChest, RSNA
and all of them together. Their files are pickled whole models: loading one runs code from it.
So the file is opened only here, only by torchxrayvision's own loader, and only after the user
named the model (or the file, `--weights-file`); nothing is downloaded unless `download` is set.
A `--weights-file` is copied into a private folder while its SHA-256 is computed, and the copy is
checked before torchxrayvision unpickles it (the bytes checked are the bytes loaded): against
PUBLISHED_SHA256 when the model has a published hash, refused on a mismatch, and refused when no
hash is published, unless the user passes `--trust-weights-file`. torchxrayvision (1.5.7) and its
release page publish no hashes, so today every `--weights-file` needs `--trust-weights-file`; a
file in torchxrayvision's own cache (where its download puts it) is loaded as torchxrayvision
itself would load it, and checked too when a hash is known.
The network becomes an ordinary cxrtool checkpoint: safetensors weights (the torchvision
DenseNet-121 layout with a one-channel stem) plus a card with the model's own labels (its
non-empty outputs, in its order), its input convention ("torchxrayvision": one channel, pixel
values mapped to -1024..1024, 224 px) and its provenance (package version, weight name, file,
SHA-256). Before anything is written, the converted network is run beside torchxrayvision's on
the same input and must give the same logits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.lineage import unknown_lineage
from ..errors import CxrError, did_you_mean
from ..models.checkpoint import model_card, save_checkpoint
from ..models.registry import create_model
from ..optionspec import option
from ..owned import owned_folder
from ..progress import info, result
from ..run_locks import holds_locks, new_run_dir
from ..runs import write_manifest
from . import require_package

ARCH = "densenet121"
CONVENTION = "torchxrayvision"
INPUT_SIZE = 224
# Logits may differ by float summation order only (pooling); 1e-5 of the largest logit, at least 1e-5.
CHECK_RTOL = 1e-5
# Weight file name (as in torchxrayvision's weights_url) -> its published SHA-256. Empty: neither
# torchxrayvision's model_urls nor its release page publish one. Fill in only from the publisher:
# a hash computed from a file found somewhere proves nothing about that file.
PUBLISHED_SHA256: dict[str, str] = {}


@dataclass
class XrvImportConfig:
    name: str = option(
        help="torchxrayvision weights, e.g. densenet121-res224-nih or densenet121-res224-all.", argument=True
    )  # or torchxrayvision's short alias, e.g. nih
    out: Path | None = option(
        None, help="Run directory to create (new or empty). (default: runs/import-NAME-TIME)"
    )  # run directory to create; runs/import-NAME-TIME when None
    weights_file: Path | None = option(
        None, help="A local copy of the published file (a pickle: only for files you trust)."
    )  # a local copy of the published file
    cache_dir: Path | None = option(
        None, help="Where torchxrayvision keeps its files. (default: ~/.torchxrayvision/models_data)"
    )  # where torchxrayvision keeps its files; its default when None
    download: bool = option(
        False, help="Let torchxrayvision download a missing file from its release page."
    )  # let torchxrayvision fetch a missing file
    trust_weights_file: bool = option(
        False, help="Load a --weights-file whose SHA-256 is not the published one (none is published today)."
    )  # load a --weights-file whose SHA-256 is not the published one

    def __post_init__(self) -> None:
        self.name = str(self.name)
        if self.out is not None:
            self.out = Path(self.out)
        if self.weights_file is not None:
            self.weights_file = Path(self.weights_file)
            if not self.weights_file.is_file():
                raise CxrError(f"--weights-file: {self.weights_file}: no such file")
            if self.download:
                raise CxrError("--download: not with --weights-file (the file is already here)")


def _xrv():
    return require_package("torchxrayvision", "torchxrayvision", "import xrv")


def densenet_names(xrv) -> dict[str, str]:
    """Every accepted name (full and short alias) -> the full DenseNet weight name."""
    urls = xrv.models.model_urls
    full = [k for k in urls if k.startswith(f"{ARCH}-")]
    names = {k: k for k in full}
    for alias, entry in urls.items():
        for k in full:
            if alias not in names and urls[k] is entry:
                names[alias] = k
    return names


def resolve_name(xrv, name: str) -> str:
    names = densenet_names(xrv)
    if name in names:
        return names[name]
    if name in xrv.models.model_urls:
        raise CxrError(
            f"import xrv: {name} is not a DenseNet-121 model; cxrtool imports {', '.join(sorted(set(names.values())))}"
        )
    full = sorted(set(names.values()))
    raise CxrError(
        f"import xrv: unknown model {name!r}; choose one of {', '.join(full)}.{did_you_mean(name, list(names))}"
    )


def copy_and_hash(path: Path, dest: Path) -> str:
    """Copy `path` to `dest` byte for byte, returning the SHA-256 of the bytes copied.

    The copy is what gets loaded, so a file changed after the check cannot slip past it.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as src, open(dest, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except OSError as exc:
        raise CxrError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def check_published_hash(xrv, name: str, path: Path, digest: str, local: bool, trusted: bool) -> str:
    """Refuse weights that are not the published file before anything unpickles them.

    Returns how the file was checked ("published", "trusted by the user", "not checked").
    `local` is a --weights-file (from anywhere); otherwise the file is in torchxrayvision's cache.
    """
    file = os.path.basename(xrv.models.model_urls[name]["weights_url"])
    known = PUBLISHED_SHA256.get(file)
    if known is not None and digest == known:
        return "published"
    if trusted:
        return "trusted by the user"
    unsafe = "it is a pickle (loading it runs any code it holds), so it was not opened"
    if known is not None:
        raise CxrError(
            f"{path}: SHA-256 {digest[:16]}... is not the published {known[:16]}... of {file} ({name}); "
            f"{unsafe}; pass --trust-weights-file only if you trust this file"
        )
    if local:
        raise CxrError(
            f"--weights-file {path}: torchxrayvision publishes no SHA-256 for {name}, so the file cannot be "
            f"checked before it is unpickled; {unsafe}; pass --trust-weights-file if you trust it "
            "(or use torchxrayvision's own cache: --download)"
        )
    return "not checked"


def source_file(xrv, name: str, cfg: XrvImportConfig) -> Path:
    """The published file for `name`: --weights-file, or torchxrayvision's cache (fetched with --download)."""
    if cfg.weights_file is not None:
        return cfg.weights_file
    url = xrv.models.model_urls[name]["weights_url"]
    folder = Path(cfg.cache_dir or xrv.utils.get_cache_dir()).expanduser()
    path = folder / os.path.basename(url)
    if path.is_file():
        return path
    if not cfg.download:
        raise CxrError(
            f"import xrv {name}: needs {path.name} in {folder}/ (torchxrayvision's cache; it comes from {url}); "
            f"copy it there, give it with --weights-file PATH, or add --download"
        )
    info(f"downloading {url} into {folder}/ (torchxrayvision)")
    try:
        xrv.models.get_weights(name, str(folder) + os.sep)
    except Exception as exc:
        raise CxrError(
            f"import xrv {name}: could not download {url} ({type(exc).__name__}); "
            f"copy {path.name} into {folder}/ or give --weights-file PATH"
        ) from None
    return path


def load_checked(xrv, name: str, path: Path, cfg: XrvImportConfig) -> tuple[torch.nn.Module, str, str]:
    """(torchxrayvision's model, SHA-256, how it was checked): the file copied, hashed, checked, loaded.

    torchxrayvision looks for the file under its published name in cache_dir: the copy is put
    there, so that it reads exactly the bytes hashed and never tries to download.
    """
    expected = os.path.basename(xrv.models.model_urls[name]["weights_url"])
    with tempfile.TemporaryDirectory(prefix="cxrtool-xrv-") as tmp:
        copy = Path(tmp) / expected
        digest = copy_and_hash(path, copy)
        checked = check_published_hash(
            xrv, name, path, digest, local=cfg.weights_file is not None, trusted=cfg.trust_weights_file
        )
        return load_with_xrv(xrv, name, path, Path(tmp)), digest, checked


def load_with_xrv(xrv, name: str, path: Path, folder: Path) -> torch.nn.Module:
    """torchxrayvision's own loader on the file under its published name in `folder` (which
    unpickles it), silenced; its model in eval mode. `path` names the file in messages."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = xrv.models.DenseNet(weights=name, cache_dir=str(folder) + os.sep)
    except Exception as exc:
        raise CxrError(
            f"{path}: torchxrayvision could not load it as {name} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    return model.eval()


def convert(xrv_model: torch.nn.Module, labels_all: list[str]):
    """A cxrtool classifier with the xrv network's body and the head rows of its non-empty outputs."""
    outputs = [j for j, label in enumerate(labels_all) if label]
    model = create_model(ARCH, len(outputs), weights="none")
    model.set_input_convention(CONVENTION)
    state = xrv_model.state_dict()
    body = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = model.body.features.load_state_dict(body, strict=False)
    if missing or unexpected:
        raise CxrError(
            f"torchxrayvision's network does not fit {ARCH} (missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )
    with torch.no_grad():
        model.head.weight.copy_(state["classifier.weight"][outputs])
        model.head.bias.copy_(state["classifier.bias"][outputs])
    return model.eval(), outputs


@torch.no_grad()
def xrv_logits(xrv_model: torch.nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """torchxrayvision's logits for images in [0, 1], fed as its `normalize(img, 255)` makes them."""
    return xrv_model.classifier(xrv_model.features2((x01 * 2 - 1) * 1024))


@torch.no_grad()
def check_conversion(
    xrv_model: torch.nn.Module, model: torch.nn.Module, outputs: list[int], seed: int = 0
) -> tuple[float, float]:
    """(max |logit difference|, tolerance) on two random 224-px images; fails above the tolerance."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, INPUT_SIZE, INPUT_SIZE, generator=gen)
    reference = xrv_logits(xrv_model, x)[:, outputs]
    diff = float((reference - model(x)).abs().max())
    tolerance = CHECK_RTOL * max(1.0, float(reference.abs().max()))
    if not diff <= tolerance:
        raise CxrError(
            f"the converted network differs from torchxrayvision's by {diff:.3g} in logits (tolerance {tolerance:.3g}); nothing written"
        )
    return diff, tolerance


@holds_locks
def import_xrv(cfg: XrvImportConfig) -> Path:
    """Convert the named model; returns the new run directory (checkpoints/best + manifest)."""
    xrv = _xrv()
    name = resolve_name(xrv, cfg.name)
    existed = cfg.out is not None and Path(cfg.out).is_dir()
    run_dir = new_run_dir("import", name, cfg.out)  # refuses a non-empty --out before any work
    owned = owned_folder(run_dir)
    try:
        entry = xrv.models.model_urls[name]
        path = source_file(xrv, name, cfg)
        xrv_model, digest, checked = load_checked(xrv, name, path, cfg)
        labels_all = list(entry["labels"])
        model, outputs = convert(xrv_model, labels_all)
        diff, tolerance = check_conversion(xrv_model, model, outputs)
        labels = [labels_all[j] for j in outputs]
        op_threshs = entry.get("op_threshs")
        source: dict[str, Any] = {
            "package": "torchxrayvision",
            "version": getattr(xrv, "__version__", None),
            "weights": name,
            "file": path.name,
            "sha256": digest,
            "sha256_checked": checked,
            "url": entry.get("weights_url"),
            "outputs": outputs,
            "description": entry.get("description"),
            # The authors' operating points (chosen on their data), kept for reference only:
            # cxrtool's own operating points are chosen by `evaluate` on the data's val split.
            "op_threshs": {labels_all[j]: float(op_threshs[j]) for j in outputs} if op_threshs is not None else None,
            "check": {"max_abs_logit_diff": diff, "tolerance": tolerance},
        }
        card = model_card(model, labels, image_size=INPUT_SIZE, cache_size=INPUT_SIZE, data_hash=None, source=source)
        save_checkpoint(run_dir / "checkpoints" / "best", model, card)
        # Trained elsewhere on public collections (NIH among them): its images are not known one by one.
        lineage = unknown_lineage(
            f"torchxrayvision's {name} weights: trained on {entry.get('description') or 'public collections'}"
        )
        write_manifest(run_dir, kind="import", arch=ARCH, labels=labels, data=None, source=source, lineage=lineage)
    except BaseException:
        # Complete or absent: remove what this import wrote, as its record lists (an --out folder the
        # user made stays, empty); nothing else was there (new_run_dir refused any other file).
        if owned is not None:
            owned.abandon()
        if not existed:  # this import created the folder: none of it is anyone else's
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    result(f"imported {name} ({len(labels)} labels: {', '.join(labels)})")
    result(f"run: {run_dir}  (sha256 {digest[:16]}..., logits match torchxrayvision to {diff:.1e})")
    return run_dir
