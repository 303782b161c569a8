"""The pointing game's baselines (uniform and location-prior pointers) and the intervals of hit rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrtool.cam import summarise
from cxrtool.cam.baselines import (
    patient_bootstrap,
    patient_finder,
    prior_baselines,
    prior_points,
    wilson,
)
from cxrtool.cam.boxes import box_mask, read_box_file


def concentrated_boxes(n: int = 40, size: int = 64, seed: int = 0) -> pd.DataFrame:
    """One box per image, jittered around the same place (as Cardiomegaly's heart is)."""
    rng = np.random.default_rng(seed)
    x = 20 + rng.integers(-4, 5, n)
    y = 30 + rng.integers(-4, 5, n)
    return pd.DataFrame(
        {"id": [f"{k:08d}_000.png" for k in range(n)], "label": "Mass", "x": x, "y": y, "w": 12.0, "h": 12.0}
    )


def test_prior_pointer_beats_the_uniform_one_on_boxes_in_one_place():
    table = prior_baselines(concentrated_boxes(), 64).set_index("class")
    mass = table.loc["Mass"]
    assert mass["prior_hit_rate"] > 0.9
    assert mass["box_fraction"] == pytest.approx(144 / 64**2, rel=0.05)
    # Not just larger: the prior's interval lies wholly above the uniform pointer's.
    assert mass["prior_hit_rate_low"] > mass["box_fraction_high"]
    assert mass["interval"] == "wilson"  # one image per patient


def test_an_images_own_box_never_builds_its_prior():
    boxes = concentrated_boxes(10)
    # One image far from the others: its own box alone would put the prior right on it.
    lone = pd.DataFrame({"id": ["99999999_000.png"], "label": "Mass", "x": [45.0], "y": [2.0], "w": [8.0], "h": [8.0]})
    table = pd.concat([boxes, lone], ignore_index=True)
    point = prior_points(table, 64, [("99999999_000.png", "Mass")], patient_finder())[("99999999_000.png", "Mass")]
    assert not point["prior_hit"]
    assert point["prior_images"] == 10
    assert box_mask(boxes[["x", "y", "w", "h"]].to_numpy().tolist(), 64)[point["prior_y"], point["prior_x"]]

    # Nor does a box of another image of the same patient (NIH follow-ups: <patient>_<n>.png).
    follow_up = lone.assign(id="99999999_001.png")
    twice = pd.concat([boxes, lone, follow_up], ignore_index=True)
    point = prior_points(twice, 64, [("99999999_000.png", "Mass")], patient_finder())[("99999999_000.png", "Mass")]
    assert not point["prior_hit"] and point["prior_images"] == 10
    # Leave-one-image-out alone (every image its own patient) would let the follow-up's box in.
    own = prior_points(twice, 64, [("99999999_000.png", "Mass")], lambda i: i)[("99999999_000.png", "Mass")]
    assert own["prior_images"] == 11


def test_a_lone_box_gives_a_prior_at_the_centre():
    lone = pd.DataFrame({"id": ["a.png"], "label": "Mass", "x": [0.0], "y": [0.0], "w": [8.0], "h": [8.0]})
    point = prior_points(lone, 64, [("a.png", "Mass")], patient_finder())[("a.png", "Mass")]
    assert (point["prior_x"], point["prior_y"]) in {(31, 31), (31, 32), (32, 31), (32, 32)}
    assert point["prior_images"] == 0 and not point["prior_hit"]


def test_wilson_interval_against_known_values():
    # Wilson (1927) / Newcombe (1998), table I: 81 of 263 -> 0.2553 to 0.3662; 0 of 10 -> 0 to 0.2775.
    lo, hi = wilson(81, 263)
    assert (lo, hi) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(np.isnan(wilson(0, 0)))


def test_patient_bootstrap_is_wider_when_maps_cluster_by_patient():
    rng = np.random.default_rng(1)
    hits = np.repeat(rng.random(30) < 0.5, 4).astype(float)  # 30 patients, 4 identical maps each
    clustered = patient_bootstrap(hits, np.repeat(np.arange(30), 4))[0]
    as_if_independent = wilson(hits.sum(), len(hits))
    assert clustered[0] <= hits.mean() <= clustered[1]
    assert clustered[1] - clustered[0] > 1.5 * (as_if_independent[1] - as_if_independent[0])


def test_summary_rates_carry_intervals_and_say_which():
    per_image = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "d"],
            "patient": ["1", "2", "3", "4", "4"],
            "class": ["Mass", "Mass", "Mass", "Effusion", "Mass"],
            "hit": [True, False, True, True, False],
            "prior_hit": [True, True, False, True, True],
            "iou@0.5": [0.5, 0.1, 0.3, 0.9, 0.0],
            "box_fraction": [0.1, 0.1, 0.1, 0.2, 0.1],
        }
    )
    summary = summarise(per_image, thresholds=(0.5,)).set_index("class")
    mass = summary.loc["Mass"]
    assert mass["pointing_hit_rate"] == pytest.approx(2 / 4)
    assert (mass["pointing_hit_rate_low"], mass["pointing_hit_rate_high"]) == pytest.approx(wilson(2, 4))
    assert (mass["prior_hit_rate_low"], mass["prior_hit_rate_high"]) == pytest.approx(wilson(3, 4))
    assert (mass["box_fraction_low"], mass["box_fraction_high"]) == pytest.approx(wilson(0.4, 4))
    assert mass["interval"] == "wilson" and mass["patients"] == 4
    assert summary.loc["all", "interval"] == "patient bootstrap"  # patient 4 has two maps
    assert summary.loc["all", "patients"] == 4


