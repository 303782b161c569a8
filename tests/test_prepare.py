"""`cxrtool prepare` end to end on generated data: the synthetic round trip, re-runs, refusals, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData, check_no_leak
from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS, SyntheticConfig, generate_arrays, write_raw

runner = CliRunner()
FIVE = ",".join(PRETRAIN_FINDINGS)


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "synthetic"
    write_raw(out, SyntheticConfig(n_patients=24, size=128, seed=3))
    return out


def test_synthetic_round_trip_keeps_labels_and_puts_boxes_on_the_lesions(raw, tmp_path):
    res = cli("prepare", "nih", raw, "--out", tmp_path / "c", "--size", 64, "--findings", FIVE, "--workers", 2, "-q")
    assert res.exit_code == 0, res.output
    data = PreparedData(tmp_path / "c")
    _, frame, truth = generate_arrays(SyntheticConfig(n_patients=24, size=128, seed=3))
    assert data.labels == PRETRAIN_FINDINGS and len(data) == len(frame)
    merged = data.index.merge(frame, left_on="id", right_on="image", suffixes=("", "_truth"))
    for label in PRETRAIN_FINDINGS:
        assert (merged[label] == merged[f"{label}_truth"]).all(), label
    check_no_leak(data.index)
    # Boxes: drawn at 128 px, cached at 64 px (through NIH's 1024-pixel box file).
    boxes = data.boxes()
    truth = truth[truth["label"].isin(PRETRAIN_FINDINGS)].rename(columns={"image": "id"})
    assert len(boxes) == len(truth)
    ours = boxes.sort_values(["id", "label", "x"]).reset_index(drop=True)
    expected = truth.sort_values(["id", "label", "x"]).reset_index(drop=True)
    for col in ("x", "y", "w", "h"):
        assert np.allclose(ours[col], expected[col] / 2, atol=0.02), col
    # A Mass box holds the bright disc: brighter than the image around it.
    row = ours[ours["label"] == "Mass"].iloc[0]
    img = data.images[int(np.flatnonzero(data.index["id"] == row["id"])[0])].astype(float)
    x, y, w, h = (round(row[c]) for c in ("x", "y", "w", "h"))
    assert img[y : y + h, x : x + w].mean() > img.mean() + 20


def test_a_finding_outside_nih_list_is_allowed_when_the_label_file_has_it(raw, tmp_path):
    res = cli(
        "prepare", "nih", raw, "--out", tmp_path / "c", "--size", 32, "--findings", "COVID-19", "--workers", 1, "-q"
    )
    assert res.exit_code == 0, res.output
    data = PreparedData(tmp_path / "c")
    entries = pd.read_csv(raw / "Data_Entry_2017.csv")
    assert data.labels == ["COVID-19"]
    assert int(data.index["COVID-19"].sum()) == int(entries["Finding Labels"].str.contains("COVID-19").sum())
    res = cli("prepare", "nih", raw, "--out", tmp_path / "d", "--findings", "Covd-19", "-q")
    assert res.exit_code == 2 and "--findings" in res.output


def test_rerun_is_a_no_op_and_other_settings_need_overwrite(raw, tmp_path):
    out = tmp_path / "c"
    assert cli("prepare", "nih", raw, "--out", out, "--size", 32, "--findings", FIVE, "-q").exit_code == 0
    stamp = (out / "manifest.json").stat().st_mtime_ns
    res = cli("prepare", "nih", raw, "--out", out, "--size", 32, "--findings", FIVE, "--workers", 1)
    assert res.exit_code == 0 and "ready" in res.output
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    res = cli("prepare", "nih", raw, "--out", out, "--size", 48, "--findings", FIVE, "-q")
    assert res.exit_code == 2 and "--overwrite" in res.output and "size" in res.output
    assert PreparedData(out).size == 32
    res = cli("prepare", "nih", raw, "--out", out, "--size", 48, "--findings", FIVE, "--overwrite", "-q")
    assert res.exit_code == 0 and PreparedData(out).size == 48


def test_official_lists_are_used_with_validation_carved_by_patient(raw, tmp_path):
    root = tmp_path / "nih"
    root.mkdir()
    for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv"):
        (root / name).write_bytes((raw / name).read_bytes())
    (root / "images_001").symlink_to(raw / "images", target_is_directory=True)  # images in a sub-folder
    names = sorted(p.name for p in (raw / "images").glob("*.png"))
    test_patients = {n[:8] for n in names[::5]}
    test = [n for n in names if n[:8] in test_patients]
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    res = cli("prepare", "nih", root, "--out", tmp_path / "c", "--size", 32, "--val-frac", 0.2, "-q")
    assert res.exit_code == 0, res.output
    index = PreparedData(tmp_path / "c").index
    assert sorted(index.loc[index["split"] == "test", "id"]) == sorted(test)
    assert (index["split"] == "val").sum() > 0
    check_no_leak(index)


def test_non_square_image_boxes_go_through_the_crop(tmp_path):
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    img = np.full((100, 200), 30, dtype=np.uint8)  # 200 wide: the crop keeps x 50..150
    img[40:60, 90:130] = 220
    Image.fromarray(img).save(root / "images" / "00000001_000.png")
    (root / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
        "00000001_000.png,Mass,0,1,50,F,PA,200,100,0.1,0.1\n"
        "00000002_000.png,No Finding,0,2,50,F,PA,200,100,0.1,0.1\n"
    )
    scale = 1024 / 200  # box coordinates are in 1024-pixel units of the file's width
    (root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        f"00000001_000.png,Mass,{90 * scale},{40 * scale},{40 * scale},{20 * scale}\n"
    )
    res = cli("prepare", "nih", root, "--out", tmp_path / "c", "--size", 50, "--val-frac", 0, "--test-frac", 0, "-q")
    assert res.exit_code == 0, res.output
    data = PreparedData(tmp_path / "c")
    row = data.index.iloc[0]
    assert (row["crop_x"], row["crop_y"], row["crop_side"], row["orig_width"], row["orig_height"]) == (
        50,
        0,
        100,
        200,
        100,
    )
    box = data.boxes().iloc[0]
    assert np.allclose([box["x"], box["y"], box["w"], box["h"]], [20, 20, 20, 10], atol=0.01)
    cached = data.images[0].astype(float)
    assert cached[21:29, 21:39].mean() > 200 and cached[:15].mean() < 60
    skipped = pd.read_csv(data.root / "skipped.csv")
    assert list(skipped["id"]) == ["00000002_000.png"]


def test_user_mistakes_are_one_line_with_exit_status_2(raw, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    res = cli("prepare", "nih", raw, "--out", blocker / "sub", "-q")
    assert res.exit_code == 2 and "cannot write" in res.output and len(res.output.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("prepare", "nih", empty, "--out", tmp_path / "c", "-q")
    assert res.exit_code == 2 and "no NIH label file" in res.output
    (empty / "Data_Entry_2017.csv").write_text((raw / "Data_Entry_2017.csv").read_text())
    res = cli("prepare", "nih", empty, "--out", tmp_path / "c", "-q")
    assert res.exit_code == 2 and "no image found" in res.output
    (empty / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\nx.png,Mass\n")
    res = cli("prepare", "nih", empty, "--out", tmp_path / "c", "-q")
    assert res.exit_code == 2 and "'Patient ID'" in res.output and "Data_Entry_2017.csv" in res.output
    res = cli("prepare", "nih", raw, "--out", tmp_path / "c", "--val-frac", 0.6, "--test-frac", 0.5, "-q")
    assert res.exit_code == 2 and "--val-frac" in res.output


def test_folder_source_missing_column_names_it_and_the_file(tmp_path):
    images, _, _ = generate_arrays(SyntheticConfig(n_patients=6, size=64, seed=1))
    rows = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
        rows.append({"path": f"img{i}.png", "covid": i % 2, "pneu": "" if i % 3 == 0 else 1, "pid": f"p{i // 2}"})
    rows.append({"path": "gone.png", "covid": 1, "pneu": 0, "pid": "p99"})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    res = cli(
        "prepare",
        "folder",
        tmp_path / "labels.csv",
        "--image-col",
        "path",
        "--label-cols",
        "covid,effusion",
        "--patient-col",
        "pid",
        "--out",
        tmp_path / "c",
        "-q",
    )
    assert res.exit_code == 2 and "'effusion'" in res.output and "labels.csv" in res.output
    res = cli(
        "prepare",
        "folder",
        tmp_path / "labels.csv",
        "--image-col",
        "path",
        "--label-cols",
        "covid,pneu",
        "--patient-col",
        "pid",
        "--name",
        "mine",
        "--out",
        tmp_path / "c",
        "--size",
        32,
        "-q",
    )
    assert res.exit_code == 0, res.output
    data = PreparedData(tmp_path / "c")
    assert data.labels == ["COVID-19", "pneu"] and len(data) == len(images)
    assert set(data.index["source"]) == {"mine"}
    targets = data.targets()
    assert np.isnan(targets[:, 1]).sum() == sum(1 for i in range(len(images)) if i % 3 == 0)
    assert list(pd.read_csv(data.root / "skipped.csv")["source_path"]) == ["gone.png"]
    check_no_leak(data.index)


def test_folder_csv_written_on_windows_with_bom_and_spaces_is_read(tmp_path):
    images, _, _ = generate_arrays(SyntheticConfig(n_patients=4, size=64, seed=2))
    sub = tmp_path / "my data" / "sub dir"
    sub.mkdir(parents=True)
    lines = ["image,finding,pid"]
    for i, img in enumerate(images):
        Image.fromarray(img).save(sub / f"img{i}.PNG")
        lines.append(f"sub dir\\img{i}.PNG,{i % 2},p{i // 2}")
    csv = tmp_path / "my data" / "labels.csv"
    csv.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig")
    res = cli(
        "prepare",
        "folder",
        csv,
        "--label-cols",
        "finding",
        "--patient-col",
        "pid",
        "--out",
        tmp_path / "c",
        "--size",
        32,
        "--workers",
        1,
        "-q",
    )
    assert res.exit_code == 0, res.output
    data = PreparedData(tmp_path / "c")
    assert len(data) == len(images)
    assert data.targets()[:, 0].tolist() == [float(i % 2) for i in range(len(images))]


def test_prepare_synthetic_refuses_a_folder_with_files_unless_overwrite(tmp_path):
    from typer.testing import CliRunner

    from cxrtool.cli import app

    out = tmp_path / "raw"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    runner = CliRunner()
    refused = runner.invoke(app, ["prepare", "synthetic", str(out), "--patients", "2", "--size", "32", "-q"])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert not (out / "images").exists()
    done = runner.invoke(
        app, ["prepare", "synthetic", str(out), "--patients", "2", "--size", "32", "-q", "--overwrite"]
    )
    assert done.exit_code == 0, done.output
    assert (out / "Data_Entry_2017.csv").is_file() and (out / "notes.txt").read_text() == "mine"
