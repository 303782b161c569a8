"""The inference engine: one loop for every command, order kept, flip averaged, bad files listed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cxrtool.data.dataset import CacheDataset
from cxrtool.data.tensors import to_model_input
from cxrtool.inference import FileDataset, InferenceEngine, extract_features, predict_probs
from cxrtool.models import create_model


@pytest.fixture(scope="module")
def model(synth_data):
    torch.manual_seed(0)
    return create_model("tiny-cnn", len(synth_data.labels)).eval()


def test_outputs_follow_the_rows_given_whatever_their_order_and_batching(model, synth_data):
    rows = synth_data.rows("test")[:10]
    shuffled = rows[np.random.default_rng(0).permutation(len(rows))]
    plain = predict_probs(model, synth_data, rows, 48, batch_size=64)
    mixed = predict_probs(model, synth_data, shuffled, 48, batch_size=3, workers=2)
    order = {r: i for i, r in enumerate(rows)}
    np.testing.assert_allclose(mixed, plain[[order[r] for r in shuffled]], atol=1e-6)
    x = to_model_input(torch.from_numpy(np.asarray(synth_data.images[rows[:2]])), 48)
    with torch.no_grad():
        expected = torch.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(plain[:2], expected, atol=1e-6)


def test_the_flip_is_averaged_in_probabilities_only(model, synth_data):
    rows = synth_data.rows("test")[:4]
    x = to_model_input(torch.from_numpy(np.asarray(synth_data.images[rows])), 48)
    with torch.no_grad():
        expected = (torch.sigmoid(model(x)) + torch.sigmoid(model(torch.flip(x, dims=[-1])))) / 2
    tta = InferenceEngine(model, "cpu", 48, tta=True)
    np.testing.assert_allclose(predict_probs(model, synth_data, rows, 48, tta=True), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(tta.forward(x, "logits").numpy(), model(x).detach().numpy(), atol=1e-6)
    feats = extract_features(model, synth_data, rows, 48)
    assert feats.shape == (4, model.num_features) and feats.dtype == np.float32
    with pytest.raises(ValueError, match="unknown inference mode"):
        tta.forward(x, "embeddings")


def test_cache_batches_carry_targets_and_file_batches_list_what_was_skipped(model, synth_data, tmp_path):
    engine = InferenceEngine(model, "cpu", 48)
    rows = synth_data.rows("val")[:5]
    batches = list(engine.batches(CacheDataset(synth_data, rows), 2))
    assert [b.count for b in batches] == [2, 2, 1]
    targets = np.concatenate([b.extra[0].numpy() for b in batches])
    np.testing.assert_array_equal(targets, synth_data.targets(rows))

    paths = []
    for i, r in enumerate(rows[:3]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.asarray(synth_data.images[r])).save(paths[-1])
    paths.insert(1, tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    paths.append(tmp_path / "bad.png")
    skipped: list = []
    batches = list(engine.batches(FileDataset(paths, synth_data.size), 2, workers=2, skipped=skipped))
    assert [b.positions.tolist() for b in batches] == [[0], [2, 3], []]
    assert batches[-1].x is None and [b.count for b in batches] == [2, 2, 1]
    assert [p for p, _ in skipped] == [str(tmp_path / "missing.png"), str(tmp_path / "bad.png")]
    np.testing.assert_array_equal(batches[1].images.numpy(), np.asarray(synth_data.images[rows[1:3]]))
