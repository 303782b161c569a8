"""`cxrtool embed`: sampling, features, maps, scores, and the command's artifacts and errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.embed import EmbedConfig, run_embed
from cxrtool.embed.features import MULTIPLE, primary_findings, stratified_sample
from cxrtool.embed.maps import exact_neighbours, make_map
from cxrtool.embed.scores import centroid_distances, knn_accuracy, nearest_findings
from cxrtool.errors import CxrError

runner = CliRunner()


# ---------------------------------------------------------------- pieces


def test_primary_finding_per_image():
    labels = ["Mass", "Nodule", "COVID-19"]
    targets = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 1], [np.nan, 0, 1], [np.nan, np.nan, np.nan]], dtype=np.float32)
    # Every label unknown: nobody said "No Finding" (tests/test_covid_labels.py has the sources' findings).
    assert list(primary_findings(targets, labels)) == ["No Finding", "Nodule", MULTIPLE, "COVID-19", "unknown"]
    assert list(primary_findings(targets, labels, "first"))[2] == "Mass"


def test_stratified_sample_keeps_shares_and_rare_classes_and_repeats():
    strata = np.array(["a"] * 700 + ["b"] * 290 + ["c"] * 10)
    pick = stratified_sample(strata, 100, seed=0)
    assert len(pick) == 100 and len(set(pick)) == 100 and np.all(np.diff(pick) > 0)
    counts = pd.Series(strata[pick]).value_counts()
    assert abs(counts["a"] - 70) <= 1 and abs(counts["b"] - 29) <= 1 and counts["c"] >= 1
    np.testing.assert_array_equal(pick, stratified_sample(strata, 100, seed=0))
    assert not np.array_equal(pick, stratified_sample(strata, 100, seed=1))
    assert len(stratified_sample(strata, 0, seed=0)) == 1000 and len(stratified_sample(strata, 5000, seed=0)) == 1000


def test_knn_accuracy_separated_mixed_and_same_patient():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 5)), rng.normal(20, 1, (50, 5))])
    y = np.array(["a"] * 50 + ["b"] * 50)
    assert knn_accuracy(x, y, k=5) == 1.0
    assert knn_accuracy(x, rng.permutation(y), k=5) < 0.75
    # Pairs of near-identical images of one patient, pairs scattered at random with random labels:
    # counting the twin makes 1-NN perfect; skipping same-patient neighbours shows there is no structure.
    base = rng.normal(0, 1, (60, 5))
    pairs = np.repeat(base, 2, axis=0) + rng.normal(0, 1e-3, (120, 5))
    labels = np.repeat(rng.choice(["a", "b", "c"], 60), 2)
    patients = np.repeat(np.arange(60), 2)
    assert knn_accuracy(pairs, labels, k=1) == 1.0
    assert knn_accuracy(pairs, labels, k=1, groups=patients) < 0.6


def test_centroid_distances_find_the_neighbouring_finding():
    rng = np.random.default_rng(0)
    labels = ["Mass", "Pneumonia", "COVID-19"]
    centre = {"Mass": 0.0, "Pneumonia": 8.0, "COVID-19": 10.0}
    rows, targets = [], []
    for i, name in enumerate(labels):
        rows.append(rng.normal(centre[name], 1.0, (40, 6)))
        t = np.zeros((40, 3))
        t[:, i] = 1
        targets.append(t)
    table = centroid_distances(np.concatenate(rows), np.concatenate(targets), labels)
    dist = table.drop(columns="images")
    np.testing.assert_allclose(dist.to_numpy(), dist.to_numpy().T)
    assert np.allclose(np.diag(dist.to_numpy()), 0)
    assert list(table["images"]) == [40, 40, 40]
    assert nearest_findings(table, "COVID-19")[0][0] == "Pneumonia"


def test_each_method_gives_one_row_per_image_and_the_same_seed_the_same_map():
    x = np.random.default_rng(0).normal(size=(80, 10)).astype(np.float32)
    cfg = EmbedConfig(som_grid="5x5", som_epochs=2, tsne_iter=250, seed=4)
    for method in ("som", "tsne", "umap"):  # the suite's only UMAP call (numba compiles for seconds)
        first = make_map(method, x, cfg)
        again = make_map(method, x, cfg)
        assert first.coords.shape == (80, 2) and np.isfinite(first.coords).all(), method
        np.testing.assert_array_equal(first.coords, again.coords, err_msg=method)
    seed4 = make_map("som", x, cfg).coords
    seed5 = make_map("som", x, EmbedConfig(som_grid="5x5", som_epochs=2, seed=5)).coords
    assert not np.allclose(seed4, seed5)


def _separated_clusters(n_per: int = 100, classes: int = 4, dims: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (classes, dims))
    labels = np.repeat(np.arange(classes), n_per)
    return (centres[labels] + rng.normal(0, 1, (len(labels), dims))).astype(np.float32), labels.astype(str)


@pytest.mark.parametrize("method", ["tsne", "som"])
def test_large_input_paths_keep_separated_clusters_apart(method):
    # large_from=0 forces the path NIH-sized inputs take (FFT t-SNE, batch SOM) on a small input.
    x, labels = _separated_clusters()
    cfg = EmbedConfig(som_grid="6x6", som_epochs=10, tsne_iter=250, seed=3)
    large = make_map(method, x, cfg, large_from=0)
    assert large.coords.shape == (len(x), 2) and np.isfinite(large.coords).all()
    assert knn_accuracy(large.coords, labels, k=5) > 0.95
    small = make_map(method, x, cfg)  # the default threshold: the path small inputs always took
    assert not np.allclose(large.coords, small.coords)
    if method == "tsne":
        assert large.params["gradient"].startswith("fft") and "angle" in small.params
    else:
        np.testing.assert_array_equal(large.coords, make_map(method, x, cfg, large_from=0).coords)
        assert large.params["training"] == "batch" and small.params["training"] == "online"
        assert len({tuple(w) for w in large.som.winners}) >= 4  # each cluster has neurons of its own
        assert large.som.umatrix.shape == (6, 6) and np.isfinite(large.som.quantization_error)


def test_shared_graph_is_the_exact_neighbours_and_never_the_point_itself():
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(1).normal(size=(600, 8)).astype(np.float32)
    x[7] = x[5]  # a duplicate: each is the other's nearest neighbour, at distance 0
    idx, dist = exact_neighbours(x, 12, block_mb=1)  # 1 MB blocks: several blocks of rows
    want_dist, want_idx = NearestNeighbors(n_neighbors=12).fit(x.astype(np.float64)).kneighbors()
    assert not (idx == np.arange(len(x))[:, None]).any()
    assert idx[5, 0] == 7 and idx[7, 0] == 5 and dist[5, 0] == 0
    np.testing.assert_allclose(dist, want_dist, atol=1e-6)
    assert (idx == want_idx).mean() > 0.99  # equal distances may come in either order
    assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize(
    "options, option",
    [
        ({"method": "sam"}, "--method"),
        ({"space": "latents"}, "--space"),
        ({"som_grid": "10by10"}, "--som-grid"),
        ({"max_images": 3}, "--max-images"),
        ({"pca": 1}, "--pca"),
        ({"split": "testing"}, "--split"),
        ({"som_schedule": "kohonen"}, "--som-schedule"),
        ({"perplexity": 0}, "--perplexity"),
    ],
)
def test_bad_options_name_the_option(options, option):
    with pytest.raises(CxrError, match=option):
        EmbedConfig(**options)


# ---------------------------------------------------------------- the whole command


def test_latent_space_separates_findings_better_than_pixels(trained_run, tmp_path):
    out = tmp_path / "embed"
    res = run_embed(EmbedConfig(run=trained_run, method="som,tsne", out=out, seed=0))
    spaces = res["scores"]["spaces"]
    latent, pixels = spaces["latent"], spaces["pixels"]
    # The claim of the report, as numbers: in the full (PCA) space and on the SOM.
    assert latent["full"]["knn_accuracy"] > pixels["full"]["knn_accuracy"] + 0.05
    assert latent["full"]["silhouette"] > pixels["full"]["silhouette"]
    assert latent["som"]["knn_accuracy"] > pixels["som"]["knn_accuracy"]
    assert latent["full"]["knn_accuracy"] > res["scores"]["knn_chance"] + 0.1

    n = res["n_images"]
    for space in ("latent", "pixels"):
        for method in ("som", "tsne"):
            coords = pd.read_csv(out / f"coords_{space}_{method}.csv", dtype={"id": str})
            assert len(coords) == n and coords["id"].is_unique
            assert {"id", "labels", "finding", "x", "y"} <= set(coords.columns)
            assert (out / f"scatter_{space}_{method}.png").stat().st_size > 1000
        assert (out / f"som_{space}.png").is_file()
        table = pd.read_csv(out / f"centroids_{space}.csv", index_col=0)
        assert list(table.index) == list(table.columns[1:])
    saved = json.loads((out / "scores.json").read_text())
    assert saved["spaces"]["latent"]["som"]["params"]["schedule"] == "paper"
    assert sum(saved["classes"].values()) == n


def test_scores_default_to_the_test_split_and_all_scores_each_split(trained_run, synth_data, tmp_path):
    # Default: only test images, which the network never trained on, are mapped and scored.
    res = run_embed(EmbedConfig(run=trained_run, method="som", som_grid="4x4", out=tmp_path / "test", seed=0))
    scores = res["scores"]
    test_ids = set(synth_data.index.loc[synth_data.index["split"] == "test", "id"])
    coords = pd.read_csv(tmp_path / "test" / "coords_latent_som.csv", dtype={"id": str})
    assert scores["split"] == scores["scored_on"] == "test" and set(coords["id"]) == test_ids
    assert scores["spaces"]["latent"]["full"]["in_sample"] is False

    # --split all: one map of every image, each score per split among that split's images; the
    # headline is the test split's (the same number as a test-only run), train is marked in-sample.
    res = run_embed(
        EmbedConfig(run=trained_run, split="all", method="som", som_grid="4x4", out=tmp_path / "all", seed=0)
    )
    every = res["scores"]
    assert every["n_images"] == len(synth_data.index) and every["scored_on"] == "test"
    full = every["spaces"]["latent"]["full"]
    assert set(full["by_split"]) == {"train", "val", "test"}
    assert full["by_split"]["train"]["in_sample"] is True and full["by_split"]["test"]["in_sample"] is False
    assert not every["spaces"]["pixels"]["full"]["by_split"]["train"]["in_sample"]  # no network in pixels
    assert full["by_split"]["test"]["images"] == len(test_ids)
    assert full["knn_accuracy"] == full["by_split"]["test"]["knn_accuracy"]
    assert full["knn_accuracy"] == pytest.approx(scores["spaces"]["latent"]["full"]["knn_accuracy"], abs=0.15)
    # The network fits its training images more tightly than unseen ones.
    assert full["by_split"]["train"]["silhouette"] > full["by_split"]["test"]["silhouette"]
    assert set(every["spaces"]["latent"]["som"]["by_split"]) == {"train", "val", "test"}


def test_same_seed_same_coordinates_and_another_seed_differs(trained_run, tmp_path):
    def coords(seed, name):
        out = tmp_path / name
        # From every split, so that 60 images are a sample the seed draws (the test split alone is smaller).
        run_embed(
            EmbedConfig(
                run=trained_run, split="all", space="latent", method="som,tsne", max_images=60, seed=seed, out=out
            )
        )
        return [pd.read_csv(out / f"coords_latent_{m}.csv", dtype={"id": str}) for m in ("som", "tsne")]

    a, b, c = coords(1, "a"), coords(1, "b"), coords(2, "c")
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0]["id"].equals(c[0]["id"]) or not np.allclose(a[1][["x", "y"]], c[1][["x", "y"]])


def test_cli_embed_som_as_typed_after_a_pretrain(trained_run, tmp_path, monkeypatch):
    # The newest run under ./runs and the data it was trained on, with no options but the method.
    run = tmp_path / "runs" / "pretrain-tiny-cnn-1"
    shutil.copytree(trained_run, run)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["embed", "--method", "som", "-q"])
    assert result.exit_code == 0, result.output
    assert "k-NN accuracy" in result.output and "latent space is" in result.output
    for name in (
        "coords_latent_som.csv",
        "coords_pixels_som.csv",
        "som_latent.png",
        "scores.json",
        "centroids_latent.csv",
        "config.yaml",
    ):
        assert (run / "embed" / name).is_file(), name

    # A second method adds to scores.json; repeating one needs --overwrite.
    result = runner.invoke(app, ["embed", "--method", "tsne", "--space", "latent", "-q"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "embed" / "scores.json").read_text())
    assert {"full", "som", "tsne"} <= set(scores["spaces"]["latent"])
    result = runner.invoke(app, ["embed", "--method", "som", "-q"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert runner.invoke(app, ["embed", "--method", "som", "--overwrite", "-q"]).exit_code == 0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--method", "sam"], "Did you mean 'som'"),
        (["--som-grid", "ten"], "--som-grid"),
        (["--space", "latnet"], "--space"),
        (["--split", "nope"], "--split"),
    ],
)
def test_cli_bad_options_give_one_line(trained_run, tmp_path, args, expected):
    result = runner.invoke(app, ["embed", "--run", str(trained_run), "--out", str(tmp_path / "e"), "-q", *args])
    assert result.exit_code == 2
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]


def test_cli_without_any_run_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["embed", "--method", "som"])
    assert result.exit_code == 2 and "cxrtool pretrain" in result.output


def test_pixels_only_map_of_a_cache_needs_no_run(synth_data, tmp_path):
    res = run_embed(EmbedConfig(data=synth_data.root, space="pixels", method="som", max_images=40, out=tmp_path / "px"))
    assert res["n_images"] == 40 and set(res["scores"]["spaces"]) == {"pixels"}
    assert len(pd.read_csv(tmp_path / "px" / "coords_pixels_som.csv")) == 40


def test_mixed_sources_and_covid_get_their_panels_and_nearest_findings(tmp_path):
    # A cache where COVID-19 images come from a second "hospital": the scatter gains a by-source
    # panel, the SOM a COVID-19 share panel, and the scores name the findings nearest COVID-19.
    from helpers import synthetic_cache
    from PIL import Image

    from cxrtool.data.cache import write_cache
    from cxrtool.data.sources.synthetic import SYNTHETIC_FINDINGS

    base = synthetic_cache(tmp_path / "base", n_patients=40, size=32, labels=SYNTHETIC_FINDINGS)
    index = base.index.copy()
    index.loc[index["COVID-19"] == 1, "source"] = "covid-set"
    mixed = tmp_path / "mixed"
    write_cache(mixed, np.asarray(base.images), index, base.labels)
    res = run_embed(EmbedConfig(data=mixed, space="pixels", method="som", som_grid="4x4", out=tmp_path / "e"))
    scores = res["scores"]
    assert set(scores["sources"]) == {"synthetic", "covid-set"}
    assert scores["near_covid"]["pixels"] and scores["near_covid"]["pixels"][0][0] != "COVID-19"
    width, height = Image.open(tmp_path / "e" / "scatter_pixels_som.png").size
    assert width > 1.8 * height  # two panels side by side
    width, height = Image.open(tmp_path / "e" / "som_pixels.png").size
    assert width > 2.5 * height  # U-matrix, majority finding, COVID-19 share