def test_real_nih_boxes_prior_pointer_against_chance(nih_root):
    """Issue 20's figures on NIH's 984 boxes: the prior pointer hits far more often than chance."""
    boxes = read_box_file(nih_root / "BBox_List_2017.csv", 256)
    table = prior_baselines(boxes, 256).set_index("class")
    assert table.loc["all", "images"] == 984
    assert table.loc["Cardiomegaly", "prior_hit_rate"] >= 0.95
    for finding in ("Cardiomegaly", "Infiltration", "Pneumonia"):
        row = table.loc[finding]
        assert row["interval"] == "patient bootstrap"  # NIH patients have several boxed images
        assert row["prior_hit_rate_low"] > row["box_fraction_high"], finding
        assert row["prior_hit_rate"] == pytest.approx(
            {"Cardiomegaly": 0.99, "Infiltration": 0.44, "Pneumonia": 0.36}[finding], abs=0.07
        )
        assert row["box_fraction"] == pytest.approx(
            {"Cardiomegaly": 0.18, "Infiltration": 0.10, "Pneumonia": 0.09}[finding], abs=0.01
        )


def test_the_model_against_the_prior_is_a_paired_difference_on_the_same_maps():
    # 40 maps of 40 patients: the model and the prior hit the same 20 maps, and the model hits
    # 3 more. Unpaired, the two rates' intervals overlap widely; paired, every map's difference is
    # 0 or +1, so the difference's interval cannot reach below 0.
    n = 40
    prior_hit = np.r_[np.ones(20), np.zeros(20)]
    hit = prior_hit.copy()
    hit[20:23] = 1
    per_image = pd.DataFrame(
        {
            "id": [f"{k:08d}_000.png" for k in range(n)],
            "patient": [str(k) for k in range(n)],
            "class": "Mass",
            "hit": hit,
            "prior_hit": prior_hit,
            "box_fraction": 0.05,
            **{f"iou@{t:g}": 0.1 for t in (0.3, 0.5, 0.7)},
        }
    )
    row = summarise(per_image).set_index("class").loc["Mass"]
    assert row["model_minus_prior"] == pytest.approx(3 / 40)
    assert 0 <= row["model_minus_prior_low"] < row["model_minus_prior"] < row["model_minus_prior_high"] <= 0.2
    assert row["pointing_hit_rate_low"] < row["prior_hit_rate_high"]  # the unpaired intervals overlap
