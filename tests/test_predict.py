"""`cxrtool predict`: files reach the network exactly as cached images do; DICOM, bad files, outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.walk import collect_image_files
from cxrtool.errors import CxrError
from cxrtool.predict.pipeline import PredictConfig, predict_files

runner = CliRunner()


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME1") -> None:
    """A minimal single-frame grey DICOM file with the given stored pixels."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "test"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


@pytest.fixture
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _probs(table: pd.DataFrame, labels) -> np.ndarray:
    return table[[f"prob_{l}" for l in labels]].to_numpy()


def test_files_are_predicted_exactly_as_the_cached_images(run, synth_data, tmp_path):
    from cxrtool.inference import predict_probs
    from cxrtool.models.checkpoint import load_checkpoint

    rows = synth_data.rows("test")[:4]
    for r in rows:
        Image.fromarray(np.asarray(synth_data.images[r])).save(tmp_path / f"img{r:04d}.png")
    table = predict_files(PredictConfig(inputs=[tmp_path], run=run, device="cpu"))
    model, card = load_checkpoint(run)
    expected = predict_probs(model, synth_data, rows, card["image_size"])
    assert list(table["file"]) == [str(tmp_path / f"img{r:04d}.png") for r in rows]
    np.testing.assert_allclose(_probs(table, synth_data.labels), expected, atol=1e-5)


def test_files_stream_through_loader_workers_batch_by_batch_with_bad_files_listed(run, synth_data, tmp_path):
    rows = synth_data.rows("test")[:6]
    for r in rows:
        Image.fromarray(np.asarray(synth_data.images[r])).save(tmp_path / f"img{r:04d}.png")
    (tmp_path / "img0000_broken.png").write_bytes(b"not an image")  # among the good files: its batch is short by one
    (tmp_path / "zz_empty.png").write_bytes(b"")
    inputs = [tmp_path]
    streamed = predict_files(PredictConfig(inputs=inputs, run=run, device="cpu", batch_size=2, workers=2))
    in_process = predict_files(PredictConfig(inputs=inputs, run=run, device="cpu", batch_size=64, workers=0))
    assert list(streamed["file"]) == [str(tmp_path / f"img{r:04d}.png") for r in rows]
    pd.testing.assert_frame_equal(streamed, in_process)
    assert [p for p, _ in streamed.attrs["skipped"]] == [
        str(tmp_path / "img0000_broken.png"),
        str(tmp_path / "zz_empty.png"),
    ]


def test_monochrome1_dicom_equals_the_inverted_png(run, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(80, 72)).astype(np.uint8)
    pixels[0, 0], pixels[0, 1] = 0, 255  # full range: the DICOM's min-max scaling is then exact
    write_dicom(tmp_path / "mono1.dcm", pixels, "MONOCHROME1")
    write_dicom(tmp_path / "mono2", pixels, "MONOCHROME2")  # no extension: found by content
    Image.fromarray(255 - pixels).save(tmp_path / "inverted.png")
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    table = predict_files(PredictConfig(inputs=[tmp_path], run=run, device="cpu")).set_index("file")
    cols = [c for c in table.columns if c.startswith("prob_")]
    row = lambda name: table.loc[str(tmp_path / name), cols].to_numpy(dtype=float)  # noqa: E731
    np.testing.assert_allclose(row("mono1.dcm"), row("inverted.png"), atol=1e-6)
    np.testing.assert_allclose(row("mono2"), row("plain.png"), atol=1e-6)
    assert not np.allclose(row("inverted.png"), row("plain.png"), atol=1e-4)  # the inversion matters


def test_unreadable_files_are_reported_and_skipped(run, tmp_path, synth_data):
    Image.fromarray(np.asarray(synth_data.images[0])).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored: not an image name")
    table = predict_files(PredictConfig(inputs=[tmp_path, tmp_path / "absent.png"], run=run, device="cpu"))
    assert list(table["file"]) == [str(tmp_path / "good.png")]
    skipped = dict(table.attrs["skipped"])
    assert str(tmp_path / "broken.png") in skipped and skipped[str(tmp_path / "absent.png")] == "file not found"
    with pytest.raises(CxrError, match="none of the"):
        predict_files(PredictConfig(inputs=[tmp_path / "broken.png"], run=run, device="cpu"))


