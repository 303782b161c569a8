"""Hostile inputs (issue 21): FIFOs and devices named as images, YAML/JSON bombs and deep nesting,
a duplicated CSV column, paths that leave --root, a Deflated DICOM that inflates to gigabytes, a
compressed DICOM without its decoder, --workers 1000, spreadsheet formulas in CSV cells, and a
pickle that is not the published torchxrayvision file. Each is reproduced, then must give one
line (or a skipped file with its reason) and never hang, run away or run foreign code."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import cli, one_line
from PIL import Image

from cxrtool.data.cache import PreparedData
from cxrtool.data.sources.synthetic import SyntheticConfig, write_raw
from cxrtool.errors import CxrError


def fifo_and_zero(folder: Path) -> tuple[Path, Path]:
    """A FIFO named fifo.png and a link zero.png -> /dev/zero in `folder` (readers of either hang)."""
    fifo, zero = folder / "fifo.png", folder / "zero.png"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    return fifo, zero


@pytest.fixture
def raw(tmp_path) -> Path:
    out = tmp_path / "raw"
    write_raw(out, SyntheticConfig(n_patients=6, size=64, seed=3))
    return out


# ---------------------------------------------------------------- only regular files are opened


@pytest.mark.timeout(300)
def test_prepare_nih_skips_a_fifo_and_a_dev_zero_link_named_in_the_label_file(raw, tmp_path):
    fifo_and_zero(raw / "images")
    entry = pd.read_csv(raw / "Data_Entry_2017.csv")
    extra = entry.iloc[:2].copy()
    extra["Image Index"] = ["fifo.png", "zero.png"]
    pd.concat([entry, extra]).to_csv(raw / "Data_Entry_2017.csv", index=False)
    # Two workers: the hang was in a decoding worker (100% CPU on /dev/zero).
    res = cli("prepare", "nih", raw, "--out", tmp_path / "c", "--size", 32, "--workers", 2, "-q")
    assert res.exit_code == 0, res.output
    skipped = pd.read_csv(tmp_path / "c" / "skipped.csv", dtype=str).set_index("id")["reason"]
    assert skipped["fifo.png"] == "not a regular file (FIFO)"
    assert skipped["zero.png"] == "not a regular file (character device)"
    assert len(PreparedData(tmp_path / "c")) == len(entry)


def test_prepare_folder_and_covid_name_what_a_special_file_is(raw, tmp_path):
    from cxrtool.data.sources.covid import PrepareCovidConfig, read_covid
    from cxrtool.data.sources.folder import PrepareFolderConfig, read_folder

    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    fifo_and_zero(folder / "images")
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(folder / "images" / "ok.png")
    (folder / "list.csv").write_text(
        "image,covid\nimages/ok.png,1\nimages/fifo.png,0\nimages/zero.png,1\nimages/no.png,0\n"
    )
    table = read_folder(PrepareFolderConfig(csv=folder / "list.csv", label_cols=["covid"], out=tmp_path / "o"))
    reasons = table.skipped.set_index("source_path")["reason"]
    assert reasons["images/fifo.png"] == "not a regular file (FIFO)"
    assert reasons["images/zero.png"] == "not a regular file (character device)"
    assert reasons["images/no.png"].startswith("file not found")
    assert list(table.rows["source_path"]) == ["images/ok.png"]

    (folder / "metadata.csv").write_text(
        "patientid,finding,view,modality,folder,filename\n"
        "p1,COVID-19,PA,X-ray,images,ok.png\np2,COVID-19,PA,X-ray,images,fifo.png\np3,COVID-19,PA,X-ray,images,zero.png\n"
    )
    covid = read_covid(PrepareCovidConfig(root=folder, out=tmp_path / "c"))
    reasons = covid.skipped.set_index("source_path")["reason"]
    assert reasons["images/fifo.png"] == "not a regular file (FIFO)"
    assert reasons["images/zero.png"] == "not a regular file (character device)"


def test_predict_lists_special_files_of_a_folder_as_skipped_with_their_reason(trained_run, synth_data, tmp_path):
    from cxrtool.predict.pipeline import PredictConfig, predict_files

    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.asarray(synth_data.images[0])).save(images / "good.png")
    fifo, zero = fifo_and_zero(images)
    table = predict_files(PredictConfig(inputs=[images, tmp_path / "absent.png"], run=trained_run, device="cpu"))
    assert list(table["file"]) == [str(images / "good.png")]
    skipped = dict(table.attrs["skipped"])
    assert skipped[str(fifo)] == "not a regular file (FIFO)"
    assert skipped[str(zero)] == "not a regular file (character device)"
    assert skipped[str(tmp_path / "absent.png")] == "file not found"


def test_read_gray_refuses_a_fifo_without_blocking(tmp_path):
    from cxrtool.data.imageio import ImageReadError, read_gray

    fifo, zero = fifo_and_zero(tmp_path)
    for path, reason in ((fifo, "FIFO"), (zero, "character device")):
        with pytest.raises(ImageReadError, match=rf"not a regular file \({reason}\)"):
            read_gray(path)
    with pytest.raises(ImageReadError, match="a folder"):
        read_gray(tmp_path)


# ---------------------------------------------------------------- prepare folder's CSV


def folder_set(tmp_path: Path, header: str, rows: list[str]) -> Path:
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
    (root / "list.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root / "list.csv"


def test_a_duplicated_column_name_is_refused_naming_it(tmp_path):
    csv = folder_set(tmp_path, "image,Mass,Mass,patient", [f"images/{i}.png,1,0,p{i}" for i in range(3)])
    res = cli("prepare", "folder", csv, "--label-cols", "Mass", "--out", tmp_path / "o", "-q")
    assert res.exit_code == 2 and "'Mass' appears twice" in one_line(res) and str(csv) in res.output


def test_paths_outside_the_root_are_refused_unless_allowed(tmp_path):
    outside = tmp_path / "elsewhere.png"
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(outside)
    for cell in ("../../../../../../etc/passwd", "../elsewhere.png", str(outside)):
        csv = folder_set(
            tmp_path / cell.replace("/", "_"), "image,covid", ["images/0.png,1", "images/1.png,0", f"{cell},1"]
        )
        res = cli("prepare", "folder", csv, "--label-cols", "covid", "--out", tmp_path / "o", "-q")
        line = one_line(res)
        assert res.exit_code == 2 and "row 4" in line and "outside --root" in line and "--allow-outside-root" in line
    csv = folder_set(tmp_path / "allowed", "image,covid", ["images/0.png,1", "images/1.png,0", f"{outside},1"])
    args = ["--label-cols", "covid", "--size", 16, "--workers", 1, "--val-frac", 0, "--test-frac", 0, "-q"]
    res = cli("prepare", "folder", csv, *args, "--out", tmp_path / "ok", "--allow-outside-root")
    assert res.exit_code == 0, res.output
    assert str(outside) in set(PreparedData(tmp_path / "ok").index["source_path"])


# ---------------------------------------------------------------- YAML and JSON limits

ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    + ["epochs: *i"]
)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    from cxrtool.config import build_config
    from cxrtool.train.config import TrainConfig

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB + "\n")  # 10**9 values once expanded, 100 bytes of aliases
    with pytest.raises(CxrError, match="alias bomb") as err:
        build_config(TrainConfig, bomb, data=tmp_path)
    assert str(bomb) in str(err.value) and "\n" not in str(err.value)


def test_deeply_nested_yaml_and_json_are_one_line(tmp_path, trained_run):
    import shutil

    from cxrtool.atomic import read_json
    from cxrtool.config import load_yaml
    from cxrtool.models.checkpoint import read_card

    deep = tmp_path / "deep.yaml"
    deep.write_text("epochs: " + "[" * 2000 + "]" * 2000 + "\n")
    with pytest.raises(CxrError, match="nested more than"):
        load_yaml(deep)
    nested = "[" * 2000 + "]" * 2000
    (tmp_path / "deep.json").write_text(nested)
    with pytest.raises(CxrError, match="nested more than"):
        read_json(tmp_path / "deep.json")
    run = shutil.copytree(trained_run, tmp_path / "run")
    card = run / "checkpoints" / "best" / "card.json"
    card.write_text('{"arch": ' + nested + "}")
    with pytest.raises(CxrError, match="nested more than") as err:
        read_card(run)
    assert str(card) in str(err.value)
    res = cli("predict", run, tmp_path / "deep.json", "-q")
    assert res.exit_code == 2 and "nested more than" in one_line(res)


def test_a_non_utf8_or_folder_config_and_a_folder_as_published_are_one_line(tmp_path, synth_data):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("epochs: 2 # caf\xe9\n".encode("latin-1"))
    for config, expected in ((bad, "not UTF-8"), (tmp_path, "is a folder")):
        res = cli("pretrain", "--data", synth_data.root, "--config", config, "--out", tmp_path / "r")
        line = one_line(res)
        assert res.exit_code == 2 and expected in line and str(config) in line
    folder = tmp_path / "pub"
    folder.mkdir()
    from cxrtool.evaluate.compare import published_columns

    with pytest.raises(CxrError, match="is a folder") as err:
        published_columns([f"T={folder}"])  # what compare --published T=PATH reads
    assert str(folder) in str(err.value) and "--published T" in str(err.value)


# ---------------------------------------------------------------- DICOM size limits


def dicom_bytes(syntax, pixel_data: bytes | None = None) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "p"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixel_data if pixel_data is not None else np.arange(256, dtype=np.uint8).tobytes()
    if pixel_data is not None:
        ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_deflated_dicom_inflating_past_the_limit_is_refused_with_little_memory(tmp_path):
    import tracemalloc

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    from cxrtool.data.imageio import MAX_DICOM_BYTES, ImageReadError, read_gray

    plain = dicom_bytes(ExplicitVRLittleEndian)
    deflated = dicom_bytes(DeflatedExplicitVRLittleEndian)
    meta_end = 132 + 12 + pydicom.dcmread(io.BytesIO(deflated)).file_meta.FileMetaInformationGroupLength
    plain_body = plain[132 + 12 + pydicom.dcmread(io.BytesIO(plain)).file_meta.FileMetaInformationGroupLength :]
    # The dataset, then a private OB element (7FE1,1010) declaring MAX_DICOM_BYTES + 64 MiB of zeros,
    # all deflated: the file stays small (about a thousandth of what it inflates to).
    huge = MAX_DICOM_BYTES + 64 * 1024 * 1024
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [squeeze.compress(plain_body + b"\xe1\x7f\x10\x10OB\0\0" + huge.to_bytes(4, "little"))]
    block = bytes(1 << 22)
    parts += [squeeze.compress(block) for _ in range(huge // len(block))] + [squeeze.flush()]
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(deflated[:meta_end] + b"".join(parts))
    assert bomb.stat().st_size < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="inflates to over 256 MiB"):
            read_gray(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, peak  # pydicom alone held the whole inflated dataset (2.6 GB RSS)
    small = tmp_path / "small.dcm"
    small.write_bytes(deflated)
    assert read_gray(small).shape == (16, 16)  # a Deflated file within the limit still decodes


def test_a_compressed_dicom_without_its_decoder_is_one_line_naming_the_package(tmp_path, trained_run):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = tmp_path / "jls.dcm"
    path.write_bytes(dicom_bytes(JPEGLSLossless, encapsulate([b"\xff\xd8\xff\xf7" + bytes(32)])))
    res = cli("predict", trained_run, path, "--device", "cpu")
    assert res.exit_code == 2, res.output
    lines = [l for l in res.output.splitlines() if str(path) in l]
    assert lines and all("pip install pylibjpeg" in l and "JPEG-LS" in l for l in lines), res.output
    assert "Traceback" not in res.output


# ---------------------------------------------------------------- --workers


def test_workers_are_capped_at_the_usable_cores_with_a_note(tmp_path, capsys):
    from cxrtool.data.pool import usable_cores
    from cxrtool.data.sources.folder import PrepareFolderConfig
    from cxrtool.train.config import TrainConfig

    csv = folder_set(tmp_path, "image,covid", ["images/0.png,1"])
    cfg = PrepareFolderConfig(csv=csv, label_cols=["covid"], workers=1000)
    assert cfg.workers == usable_cores()
    train = TrainConfig(data=tmp_path, workers=1000)
    assert train.workers == usable_cores()
    err = capsys.readouterr().err
    assert err.count(f"--workers 1000: this process may use {usable_cores()} CPU core(s)") == 2
    assert PrepareFolderConfig(csv=csv, label_cols=["covid"], workers=1).workers == 1


# ---------------------------------------------------------------- formulas in CSV cells


def test_formula_cells_are_neutralised_and_read_back_unchanged(tmp_path, trained_run, synth_data):
    from cxrtool.safeio import restore_cell, safe_cell

    for cell in ("=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "'quoted"):
        assert safe_cell(cell) == "'" + cell and restore_cell(safe_cell(cell)) == cell
    for cell in ("-1", "+3.5", "-1e-3", "plain", "", 5, -1.5, None):
        assert safe_cell(cell) == cell

    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    names = ["=HYPERLINK(x).png", "@evil.png", "-1.png", "ok.png"]
    for i, name in enumerate(names):
        Image.fromarray(np.asarray(synth_data.images[i])).save(root / "images" / name)
    pd.DataFrame(
        {"image": [f"images/{n}" for n in names], "covid": [1, 0, 1, 0], "patient": ["=p", "-1", "+2", "p4"]}
    ).to_csv(root / "list.csv", index=False)
    args = ["--label-cols", "covid", "--patient-col", "patient", "--size", 32, "--workers", 1, "-q"]
    res = cli("prepare", "folder", root / "list.csv", *args, "--val-frac", 0, "--test-frac", 0, "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    raw = (tmp_path / "c" / "index.csv").read_text()
    assert "'images/" not in raw and ",'=p," in raw and ",-1," in raw and ",+2," in raw
    index = PreparedData(tmp_path / "c").index
    assert set(index["patient"]) == {"=p", "-1", "+2", "p4"}  # read back as written by the user

    out = tmp_path / "pred.csv"
    res = cli("predict", trained_run, root / "images", "--out", out, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    cells = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert any(c.endswith("=HYPERLINK(x).png") for c in cells)
    assert not any(c.startswith(("=", "+", "@")) for c in cells)
    frame = pd.read_csv(out)
    assert all(not str(v).startswith(("=", "@", "+")) for v in frame.to_numpy().ravel())


# ---------------------------------------------------------------- import xrv --weights-file


class _Payload:
    """A pickle that creates a file when it is unpickled (what a planted weights file could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_weights_file_that_is_not_the_published_one_is_never_unpickled(tmp_path, monkeypatch):
    import pickle

    pytest.importorskip("torchxrayvision")
    from cxrtool.interop import xrv as ours

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    name = "densenet121-res224-nih"
    res = cli("import", "xrv", name, "--weights-file", evil, "--out", tmp_path / "r1")
    line = one_line(res)
    assert res.exit_code == 2 and "publishes no SHA-256" in line and "--trust-weights-file" in line
    assert not marker.exists() and not (tmp_path / "r1").exists()

    published = os.path.basename(__import__("torchxrayvision").models.model_urls[name]["weights_url"])
    monkeypatch.setitem(ours.PUBLISHED_SHA256, published, "0" * 64)
    res = cli("import", "xrv", name, "--weights-file", evil, "--out", tmp_path / "r2")
    line = one_line(res)
    assert res.exit_code == 2 and "is not the published 0000000000000000" in line
    assert not marker.exists()

    # Trusted, the same file is handed to torchxrayvision, which unpickles it: the payload runs.
    # (So the two refusals above are what kept it from running.)
    res = cli("import", "xrv", name, "--weights-file", evil, "--out", tmp_path / "r3", "--trust-weights-file")
    assert res.exit_code == 2 and marker.exists()
