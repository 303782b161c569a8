"""Decoding any X-ray file to 8-bit grayscale, and the square resize the cache uses.

Files are recognised by their content, not their extension (the Cohen set has `.jpg` files that
hold PNG data). PNG (8 and 16 bit), JPEG, palette/RGB/RGBA images and DICOM are supported:
DICOM goes through pydicom with the modality LUT, the VOI LUT (window) and MONOCHROME1 inversion
applied. `preprocess` is the single definition of "the cache's preprocessing" (centre square crop,
then resize to S x S); `cxrtool predict` and `cxrtool cam` call it too, so a file on disk reaches
the network exactly as a cached image does. An image over `MAX_PIXELS` (50 megapixels) is refused
from its header, as unreadable, before any pixel is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
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


def _read_dicom(path: Path) -> np.ndarray:
    try:
        # lazy: pydicom, only for DICOM files
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise ImageReadError("pydicom is not installed") from None
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageReadError(f"unreadable DICOM ({type(exc).__name__}: {exc})") from None
    check_pixels(getattr(ds, "Columns", 0) or 0, getattr(ds, "Rows", 0) or 0, getattr(ds, "NumberOfFrames", 1) or 1)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageReadError(f"unreadable DICOM ({type(exc).__name__}: {exc})") from None
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


def _read_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
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
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("file not found")
    if path.stat().st_size == 0:
        raise ImageReadError("empty file")
    arr = _read_dicom(path) if is_dicom(path) else _read_pil(path)
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
