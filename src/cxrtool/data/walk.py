"""Walking an image root: follow directory links (datasets are often assembled from links to other
disks), but never enter the same directory twice, so a link loop (`a/b/up -> ../..`) or two links
to one folder can neither hang a command nor list a file twice.

`walk_files(root)` yields (folder, sorted file names) like `os.walk`, skipping hidden folders; a
directory is known by its (device, inode), so the same folder reached by two paths is walked once,
under the first path in sorted order. `collect_image_files(inputs)` turns what a user named
(files and folders) into the image files to read, for `predict` and `cam`; a FIFO, device or
socket (or a link to one) among them is listed as skipped with what it is, never opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .imageio import IMAGE_SUFFIXES, file_problem, is_dicom


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


def collect_image_files(inputs: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to read (folders walked for images, DICOM found by content too) and skipped inputs.

    A file named explicitly is tried whatever its extension; in a folder, hidden files are left
    out and files without an extension are kept only when they are DICOM.
    """
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        if item.is_dir():
            found, odd = [], []
            for folder, names in walk_files(item):
                for name in names:
                    path = folder / name
                    if name.startswith(".") or not _named_like_image(path):
                        continue
                    problem = file_problem(path)
                    if problem is not None:
                        odd.append((str(path), problem))  # a FIFO named x.png: listed, never opened
                    elif path.suffix or is_dicom(path):
                        found.append(path)
            if not found and not odd:
                skipped.append((str(item), "folder holds no PNG, JPEG or DICOM files"))
            files.extend(sorted(found))
            skipped.extend(sorted(odd))
        else:
            problem = file_problem(item)
            if problem is None:
                files.append(item)
            else:
                skipped.append((str(item), problem))
    return files, skipped


def _named_like_image(path: Path) -> bool:
    """An image extension, or none at all (such a file is kept when it holds DICOM)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or not suffix
