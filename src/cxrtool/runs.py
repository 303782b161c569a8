"""Run directories: create, find, describe and write into them safely.

A run directory holds everything one command produced: `config.yaml`, `manifest.json`,
`metrics.csv`, `checkpoints/{best,last}/`, and sub-folders written by later stages (`eval/`,
`cam/`, `embed/`). Commands given no run use the newest one under `./runs` and say which.
Every file is written to a temporary name and renamed, so an interrupted write never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import CxrError

DEFAULT_RUNS_ROOT = Path("runs")
MANIFEST = "manifest.json"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class RunPaths:
    """Standard paths inside a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        return self.checkpoints / which

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def cam(self) -> Path:
        return self.root / "cam"

    @property
    def embed(self) -> Path:
        return self.root / "embed"


# ---------------------------------------------------------------- atomic writes


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then rename tmp_path onto `path` (same folder, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def _json_default(obj: Any):
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: write null so every JSON reader accepts our files."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(_nan_to_none(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CxrError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CxrError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


# ---------------------------------------------------------------- manifests


def git_commit() -> str | None:
    """The commit of the cxrtool source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions that decide whether a result can be reproduced (read without importing torch)."""
    from importlib import metadata

    from . import __version__

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cxrtool": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "torchvision": version("torchvision"),
        "numpy": version("numpy"),
        "platform": platform.platform(),
    }


def write_manifest(directory: Path, **fields: Any) -> Path:
    """Write manifest.json: the given fields plus the time and the software environment."""
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields, "environment": environment()}
    return atomic_write_json(Path(directory) / MANIFEST, manifest)


def read_manifest(directory: Path) -> dict[str, Any]:
    return read_json(Path(directory) / MANIFEST)


# ---------------------------------------------------------------- finding runs


def new_run_dir(kind: str, arch: str, out: Path | None = None, root: Path = DEFAULT_RUNS_ROOT) -> Path:
    """Create a fresh run directory: `out` if given (must be new or empty), else runs/KIND-ARCH-TIME."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(root) / f"{kind}-{arch}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path(root) / f"{kind}-{arch}-{stamp}-{n}"
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CxrError(f"{out}: run directory exists and is not empty; pass --resume to continue it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrError(f"{out}: cannot create run directory ({exc.strerror})") from None
    return out


OOF_PREDICTIONS = "oof_predictions.csv"  # what a cross-validation run holds instead of one checkpoint


def is_run_dir(path: Path) -> bool:
    """A training run (checkpoints/) or a cross-validation run (one sub-run per fold)."""
    path = Path(path)
    return (path / MANIFEST).is_file() and ((path / "checkpoints").is_dir() or (path / OOF_PREDICTIONS).is_file())


def is_cv_run(path: Path) -> bool:
    """A cross-validation run: out-of-fold predictions and no single checkpoint of its own."""
    return (Path(path) / OOF_PREDICTIONS).is_file() and not (Path(path) / "checkpoints").is_dir()


def latest_run(root: Path = DEFAULT_RUNS_ROOT) -> Path | None:
    """The most recently created run directory under `root` (by manifest time), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    runs = [p for p in root.iterdir() if p.is_dir() and is_run_dir(p)]
    if not runs:
        return None
    return max(runs, key=lambda p: (p / MANIFEST).stat().st_mtime)


def resolve_run(run: Path | None, root: Path = DEFAULT_RUNS_ROOT) -> Path:
    """The run a command works on: the one given, else the newest under ./runs (and say which)."""
    from .progress import info

    if run is not None:
        run = Path(run)
        if not run.exists():
            raise CxrError(f"{run}: no such run directory")
        if not is_run_dir(run):
            raise CxrError(f"{run}: not a run directory (no manifest.json and checkpoints/); give a run made by pretrain or finetune")
        return run
    found = latest_run(root)
    if found is None:
        raise CxrError(f"no run given and none found under {root}/; run `cxrtool pretrain` first or pass --run DIR")
    info(f"using the newest run: {found}")
    return found
