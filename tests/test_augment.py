"""Batch augmentation and the cache dataset that feeds it."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from cxrtool.data.augment import AugmentSettings, augment_batch
from cxrtool.data.dataset import CacheDataset


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blob_batch(n: int = 32, size: int = 48) -> torch.Tensor:
    """A bright spot to the right of centre on a dark background."""
    x = torch.zeros(n, 1, size, size)
    c = size // 2
    x[:, :, c - 2 : c + 2, c + 13 : c + 16] = 1.0  # rows centred on the image centre
    return x


def test_none_is_the_identity_and_flip_only_flips():
    x = torch.rand(16, 1, 20, 20)
    assert augment_batch(x, "none", gen()) is x
    out = augment_batch(x, "flip", gen())
    flipped = [torch.equal(o, torch.flip(i, dims=[-1])) for o, i in zip(out, x)]
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 0 < sum(flipped) < 16


def test_geometry_convention_matches_a_plain_flip():
    x = torch.rand(4, 1, 24, 24)
    still = AugmentSettings(rotation_deg=0, translate=0, scale=(1, 1), brightness=0, contrast=0, flip_p=0.0)
    mirror = AugmentSettings(rotation_deg=0, translate=0, scale=(1, 1), brightness=0, contrast=0, flip_p=1.0)
    assert torch.allclose(augment_batch(x, "paper", gen(), still), x, atol=1e-5)
    assert torch.allclose(augment_batch(x, "paper", gen(), mirror), torch.flip(x, dims=[-1]), atol=1e-5)


def test_rotation_stays_within_twenty_degrees_and_varies():
    x = blob_batch()
    rotate_only = AugmentSettings(translate=0, scale=(1, 1), brightness=0, contrast=0, flip_p=0.0)
    out = augment_batch(x, "paper", gen(3), rotate_only)[:, 0]
    size = x.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2, indexing="ij")
    mass = out.sum(dim=(1, 2))
    cy, cx = (out * ys).sum(dim=(1, 2)) / mass, (out * xs).sum(dim=(1, 2)) / mass
    angles = torch.rad2deg(torch.atan2(cy, cx))
    assert angles.abs().max() <= 21.0
    assert angles.abs().max() > 8.0 and angles.std() > 3.0  # it really rotates, both ways
    assert (angles > 0).any() and (angles < 0).any()


def test_paper_augmentation_is_seeded_bounded_and_shape_preserving():
    x = torch.rand(8, 1, 32, 32)
    a = augment_batch(x, "paper", gen(1))
    b = augment_batch(x, "paper", gen(1))
    c = augment_batch(x, "paper", gen(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment_batch(torch.rand(2, 1, 8, 8), "heavy", gen())


def test_dataset_reads_whole_batches_from_the_memmap_and_pickles_without_it(synth_data):
    rows = synth_data.rows("train")
    ds = CacheDataset(synth_data, rows, label_columns=[1, 0])
    images, targets, got_rows = ds.__getitems__([5, 2, 9])
    assert images.dtype == torch.uint8 and images.shape == (3, synth_data.size, synth_data.size)
    assert got_rows.tolist() == rows[[2, 5, 9]].tolist()  # read in ascending order
    assert np.array_equal(images.numpy(), np.asarray(synth_data.images[rows[[2, 5, 9]]]))
    expected = synth_data.targets(rows[[2, 5, 9]])[:, [1, 0]]
    assert np.array_equal(targets.numpy(), expected, equal_nan=True)
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert clone._images is None and torch.equal(clone.__getitems__([5, 2, 9])[0], images)
    assert math.isclose(len(ds), len(rows))


@pytest.mark.parametrize("mode", ["flip", "paper"])
def test_a_seed_gives_the_same_augmented_batch_from_a_generator_on_the_batch_device(mode):
    # The trainer seeds a generator on the training device; parameters never leave it.
    x = torch.rand(12, 1, 24, 24)

    def device_gen(seed: int) -> torch.Generator:
        return torch.Generator(device=x.device).manual_seed(seed)

    a, b, c = (augment_batch(x, mode, device_gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    from cxrtool.data.augment import affine_matrices

    theta = affine_matrices(12, device_gen(7))
    assert theta.device == x.device and theta.shape == (12, 2, 3)
    assert torch.equal(theta, affine_matrices(12, device_gen(7)))
