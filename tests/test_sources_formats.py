"""Every file format `prepare` meets, through `prepare folder`: good ones cached, bad ones listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrtool.data.cache import PreparedData
from cxrtool.data.prepare import PrepareFolderConfig, prepare_folder

SIDE = 64


def gradient(high: int, dtype) -> np.ndarray:
    """Left-to-right ramp from 0 to `high` with a bright square (so orientation is checkable)."""
    ramp = np.tile(np.linspace(0, high, SIDE), (SIDE, 1))
    ramp[8:24, 8:24] = high
    return ramp.astype(dtype)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, window: tuple[float, float] | None) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "dcm"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> PreparedData:
    root = tmp_path_factory.mktemp("formats")
    g8 = gradient(255, np.uint8)
    Image.fromarray(g8).save(root / "gray8.png")
    Image.fromarray(gradient(4000, np.uint16)).save(root / "gray16.png")
    rgba = np.dstack([g8, g8, g8, np.full_like(g8, 255)])
    Image.fromarray(rgba, mode="RGBA").save(root / "rgba.png")
    Image.fromarray(np.dstack([g8] * 3)).save(root / "rgb.jpg", quality=95)
    Image.fromarray(g8).save(root / "png_named.jpg", format="PNG")  # a .jpg holding PNG data
    Image.fromarray(g8).convert("P").save(root / "palette.png")
    write_dicom(root / "mono2.dcm", gradient(4000, np.uint16), "MONOCHROME2", None)
    write_dicom(root / "mono1.dcm", gradient(4000, np.uint16), "MONOCHROME1", None)
    write_dicom(root / "window.dcm", gradient(4000, np.uint16), "MONOCHROME2", (1000.0, 1000.0))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    full = (root / "gray8.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("not an image")
    names = sorted(p.name for p in root.iterdir())
    pd.DataFrame({"image": names, "finding": [i % 2 for i in range(len(names))], "patient": names}).to_csv(
        root / "list.csv", index=False
    )
    return prepare_folder(
        PrepareFolderConfig(
            csv=root / "list.csv",
            label_cols=["finding"],
            patient_col="patient",
            out=root / "cache",
            size=SIDE,
            workers=2,
        )
    )


def image(data: PreparedData, name: str) -> np.ndarray:
    return np.asarray(data.images[int(np.flatnonzero(data.index["id"] == name)[0])], dtype=float)


def test_readable_formats_are_cached_and_bad_files_listed_with_a_reason(formats):
    cached = set(formats.index["id"])
    assert cached == {
        "gray8.png",
        "gray16.png",
        "rgba.png",
        "rgb.jpg",
        "png_named.jpg",
        "palette.png",
        "mono2.dcm",
        "mono1.dcm",
        "window.dcm",
    }
    skipped = pd.read_csv(formats.root / "skipped.csv").set_index("id")["reason"]
    assert set(skipped.index) == {"corrupt.png", "truncated.png", "empty.png", "text.png"}
    assert "empty" in skipped["empty.png"] and "not an image" in skipped["text.png"]
    assert "truncated" in skipped["truncated.png"] or "corrupt" in skipped["truncated.png"]


def test_every_format_decodes_to_the_same_picture(formats):
    reference = image(formats, "gray8.png")
    for name in ("gray16.png", "rgba.png", "rgb.jpg", "png_named.jpg", "palette.png", "mono2.dcm"):
        assert np.abs(image(formats, name) - reference).mean() < 4, name
    assert reference[:, -4:].mean() > 240 and reference[30:, :4].mean() < 15  # ramp kept its direction


def test_dicom_monochrome1_is_inverted_and_the_window_is_applied(formats):
    mono1, mono2 = image(formats, "mono1.dcm"), image(formats, "mono2.dcm")
    assert np.abs(mono1 - (255 - mono2)).mean() < 2
    windowed = image(formats, "window.dcm")
    # Window 500..1500 of a 0..4000 ramp: the left eighth is black, everything past ~40% is white.
    assert windowed[40:, :6].max() < 10 and windowed[40:, 28:].min() > 245
    assert np.unique(windowed).size > 12  # inside the window (16 columns wide) it is still a ramp
