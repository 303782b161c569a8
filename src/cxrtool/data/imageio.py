"""Decoding any X-ray file to 8-bit grayscale, and the square resize the cache uses.

Files are recognised by their content, not their extension (the Cohen set has `.jpg` files that
hold PNG data). PNG (8 and 16 bit), JPEG, palette/RGB/RGBA images and DICOM are supported:
DICOM goes through pydicom with the modality LUT, the VOI LUT (window) and MONOCHROME1 inversion
applied. `preprocess` is the single definition of "the cache's preprocessing" (centre square crop,
then resize to S x S); `cxrtool predict` and `cxrtool cam` call it too, so a file on disk reaches
the network exactly as a cached image does. An image over `MAX_PIXELS` (50 megapixels) is refused
from its header, as unreadable, before any pixel is allocated.

Every image file is opened through `open_regular`, the one place a path becomes an open file: it
opens without blocking and refuses anything but a regular file (a FIFO would block a reader
forever, `/dev/zero` never ends), naming what the path is ("not a regular file (FIFO)"). A DICOM
is refused when an element declares more than `MAX_DICOM_ELEMENT` bytes or when a Deflated file
inflates past `MAX_DICOM_BYTES`, before pydicom allocates either.
"""

from __future__ import annotations

import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

# The largest image decoded, in pixels (width x height x frames). A radiograph is at most about
# 4300 x 4300 (18 megapixels); 50 megapixels leaves room for any detector while refusing a
# "decompression bomb" (a small file that declares a huge image) before its pixels are allocated.
MAX_PIXELS = 50_000_000
# Pillow's own check warns (a raw DecompressionBombWarning line) or raises an exception that is not
# an OSError; `check_pixels` replaces it with a skipped file and its reason, for every format.
Image.MAX_IMAGE_PIXELS = None

# File extensions taken for images when a folder is walked (prepare, predict) or a name is read
# (cam's output names, the command line's "run or image?" guess). Decoding itself goes by content.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp")


def check_pixels(width: int, height: int, frames: int = 1) -> None:
    """Refuse an image over MAX_PIXELS before decoding it (the reason goes to skipped.csv)."""
    pixels = int(width) * int(height) * max(1, int(frames))
    if pixels > MAX_PIXELS:
        raise ImageReadError(
            f"image is {width} x {height}"
            + (f" x {frames} frames" if frames > 1 else "")
            + f" = {pixels / 1e6:.0f} megapixels, over the {MAX_PIXELS // 1_000_000} megapixel limit "
            "(a decompression bomb or not a radiograph)"
        )


class ImageReadError(Exception):
    """An image that cannot be decoded; the message is the reason (for skipped.csv)."""


# What a path that is not a regular file is, by its st_mode, for the reason shown to the user.
_KINDS = (
    (stat.S_ISDIR, "a folder, not an image file"),
    (stat.S_ISFIFO, "not a regular file (FIFO)"),
    (stat.S_ISCHR, "not a regular file (character device)"),
    (stat.S_ISBLK, "not a regular file (block device)"),
    (stat.S_ISSOCK, "not a regular file (socket)"),
)


