"""Walking an image root: follow directory links (datasets are often assembled from links to other
disks), but never enter the same directory twice, so a link loop (`a/b/up -> ../..`) or two links
to one folder can neither hang a command nor list a file twice.

`walk_files(root)` yields (folder, sorted file names) like `os.walk`, skipping hidden folders; a
directory is known by its (device, inode), so the same folder reached by two paths is walked once,
under the first path in sorted order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator


def walk_files(root: str | Path) -> Iterator[tuple[Path, list[str]]]:
    seen: set[tuple[int, int]] = set()
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirs[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # reached again through a link: do not walk it (or below it) twice
            dirs[:] = []
            continue
        seen.add(key)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(dirpath), sorted(files)
