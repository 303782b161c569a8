"""Atomic writes: every artifact is complete or absent.

A file is written to a temporary name in its own folder and renamed onto its path, so an
interrupted write never leaves a half-written artifact behind; it gets the mode `open()` would give
it (the umask decides), and it is recorded as the command's own before it appears (owned.py), so
`--overwrite` may later replace it. JSON is written without NaN (null instead), so every JSON
reader accepts cxrtool's files, and read back within safeio's size and depth limits.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CxrError
from .owned import current_umask, note_written
from .safeio import read_json_file


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then rename tmp_path onto `path` (same folder, so rename is atomic).

    mkstemp creates its file 0600; it is given the mode `open()` would have used (0666 less the
    umask) so that a lab group reads our artifacts exactly as it reads the user's other files.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        note_written(path)  # recorded before it appears, so a killed command's files are still its own
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CxrError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk or a vanished folder: the old file (if any) is untouched
        raise CxrError(f"{path}: could not be written ({exc.strerror or exc})") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    # surrogateescape: a file name that is not UTF-8 (read from the disk as lone surrogates) is
    # written back as its own bytes, so a CSV names the real file instead of failing to be written.
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8", errors="surrogateescape"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def _json_default(obj: Any):
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
    """A JSON file within safeio's size and depth limits; one line naming the file otherwise."""
    return read_json_file(path)