def _kind_problem(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((reason for test, reason in _KINDS if test(mode)), "not a regular file")


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as an image file (links followed), or None for a regular file.

    For listing a file as skipped before any worker touches it; `open_regular` checks again on
    the open file, so a path swapped for a FIFO in between still cannot block.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken link (its target does not exist)" if os.path.islink(path) else "file not found"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return _kind_problem(st.st_mode)


def open_regular(path: str | Path) -> BinaryIO:
    """Open `path` for reading in binary, refusing anything but a regular file (ImageReadError).

    The path is looked at first (a device is never even opened: opening some has side effects),
    then opened with O_NONBLOCK, so a path swapped for a FIFO meanwhile returns at once instead of
    waiting for a writer, and checked again on the opened descriptor (fstat): the file actually
    read. Reads on a regular file are unaffected by O_NONBLOCK.
    """
    problem = file_problem(path)
    if problem is not None:
        raise ImageReadError(problem)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageReadError(file_problem(path) or "file not found") from None
    except IsADirectoryError:
        raise ImageReadError("a folder, not an image file") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read ({exc.strerror or exc})") from None
    try:
        problem = _kind_problem(os.fstat(fd).st_mode)
    except OSError as exc:
        problem = f"cannot read ({exc.strerror or exc})"
    if problem is not None:
        os.close(fd)
        raise ImageReadError(problem)
    return os.fdopen(fd, "rb")


@dataclass(frozen=True)
class Crop:
    """Where the square crop was taken in the original image (pixels)."""

    x: int
    y: int
    side: int
    width: int
    height: int


def is_dicom(path: str | Path) -> bool:
    """Whether the file holds DICOM data: the "DICM" marker after the 128-byte preamble.

    A file that cannot be opened is not DICOM here (False, never an exception): the decoder then
    reports it as unreadable, a skipped file rather than a crash in a loader worker, and a folder
    walk leaves it out.
    """
    try:
        with open_regular(path) as fh:
            head = fh.read(132)
    except (OSError, ImageReadError):
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Min-max scale any numeric array to 0..255 (used for 16-bit and DICOM data)."""
    arr = np.asarray(arr, dtype=np.float64)
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ImageReadError("pixel data is not finite")
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.round((arr - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


# The most bytes a DICOM may hold once inflated (its dataset, for the Deflated transfer syntax) and
# the longest single element it may declare. A 50-megapixel 16-bit image is 100 MB of pixels;
# 256 MiB leaves room for overlays and headers while refusing a small Deflated file that inflates
# to gigabytes (a 1 MB file of zeros declaring a 1 GB private element).
MAX_DICOM_BYTES = 256 * 1024 * 1024
MAX_DICOM_ELEMENT = MAX_DICOM_BYTES
DEFLATED = "1.2.840.10008.1.2.1.99"
# Explicit-VR encodings whose length field is 4 bytes (after 2 reserved ones); others have 2.
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _meta_transfer_syntax(fh: BinaryIO) -> tuple[str, int]:
    """(transfer syntax UID, offset where the dataset starts) from the file meta group (0002,xxxx).

    Read by hand, element by element (the group is always explicit VR little endian), so that
    nothing after it is read or inflated yet; each declared length is checked before its read.
    """
    fh.seek(132)
    syntax = ""
    while True:
        at = fh.tell()
        head = fh.read(8)
        if len(head) < 8 or int.from_bytes(head[0:2], "little") != 0x0002:
            return syntax, at
        element, vr = int.from_bytes(head[2:4], "little"), head[4:6]
        if vr in _LONG_VRS:
            extra = fh.read(4)
            length = int.from_bytes(extra, "little") if len(extra) == 4 else 0
        else:
            length = int.from_bytes(head[6:8], "little")
        if length > MAX_DICOM_ELEMENT:
            raise ImageReadError(
                f"DICOM header element declares {length:,} bytes, over the {MAX_DICOM_ELEMENT:,} limit"
            )
        value = fh.read(length)
        if element == 0x0010:
            syntax = value.rstrip(b"\0 ").decode("ascii", "replace")


def _check_inflated_size(fh: BinaryIO, start: int) -> None:
    """Refuse a Deflated DICOM whose dataset inflates past MAX_DICOM_BYTES (memory stays bounded)."""
    fh.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as the standard has it
    total = 0
    while chunk := fh.read(1 << 20):
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, 1 << 22)
            except zlib.error as exc:
                raise ImageReadError(f"unreadable DICOM (broken Deflated data: {exc})") from None
            total += len(out)
            if total > MAX_DICOM_BYTES:
                raise ImageReadError(
                    f"Deflated DICOM inflates to over {MAX_DICOM_BYTES // (1024 * 1024)} MiB "
                    "(the limit; a decompression bomb or not a radiograph)"
                )
            data = inflater.unconsumed_tail
            if inflater.eof:
                return


def _first_line(exc: BaseException) -> str:
    """An exception's message as one line (pydicom's run over several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _no_decoder(ds) -> str | None:
    """The one-line reason when the pixel data is compressed and no installed package decodes it."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return None
    try:
        # lazy: pydicom, only for DICOM files
        from pydicom.pixels import get_decoder

        decoder = get_decoder(syntax)
    except Exception:  # a transfer syntax pydicom has no decoder for at all
        return f"compressed DICOM ({syntax.name or syntax}) that pydicom cannot decode"
    if decoder.is_available:
        return None
    needs = [d for d in getattr(decoder, "missing_dependencies", []) if d.startswith("pylibjpeg")]
    needs = needs or list(getattr(decoder, "missing_dependencies", []))
    packages = "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
    if needs and "requires " in needs[0]:
        wanted = needs[0].split("requires ", 1)[1].split(" and ")
        packages = " ".join(w.strip().split(">")[0].split("=")[0].split("<")[0] for w in wanted)
    return f"compressed DICOM ({syntax.name}) with no decoder installed; pip install {packages}"


def _read_dicom(fh: BinaryIO, path: Path, size: int) -> np.ndarray:
    try:
        # lazy: pydicom, only for DICOM files
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise ImageReadError("pydicom is not installed") from None
    if size > MAX_DICOM_BYTES:
        raise ImageReadError(f"DICOM of {size:,} bytes, over the {MAX_DICOM_BYTES // (1024 * 1024)} MiB limit")
    syntax, start = _meta_transfer_syntax(fh)
    if syntax == DEFLATED:
        _check_inflated_size(fh, start)
    fh.seek(0)
    try:
        ds = pydicom.dcmread(fh)
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageReadError(f"unreadable DICOM ({type(exc).__name__}: {_first_line(exc)})") from None
    if (reason := _no_decoder(ds)) is not None:
        raise ImageReadError(reason)
    check_pixels(getattr(ds, "Columns", 0) or 0, getattr(ds, "Rows", 0) or 0, getattr(ds, "NumberOfFrames", 1) or 1)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageReadError(f"unreadable DICOM ({type(exc).__name__}: {_first_line(exc)})") from None
    if pixels.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        pixels = pixels[0]  # multi-frame: the first frame
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
        return _to_uint8(pixels)
    try:
        arr = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    except Exception as exc:  # a malformed LUT is one bad file, not a reason to stop a whole prepare
        raise ImageReadError(f"DICOM with an unusable LUT ({type(exc).__name__}: {exc})") from None
    out = _to_uint8(arr)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: high values are dark; radiographs are shown bones-bright
    return out


def _read_pil(fh: BinaryIO) -> np.ndarray:
    try:
        with Image.open(fh) as im:
            check_pixels(*im.size)  # before load: only the header has been read
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return _to_uint8(np.asarray(im, dtype=np.float64))
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                # Transparent pixels over black, as a viewer on a dark background shows them.
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            if mode == "L":
                return np.asarray(im, dtype=np.uint8).copy()
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ImageReadError("not an image file PIL or pydicom can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image ({exc})") from None


def read_gray(path: str | Path) -> np.ndarray:
    """Decode an image file to a 2-D uint8 array (H, W). Raises ImageReadError with the reason."""
    with open_regular(path) as fh:
        return read_gray_from(fh, Path(path))


def read_gray_from(fh: BinaryIO, path: Path) -> np.ndarray:
    """`read_gray` on a file opened by `open_regular` (prepare hashes the same open file first)."""
    fh.seek(0)
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        raise ImageReadError("empty file")
    head = fh.read(132)
    fh.seek(0)
    dicom = len(head) == 132 and head[128:132] == b"DICM"
    arr = _read_dicom(fh, path, size) if dicom else _read_pil(fh)
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise ImageReadError(f"unexpected image shape {arr.shape}")
    return arr


def square_crop(arr: np.ndarray) -> tuple[np.ndarray, Crop]:
    """The centred square of side min(H, W); radiographs are near-square and centred on the chest."""
    h, w = arr.shape
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return arr[y : y + side, x : x + side], Crop(x=x, y=y, side=side, width=w, height=h)


def resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize a square uint8 image to size x size with an antialiasing filter."""
    if arr.shape == (size, size):
        return arr
    im = Image.fromarray(arr, mode="L")
    # reducing_gap makes large downscales fast (JPEG-style box pre-reduction) at negligible cost.
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.uint8)


def preprocess(arr: np.ndarray, size: int) -> tuple[np.ndarray, Crop]:
    """The cache's preprocessing: centre square crop, then resize to size x size."""
    square, crop = square_crop(arr)
    return resize(square, size), crop


def load_preprocessed(path: str | Path, size: int) -> tuple[np.ndarray, Crop]:
    """Read a file and preprocess it exactly as `cxrtool prepare` does."""
    return preprocess(read_gray(path), size)
