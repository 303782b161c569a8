"""In-place and chunked edits of a cache's .npy image file (never a whole copy in memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(rows), *tuple(source.shape[1:])))
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        target[start : start + len(chunk)] = source[chunk]
    target.flush()
    del target
