"""The software a result was made with: versions and cxrtool's own commit, read without importing torch.

Every manifest.json records it (runs.write_manifest), so a number can be traced to the code and
libraries that produced it.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__


def _git(here: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_commit() -> str | None:
    """cxrtool's own commit: its source checkout's, or the one pip recorded when installing from git.

    An installed copy can sit inside the user's own repository (a venv in their project): asking git
    from there would name the user's commit, so git is asked only when this package is the
    checkout's own `src/cxrtool`; otherwise pip's record of the install (PEP 610 direct_url.json)
    is read, and a release installed from an index has no commit.
    """
    here = Path(__file__).resolve().parent
    top = _git(here, "rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() / "src" / "cxrtool" == here:
        return _git(here, "rev-parse", "HEAD")
    try:
        recorded = json.loads(metadata.distribution("cxrtool").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    return recorded.get("vcs_info", {}).get("commit_id")


def environment() -> dict[str, Any]:
    """Versions that decide whether a result can be reproduced (read without importing torch)."""

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
