"""Near-duplicate radiographs: fingerprints, grouping inside `prepare`, and `prepare dedupe` across caches."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.data.cache import PreparedData
from cxrtool.data.dedup import compact_images
from cxrtool.data.imageio import preprocess
from cxrtool.data.neardup.align import DEFAULT_MIN_SCORE, align_pairs, fine_image, work_image
from cxrtool.data.neardup.confirm import ALIGNED, HASH, IDENTICAL
from cxrtool.data.neardup.hashing import distance, fingerprint
from cxrtool.data.neardup.search import ImageSet, near_duplicates
from cxrtool.data.npyfile import shrink_images
from cxrtool.data.prepare import PrepareFolderConfig, prepare_folder
from cxrtool.data.sources.synthetic import SyntheticConfig, generate_arrays, write_raw

runner = CliRunner()


def jpeg(img: np.ndarray, quality: int = 70) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))


def resized(img: np.ndarray, factor: float = 0.7) -> np.ndarray:
    h, w = img.shape
    return np.asarray(Image.fromarray(img).resize((int(w * factor), int(h * factor)), Image.Resampling.LANCZOS))


def brighter(img: np.ndarray, shift: int = 15) -> np.ndarray:
    return np.clip(img.astype(int) + shift, 0, 255).astype(np.uint8)


def gamma(img: np.ndarray, g: float = 0.6) -> np.ndarray:
    return (255 * (img / 255.0) ** g).astype(np.uint8)


def contrast(img: np.ndarray, c: float = 1.4) -> np.ndarray:
    return np.clip((img.astype(float) - 128) * c + 128, 0, 255).astype(np.uint8)


def cropped(img: np.ndarray, left=0.15, top=0.15, right=0.15, bottom=0.15) -> np.ndarray:
    h, w = img.shape
    return img[int(top * h) : h - int(bottom * h), int(left * w) : w - int(right * w)]


COPIES = {"jpeg": jpeg, "resized": resized, "brighter": brighter}
# Every change issue-listed on its own, and the crop one-sided too (then the centre crop shifts).
CHANGES = {
    "jpeg": lambda x: jpeg(x, 50),
    "rescale": resized,
    "brightness": lambda x: brighter(x, 30),
    "gamma": gamma,
    "gamma_up": lambda x: gamma(x, 1.6),
    "contrast": contrast,
    "crop_all_sides": cropped,
    "crop_left_bottom": lambda x: cropped(x, 0.15, 0.0, 0.0, 0.10),
    "crop_top_right": lambda x: cropped(x, 0.0, 0.15, 0.15, 0.0),
    "crop_bottom": lambda x: cropped(x, 0.05, 0.0, 0.05, 0.15),
}


@pytest.fixture(scope="module")
def phantoms():
    images, frame, _ = generate_arrays(SyntheticConfig(n_patients=40, size=256, seed=11, max_followups=1))
    return images, frame


def test_copies_are_close_and_distinct_patients_are_not_confirmed(phantoms):
    images, _ = phantoms
    fps = [fingerprint(im) for im in images]
    for make in COPIES.values():
        assert distance(fps[0], fingerprint(make(images[0]))) <= 20
    cached = [preprocess(im, 128)[0] for im in images]
    assert near_duplicates(ImageSet(fps, lambda i: cached[i])) == []  # one image per patient, all distinct look-alikes
    copies = [make(images[k]) for k, make in enumerate(COPIES.values())]
    found = near_duplicates(
        ImageSet(fps, lambda i: cached[i]),
        ImageSet([fingerprint(c) for c in copies], lambda j: preprocess(copies[j], 128)[0]),
    )
    assert sorted((p.i, p.j) for p in found) == [(0, 0), (1, 1), (2, 2)]
    assert {p.method for p in found} == {HASH}


def test_each_change_is_found_by_alignment_and_lookalikes_are_not_paired(phantoms):
    images, _ = phantoms
    originals = [preprocess(im, 128)[0] for im in images[:20]]
    copies, truth = [], []
    for k, (name, change) in enumerate(CHANGES.items()):
        copies.append(preprocess(change(images[k]), 128)[0])
        truth.append((k, len(copies) - 1, name))
    found = near_duplicates(
        ImageSet([fingerprint(x) for x in originals], lambda i: originals[i]),
        ImageSet([fingerprint(x) for x in copies], lambda j: copies[j]),
    )
    pairs = {(p.i, p.j): p for p in found}
    missed = [name for i, j, name in truth if (i, j) not in pairs]
    assert missed == []
    assert set(pairs) == {(i, j) for i, j, _ in truth}  # no copy paired with a look-alike original
    crop = pairs[(6, 6)]  # a 15% border all round: b shows 70% of a, from (0.15, 0.15)
    assert crop.method == ALIGNED and crop.scale == pytest.approx(0.7, abs=0.03)
    assert crop.x == pytest.approx(0.15, abs=0.03) and crop.y == pytest.approx(0.15, abs=0.03)
    for p in found:
        assert p.score >= DEFAULT_MIN_SCORE


def test_window_descriptors_are_the_low_frequencies_of_each_window(phantoms):
    from scipy.fft import dctn

    from cxrtool.data.neardup.align import rank_image
    from cxrtool.data.neardup.descriptors import descriptor_batch, window_matrices

    images, _ = phantoms
    small = [preprocess(im, 128)[0] for im in images[:3]]
    batch = descriptor_batch(small)
    for img, got in zip(small, batch):
        ranks = rank_image(img)
        for k, (cols, rows) in enumerate(window_matrices()):
            want = dctn(rows @ ranks @ cols.T, norm="ortho")[:8, :8].ravel()
            want[0] = 0.0
            assert np.allclose(got[k], want, atol=1e-5)


def test_window_resampling_averages_the_pixels_each_cell_covers():
    from cxrtool.data.neardup.descriptors import area_matrix

    rng = np.random.default_rng(0)
    row = rng.random(64)
    assert np.allclose(area_matrix(16, 0.0, 64.0, 64) @ row, row.reshape(16, 4).mean(axis=1), atol=1e-6)
    shifted = area_matrix(16, 8.5, 40.0, 64)  # cells of 2.5 pixels starting mid-pixel
    assert np.allclose(shifted.sum(axis=1), 1.0)
    assert np.allclose(shifted[0, 8:11], [0.2, 0.4, 0.4]) and shifted[0].sum() == pytest.approx(1.0)


def test_the_window_grid_covers_every_view_a_crop_leaves():
    """A crop of up to 15% per border leaves a square view of 70% to 100% of the side anywhere
    inside the film: some window lies within 4% of the side of each such view (side and position),
    close enough for its descriptor to match (the crop figures in docs/performance.md)."""
    from cxrtool.data.neardup.descriptors import window_grid

    grid = np.array(window_grid())
    worst = 0.0
    for side in np.linspace(0.7, 1.0, 31):
        for x in np.linspace(0.0, 1.0 - side, 9):
            for y in np.linspace(0.0, 1.0 - side, 9):
                off = np.abs(grid - [side, x, y]).max(axis=1).min()
                worst = max(worst, off)
    assert worst <= 0.04


def test_the_search_builds_nothing_at_import():
    """The window matrices are built on first use (and then kept), not when the package is imported."""
    code = (
        "import cxrtool.data.neardup.search\n"
        "from cxrtool.data.neardup import descriptors as D\n"
        "built = [f.cache_info().currsize for f in (D.window_grid, D.window_matrices, D._projections)]\n"
        "assert built == [0, 0, 0], built\n"
        "D.descriptor_batch([__import__('numpy').zeros((64, 64), 'uint8')])\n"
        "assert [f.cache_info().currsize for f in (D.window_grid, D.window_matrices, D._projections)] == [1, 1, 1]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fingerprint_neighbours_are_taken_on_either_side_of_an_image():
    from cxrtool.data.neardup.hashing import candidate_pairs

    rng = np.random.default_rng(0)
    words = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    words[5] = words[0]
    words[5, 0] ^= 1  # image 5 is one bit from image 0, listed after it
    fps = [w.tobytes().hex() for w in words]
    pairs = candidate_pairs(fps, max_distance=40, limit=1)
    assert (0, 5, 1) in pairs
    assert all(i < j for i, j, _ in pairs)


def test_the_index_finds_what_the_exhaustive_search_finds(phantoms):
    """Above `exact_limit` images the neighbours come from the index: forced here on a small set,
    with cells of 4 images of which each query searches 2, it still finds every copy and no look-alike."""
    from cxrtool.data.neardup.index import IndexSettings
    from cxrtool.data.neardup.options import SearchOptions

    images, _ = phantoms
    originals = [preprocess(im, 128)[0] for im in images[:24]]
    copies = [preprocess(change(images[k]), 128)[0] for k, change in enumerate(CHANGES.values())]
    every = originals + copies
    groups = [f"p{k}" for k in range(len(originals))] + [f"c{k}" for k in range(len(copies))]
    fps = [fingerprint(x) for x in every]
    searched = ImageSet(fps, lambda i: every[i], groups=groups)
    exact = {(p.i, p.j) for p in near_duplicates(searched)}
    forced = SearchOptions(index=IndexSettings(exact_limit=8, cell_size=4, probes=2))
    indexed = {(p.i, p.j) for p in near_duplicates(searched, options=forced)}
    truth = {(k, len(originals) + k) for k in range(len(copies))}
    assert indexed == exact
    assert indexed == truth  # every copy, and no look-alike


def test_alignment_scores_separate_copies_from_lookalikes(phantoms):
    images, _ = phantoms
    work = [(work_image(preprocess(im, 128)[0]), fine_image(preprocess(im, 128)[0])) for im in images[:12]]
    i, j = np.triu_indices(len(work), 1)
    lookalikes = align_pairs(
        *(np.array([work[k][n] for k in idx]) for n, idx in ((0, i), (0, j))),
        np.array([work[k][1] for k in i]),
        np.array([work[k][1] for k in j]),
    )
    assert max(m.score for m in lookalikes) < DEFAULT_MIN_SCORE
    copy = preprocess(gamma(cropped(images[0], 0.1, 0.05, 0.0, 0.1)), 128)[0]
    [m] = align_pairs(work[0][0][None], work_image(copy)[None], work[0][1][None], fine_image(copy)[None])
    assert m.score >= DEFAULT_MIN_SCORE and m.scale < 0.95


def save_folder(root: Path, images: dict[str, np.ndarray], patients: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        Image.fromarray(img).save(root / name, **({"quality": 80} if name.endswith(".jpg") else {}))
    pd.DataFrame({"image": list(images), "finding": 0, "patient": [patients[n] for n in images]}).to_csv(
        root / "list.csv", index=False
    )
    return root / "list.csv"


@pytest.fixture(scope="module")
def with_copies(phantoms, tmp_path_factory) -> PreparedData:
    images, _ = phantoms
    files = {f"orig{k:02d}.png": img for k, img in enumerate(images[:24])}
    patients = {name: f"p{k}" for k, name in enumerate(files)}
    for k, (kind, make) in enumerate(COPIES.items()):
        files[f"copy_{kind}.jpg" if kind == "jpeg" else f"copy_{kind}.png"] = make(images[k])
        patients[list(files)[-1]] = f"other{k}"
    csv = save_folder(tmp_path_factory.mktemp("copies") / "raw", files, patients)
    return prepare_folder(
        PrepareFolderConfig(
            csv=csv,
            label_cols=["finding"],
            patient_col="patient",
            out=csv.parent.parent / "cache",
            size=64,
            workers=1,
            test_frac=0.3,
            val_frac=0.3,
        )
    )


def test_prepare_finds_the_copies_under_other_patients_and_keeps_them_in_one_split(with_copies):
    dups = pd.read_csv(with_copies.root / "duplicates.csv", dtype=str)
    found = {frozenset(p) for p in zip(dups["patient_a"], dups["patient_b"])}
    assert found == {frozenset({"p0", "other0"}), frozenset({"p1", "other1"}), frozenset({"p2", "other2"})}
    split = with_copies.index.groupby("patient")["split"].first()
    for k in range(3):
        assert split[f"p{k}"] == split[f"other{k}"]
    assert with_copies.index["fingerprint"].str.len().eq(64).all()
    assert with_copies.manifest["duplicates"] == 3
    assert set(dups["method"]) <= {HASH, ALIGNED} and (dups["score"].astype(float) >= DEFAULT_MIN_SCORE).all()


def test_prepare_groups_a_cropped_rewindowed_copy_and_names_how(phantoms, tmp_path):
    images, _ = phantoms
    files = {f"orig{k:02d}.png": img for k, img in enumerate(images[:12])}
    files["copy.png"] = gamma(cropped(images[3], 0.12, 0.0, 0.03, 0.1), 1.5)
    files["same_bytes.png"] = images[4]
    patients = {name: f"p{k}" for k, name in enumerate(files)}
    csv = save_folder(tmp_path / "raw", files, patients)
    data = prepare_folder(
        PrepareFolderConfig(
            csv=csv, label_cols=["finding"], patient_col="patient", out=tmp_path / "c", size=32, workers=1
        )
    )
    dups = pd.read_csv(data.root / "duplicates.csv", dtype=str).set_index("id_b")
    assert sorted(dups.index) == ["copy.png", "same_bytes.png"]
    assert dups.loc["copy.png", "id_a"] == "orig03.png" and dups.loc["copy.png", "method"] == ALIGNED
    assert float(dups.loc["copy.png", "scale"]) < 0.95
    assert dups.loc["same_bytes.png", "method"] == IDENTICAL
    split = data.index.set_index("id")["split"]
    assert split["copy.png"] == split["orig03.png"] and split["same_bytes.png"] == split["orig04.png"]
    assert not (tmp_path / "c" / ".prepare-tmp").exists()  # the thumbnails used for a 32 px cache are gone


def test_a_group_spanning_the_official_lists_keeps_the_test_list_and_leaves_training(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, SyntheticConfig(n_patients=16, size=128, seed=4, max_followups=1))
    names = sorted(p.name for p in (raw / "images").glob("*.png"))
    test = names[::4]
    # A re-windowed, cropped copy of a test image, filed under a new patient on the train_val list.
    original = np.asarray(Image.open(raw / "images" / test[1]))
    Image.fromarray(contrast(cropped(original, 0.1, 0.1, 0.05, 0.0))).save(raw / "images" / "00000999_000.png")
    entry = pd.read_csv(raw / "Data_Entry_2017.csv")
    row = entry.iloc[[0]].copy()
    row.iloc[0, 0], row["Patient ID"] = "00000999_000.png", 999
    pd.concat([entry, row]).to_csv(raw / "Data_Entry_2017.csv", index=False)
    (raw / "test_list.txt").write_text("\n".join(test) + "\n")
    (raw / "train_val_list.txt").write_text(
        "\n".join([n for n in names if n not in test] + ["00000999_000.png"]) + "\n"
    )
    res = runner.invoke(
        app, ["prepare", "nih", str(raw), "--out", str(tmp_path / "c"), "--size", "32", "--workers", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "left out of training" in res.output
    data = PreparedData(tmp_path / "c")
    index = data.index
    assert sorted(index.loc[index["split"] == "test", "id"]) == sorted(test)  # the official test list, unchanged
    assert "00000999_000.png" not in set(index["id"]) and len(data.images) == len(index)
    skipped = pd.read_csv(data.root / "skipped.csv", dtype=str).set_index("id")
    assert test[1] in skipped.loc["00000999_000.png", "reason"]
    assert data.manifest["left_out_of_training"]["dropped"] == 1
    dups = pd.read_csv(data.root / "duplicates.csv", dtype=str)
    assert {frozenset(p) for p in zip(dups["id_a"], dups["id_b"])} == {frozenset({test[1], "00000999_000.png"})}
    # The rows kept are the right pixels: the image file was compacted, not shifted.
    decoded = preprocess(np.asarray(Image.open(raw / "images" / index["id"].iloc[-1])), 32)[0]
    assert np.array_equal(data.images[-1], decoded)


def test_shrinking_the_image_file_rewrites_it_in_place(tmp_path):
    path = tmp_path / "images.u8.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1001, 4, 4))
    images[:] = (np.arange(1001) % 251).astype(np.uint8)[:, None, None]
    images.flush()
    del images
    inode = path.stat().st_ino
    compact_images(path, np.array([0, 1, 5, 6, 7, 1000]))
    out = np.load(path)
    assert out.shape == (6, 4, 4) and list(out[:, 0, 0]) == [0, 1, 5, 6, 7, 1000 % 251]
    assert path.stat().st_ino == inode and path.stat().st_size == 128 + 6 * 16  # same file, cut short
    shrink_images(path, 2)
    assert np.load(path).shape == (2, 4, 4) and path.stat().st_ino == inode


def test_dedupe_reports_across_caches_and_drops_from_the_external_one(phantoms, with_copies, tmp_path):
    images, _ = phantoms
    files = {f"ext{k}.png": img for k, img in enumerate(images[30:35])}  # not in the first cache
    files.update({f"dup{k}.png": brighter(images[5 + k], 10) for k in range(2)})
    csv = save_folder(tmp_path / "raw", files, {n: n for n in files})
    external = prepare_folder(
        PrepareFolderConfig(
            csv=csv, label_cols=["finding"], patient_col="patient", out=tmp_path / "ext", size=64, workers=1
        )
    )
    before_hash = external.data_hash
    res = runner.invoke(
        app, ["prepare", "dedupe", str(with_copies.root), str(external.root), "--report", str(tmp_path / "pairs.csv")]
    )
    assert res.exit_code == 0, res.output
    pairs = pd.read_csv(tmp_path / "pairs.csv", dtype=str)
    across = pairs[pairs["data_a"] != pairs["data_b"]]
    assert sorted(across["id_b"]) == ["dup0.png", "dup1.png"]
    assert sorted(across["id_a"]) == ["orig05.png", "orig06.png"]
    assert len(PreparedData(external.root)) == 7  # reporting alone changes nothing
    res = runner.invoke(
        app, ["prepare", "dedupe", str(with_copies.root), str(external.root), "--drop-from", str(external.root)]
    )
    assert res.exit_code == 0, res.output
    cleaned = PreparedData(external.root)
    assert sorted(cleaned.index["id"]) == [f"ext{k}.png" for k in range(5)]
    assert cleaned.images.shape[0] == 5 and cleaned.data_hash != before_hash
    assert np.array_equal(cleaned.images[0], preprocess(images[30], 64)[0])
    skipped = pd.read_csv(cleaned.root / "skipped.csv")
    assert (
        sorted(skipped["id"]) == ["dup0.png", "dup1.png"] and skipped["reason"].str.contains("near-duplicate of").all()
    )
    assert len(PreparedData(with_copies.root)) == 27  # the other cache is untouched
    res = runner.invoke(app, ["prepare", "dedupe", str(external.root), "--drop-from", str(external.root)])
    assert res.exit_code == 2 and "--drop-from" in res.output
