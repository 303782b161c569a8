"""The self-organising map: the report's neighbourhood schedule, training, and per-neuron summaries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cxrtool.embed import som as som_module
from cxrtool.embed.som import minisom_sigma, neuron_majority, neuron_share, paper_sigma, train_som


@pytest.mark.parametrize("sigma0", [1.5, 5.0, 7.0])
def test_paper_schedule_matches_the_formula_at_start_and_end(sigma0):
    total = 5000
    assert paper_sigma(0, total, sigma0) == pytest.approx(sigma0)
    # sigma_T = sigma0 * exp(-log(4 sigma0)) = 1/4 whatever sigma0 is.
    assert paper_sigma(total, total, sigma0) == pytest.approx(sigma0 * math.exp(-math.log(4 * sigma0)))
    assert paper_sigma(total, total, sigma0) == pytest.approx(0.25)
    t = 1234
    assert paper_sigma(t, total, sigma0) == pytest.approx(sigma0 * math.exp(-t * t * math.log(4 * sigma0) / total**2))
    radii = [paper_sigma(t, total, sigma0) for t in range(0, total + 1, 250)]
    assert all(a > b for a, b in itertools.pairwise(radii))


def test_minisom_schedule_is_minisoms_own_default():
    from minisom import MiniSom

    som = MiniSom(6, 6, 3, sigma=3.0)
    for t in (0, 10, 500, 1000):
        assert minisom_sigma(t, 1000, 3.0) == pytest.approx(som._sigma_decay_function(3.0, t, 1000))


def test_training_uses_the_chosen_schedule_over_every_update(monkeypatch):
    calls = []

    def recording(t, total, sigma0):
        calls.append((t, total, sigma0))
        return paper_sigma(t, total, sigma0)

    monkeypatch.setitem(som_module.SCHEDULES, "paper", recording)
    data = np.random.default_rng(0).normal(size=(30, 4))
    train_som(data, (4, 5), epochs=3, schedule="paper", sigma0=2.0, seed=0)
    assert len(calls) == 90
    assert calls[0] == (0, 90, 2.0) and calls[-1][0] == 89
    assert {c[1] for c in calls} == {90}


def two_blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    centres = np.array([[-5.0] * 8, [5.0] * 8])
    return centres[labels] + rng.normal(size=(n, 8)), labels


@pytest.mark.parametrize("schedule", ["paper", "minisom"])
def test_som_puts_separate_clusters_on_separate_neurons(schedule):
    data, labels = two_blobs()
    result = train_som(data, (6, 6), epochs=5, schedule=schedule, seed=0)
    assert result.winners.shape == (len(data), 2)
    cells = [set(map(tuple, result.winners[labels == k])) for k in (0, 1)]
    assert cells[0].isdisjoint(cells[1])
    assert result.umatrix.shape == (6, 6) and np.nanmax(result.umatrix) == pytest.approx(1.0)
    # The two clusters are far apart: quantisation error is far below the distance between them.
    assert result.quantization_error < 5.0


def test_som_of_a_flat_sheet_keeps_neighbours_together():
    # Points on a 2-D square (embedded in 6-D) fit a 2-D map: nearly every sample's two best
    # neurons are adjacent, and the map's corners land in the square's opposite corners.
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 1, size=(400, 2))
    data = np.concatenate([uv * 10, np.zeros((400, 4))], axis=1) + rng.normal(scale=0.05, size=(400, 6))
    result = train_som(data, (8, 8), epochs=5, seed=0)
    assert result.topographic_error < 0.1
    corner_a = result.winners[np.argmin(uv.sum(axis=1))]
    corner_b = result.winners[np.argmax(uv.sum(axis=1))]
    assert np.abs(corner_a - corner_b).max() >= 6


def test_same_seed_same_map_and_schedules_differ():
    data, _ = two_blobs(seed=1)
    a = train_som(data, (5, 5), epochs=2, seed=3)
    b = train_som(data, (5, 5), epochs=2, seed=3)
    c = train_som(data, (5, 5), epochs=2, seed=3, schedule="minisom")
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.winners, b.winners)
    assert not np.allclose(a.weights, c.weights)


def test_neuron_share_and_majority():
    winners = np.array([[0, 0], [0, 0], [0, 0], [1, 1], [1, 1]])
    mask = np.array([True, False, False, True, True])
    share = neuron_share(winners, (2, 2), mask)
    assert share[0, 0] == pytest.approx(1 / 3) and share[1, 1] == pytest.approx(1.0)
    assert np.isnan(share[0, 1]) and np.isnan(share[1, 0])
    names = ["Mass", "No Finding"]
    classes = np.array(["No Finding", "No Finding", "Mass", "Mass", "Mass"])
    major = neuron_majority(winners, (2, 2), classes, names)
    assert major[0, 0] == 1 and major[1, 1] == 0 and major[0, 1] == -1
