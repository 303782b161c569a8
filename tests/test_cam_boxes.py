"""Box files (NIH's quirky list and a cache's boxes.csv) and the pointing-game / IoU scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrtool.cam import read_box_file, score_map, summarise
from cxrtool.cam.boxes import box_mask
from cxrtool.data.labels import NIH_LABELS
from cxrtool.errors import CxrError


def test_nih_box_file_is_read_despite_its_header_and_scaled_to_the_image(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Infiltrate,512,256,128,64\n"
        "00000002_000.png,Cardiomegaly,100.5,200,300,400\n"
    )
    boxes = read_box_file(path, 256)
    assert list(boxes["label"]) == ["Infiltration", "Cardiomegaly"]  # NIH's two spellings reconciled
    assert boxes.iloc[0][["x", "y", "w", "h"]].tolist() == [128, 64, 32, 16]
    assert boxes.iloc[1]["x"] == pytest.approx(100.5 / 4)


def test_cache_box_file_is_taken_as_it_is(tmp_path):
    path = tmp_path / "boxes.csv"
    pd.DataFrame({"id": ["a"], "label": ["Mass"], "x": [3.0], "y": [4.0], "w": [5.0], "h": [6.0]}).to_csv(
        path, index=False
    )
    assert read_box_file(path, 64).iloc[0][["x", "y", "w", "h"]].tolist() == [3, 4, 5, 6]


def test_bad_box_files_are_one_line_errors(tmp_path):
    with pytest.raises(CxrError, match="not found"):
        read_box_file(tmp_path / "missing.csv", 64)
    other = tmp_path / "other.csv"
    other.write_text("file,finding\na.png,Mass\n")
    with pytest.raises(CxrError, match="not a box file"):
        read_box_file(other, 64)
    broken = tmp_path / "broken.csv"
    broken.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2,3,4\nb.png,Mass,1,2,-3,4\n")
    with pytest.raises(CxrError, match="row 3"):
        read_box_file(broken, 64)


def test_real_nih_box_list_reads_into_image_pixels(nih_root):
    boxes = read_box_file(nih_root / "BBox_List_2017.csv", 256)
    assert len(boxes) == 984
    assert set(boxes["label"]) <= set(NIH_LABELS)
    assert (boxes["x"] >= 0).all() and (boxes["x"] + boxes["w"] <= 256 + 1e-6).all()
    assert (boxes["y"] >= 0).all() and (boxes["y"] + boxes["h"] <= 256 + 1e-6).all()


def peak_at(y: int, x: int, size: int = 32) -> np.ndarray:
    cam = np.zeros((size, size), dtype=np.float32)
    cam[y, x] = 1.0
    return cam


def test_pointing_game_hits_inside_any_of_the_class_boxes_and_misses_outside():
    boxes = [(2.0, 2.0, 6.0, 6.0), (20.0, 10.0, 8.0, 8.0)]
    assert score_map(peak_at(4, 4), boxes)["hit"]
    assert score_map(peak_at(14, 24), boxes)["hit"]  # inside the second box
    missed = score_map(peak_at(30, 30), boxes)
    assert not missed["hit"] and (missed["peak_y"], missed["peak_x"]) == (30, 30)


def test_a_flat_map_points_nowhere():
    scores = score_map(np.full((16, 16), 0.3, dtype=np.float32), [(0.0, 0.0, 16.0, 16.0)])
    assert not scores["hit"] and scores["flat"] and scores["iou@0.5"] == 0.0


def test_iou_of_the_thresholded_map_with_the_box():
    box = (8.0, 8.0, 8.0, 8.0)
    exact = box_mask([box], 32).astype(np.float32)
    assert all(score_map(exact, [box])[k] == 1.0 for k in ("iou@0.3", "iou@0.5", "iou@0.7"))
    shifted = box_mask([(12.0, 8.0, 8.0, 8.0)], 32).astype(np.float32)  # half overlaps: 32 / (64 + 64 - 32)
    assert score_map(shifted, [box])["iou@0.5"] == pytest.approx(1 / 3)
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))  # thresholds keep ever fewer columns
    scores = score_map(ramp, [(24.0, 0.0, 8.0, 32.0)], thresholds=(0.5, 0.75))
    assert scores["iou@0.75"] > scores["iou@0.5"]


def test_summary_per_class_and_overall():
    per_image = pd.DataFrame(
        {
            "class": ["Mass", "Mass", "Mass", "Effusion"],
            "hit": [True, False, True, True],
            "iou@0.5": [0.5, 0.1, 0.3, 0.9],
            "box_fraction": [0.1, 0.1, 0.1, 0.2],
        }
    )
    summary = summarise(per_image, thresholds=(0.5,)).set_index("class")
    assert summary.loc["Mass", "pointing_hit_rate"] == pytest.approx(2 / 3)
    assert summary.loc["Effusion", "images"] == 1
    assert summary.loc["all", "pointing_hit_rate"] == pytest.approx(3 / 4)
    assert summary.loc["all", "iou@0.5"] == pytest.approx(0.45)