def test_predict_uses_val_thresholds_from_the_evaluation_and_says_so(run, tmp_path, synth_data):
    from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.asarray(synth_data.images[i])).save(images / f"{i}.png")
    table = predict_files(PredictConfig(inputs=[images], run=run))
    assert not any(c.startswith("pred_") for c in table.columns)  # no evaluation: probabilities only
    assert (
        set(table["thresholds"]) == {"none (probabilities only)"}
        and "no evaluation" in table.attrs["threshold_source"]["note"]
    )
    evaluate_run(EvaluateConfig(run=run, bootstrap=0, shortcuts=False, device="cpu"))
    chosen = json.loads((run / "eval" / "thresholds.json").read_text())["labels"]
    for point in ("youden", "sens90"):
        table = predict_files(PredictConfig(inputs=[images], run=run, operating_point=point))
        for label in synth_data.labels:
            assert (table[f"pred_{label}"] == (table[f"prob_{label}"] >= chosen[label][point])).all()
        source = table.attrs["threshold_source"]
        assert source["file"] == str(run / "eval" / "thresholds.json") and source["chosen_on"] == "val"
        assert set(table["thresholds"]) == {f"{point} from {run / 'eval' / 'thresholds.json'} (chosen on val)"}
    from cxrtool.progress import set_quiet

    set_quiet(False)
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["predict", str(run), str(images), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert f"thresholds: youden from {run / 'eval' / 'thresholds.json'}, chosen on the val split" in res.output.replace(
        "\n", ""
    )
    doc = json.loads(out.read_text())["thresholds"]
    assert doc["chosen_on"] == "val" and doc["file"] == str(run / "eval" / "thresholds.json")
    res = runner.invoke(app, ["predict", str(run), str(images), "--operating-point", "sens80", "-q"])
    assert res.exit_code == 2 and "youden, sens90" in res.output


def test_thresholds_of_other_weights_are_not_used(run, tmp_path, synth_data, trained_run):
    from safetensors.torch import load_file, save_file

    from cxrtool.evaluate.pipeline import EvaluateConfig, evaluate_run
    from cxrtool.models.checkpoint import file_sizes

    Image.fromarray(np.asarray(synth_data.images[0])).save(tmp_path / "0.png")
    evaluate_run(EvaluateConfig(run=run, bootstrap=0, shortcuts=False, device="cpu"))
    weights = run / "checkpoints" / "best" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["head.bias"] = tensors["head.bias"] + 1  # the checkpoint changed after the evaluation
    save_file(tensors, str(weights))
    card_path = weights.parent / "card.json"  # as a new save would, the card records the new file's size
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "files": file_sizes(weights.parent)}))
    table = predict_files(PredictConfig(inputs=[tmp_path / "0.png"], run=run))
    assert table.attrs["thresholds"] == {} and "earlier weights" in table.attrs["threshold_source"]["note"]
    with pytest.raises(CxrError, match="chosen for other weights"):
        predict_files(PredictConfig(inputs=[tmp_path / "0.png"], run=run, thresholds=run / "eval" / "thresholds.json"))


def test_cli_writes_csv_and_json_and_refuses_to_overwrite(run, tmp_path, synth_data):
    images = tmp_path / "images" / "nested"
    images.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.asarray(synth_data.images[i])).convert("RGB").save(images / f"{i}.jpg", quality=95)
    (images / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    res = runner.invoke(
        app, ["predict", str(run), str(tmp_path / "images"), "--out", str(out_csv), "-q", "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    flat = res.output.replace("\n", "")  # the console wraps long paths
    assert "bad.dcm: skipped" in flat
    assert len(pd.read_csv(out_csv)) == 2
    res = runner.invoke(app, ["predict", "--run", str(run), str(tmp_path / "images"), "--out", str(out_json), "-q"])
    doc = json.loads(out_json.read_text())
    assert len(doc["predictions"]) == 2 and doc["skipped"][0]["file"].endswith("bad.dcm")
    assert set(doc["predictions"][0]["probabilities"]) == set(synth_data.labels)
    res = runner.invoke(app, ["predict", str(run), str(tmp_path / "images"), "--out", str(out_csv)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(app, ["predict", str(run), str(images / "bad.dcm")])
    assert res.exit_code == 2 and res.output.count("error:") == 1
    res = runner.invoke(app, ["predict", str(run)])
    assert res.exit_code == 2 and "give image files" in res.output
    res = runner.invoke(app, ["predict", str(run), str(images / "0.jpg"), "--out", str(tmp_path / "p.txt")])
    assert res.exit_code == 2 and ".csv or .json" in res.output


def test_directory_walk_finds_images_and_reports_empty_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.PNG").write_bytes(b"x")
    (tmp_path / "a" / "y.txt").write_text("no")
    (tmp_path / "empty").mkdir()
    files, skipped = collect_image_files([tmp_path / "a", tmp_path / "empty"])
    assert files == [tmp_path / "a" / "b" / "x.PNG"]
    assert skipped == [(str(tmp_path / "empty"), "folder holds no PNG, JPEG or DICOM files")]


def test_a_missing_input_predicts_the_rest_and_exits_1(run, tmp_path, synth_data):
    Image.fromarray(np.asarray(synth_data.images[0])).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "p.csv"
    given = [str(tmp_path / "good.png"), str(tmp_path / "broken.png")]
    res = runner.invoke(app, ["predict", str(run), *given, "--out", str(out), "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output  # an unreadable image is skipped and listed, as in a folder
    res = runner.invoke(
        app, ["predict", str(run), *given, str(tmp_path / "absent.png"), "--out", str(tmp_path / "q.csv"), "-q"]
    )
    assert res.exit_code == 1 and res.output.count("error:") == 1 and "absent.png: not found" in res.output
    assert len(pd.read_csv(tmp_path / "q.csv")) == 1  # the readable one was still predicted
