"""A cache's .npy image file: allocated on disk up front, edited in place and in chunks.

`open_images` creates the (n, S, S) uint8 memmap that `prepare` (and combine, dedupe) decode
into. A memmap's file is sparse: a full disk would show only when a page is first written back,
as SIGBUS, which kills the process with no message and no clean-up. So the space is checked
first (one line naming the folder, what is needed and what is free) and then reserved with
`posix_fallocate`, which reports a full disk as an OSError while nothing is written yet.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from ..errors import CxrError, fs_error


def free_bytes(folder: Path) -> int | None:
    """Bytes this user may still write under `folder` (None where the system cannot tell)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    return st.f_bavail * st.f_frsize


def open_images(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 .npy memmap of `shape` at `path`, its disk space checked and reserved (see above)."""
    path = Path(path)
    # The folder the user chose, not a temporary one inside it (.prepare-tmp).
    where = next((p for p in path.parents if not p.name.startswith(".")), path.parent)
    need = int(np.prod(shape))
    free = free_bytes(path.parent)
    if free is not None and need > free:
        raise CxrError(
            f"{where}: not enough disk space for the images ({need / 1e6:,.1f} MB needed, "
            f"{free / 1e6:,.1f} MB free): free space or choose an --out on another disk"
        )
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        try:
            with open(path, "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # a file system without it
                del images
                path.unlink(missing_ok=True)
                raise fs_error(where, exc, "cannot reserve disk space for the images") from None
    return images


def shrink_images(images_path: Path, n: int) -> None:
    """Keep the first n images of an .npy file, in place: a new header, then the file is cut.

    No copy is made (at NIH scale a copy would be another 7.3 GB): the header is rewritten with
    the smaller shape, padded to its old length, and the rows past n are truncated away.
    """
    with open(images_path, "r+b") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
        if shape[0] == n:
            return
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": fortran,
            "shape": (n, *tuple(shape[1:])),
        }
        text = repr(header).encode("latin1")
        # The same header length as before (a shorter shape only needs more padding spaces).
        prefix = 10 if version == (1, 0) else 12
        pad = offset - prefix - len(text) - 1
        if pad < 0:
            raise ValueError(f"{images_path}: cannot rewrite the .npy header in place")
        text += b" " * pad + b"\n"
        fh.seek(0)
        fh.write(np.lib.format.magic(*version))
        fh.write((len(text)).to_bytes(2 if version == (1, 0) else 4, "little"))
        fh.write(text)
        fh.truncate(offset + n * int(np.prod(shape[1:])) * dtype.itemsize)


def write_images_subset(source: np.ndarray, rows: np.ndarray, path: Path) -> None:
    """Write source[rows] to an .npy file in chunks (combine, dedupe --drop-from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = open_images(path, (len(rows), *tuple(source.shape[1:])))
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        target[start : start + len(chunk)] = source[chunk]
    target.flush()
    del target
