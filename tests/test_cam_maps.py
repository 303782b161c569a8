"""The maps themselves: CAM's definition, Grad-CAM and Grad-CAM++, alignment, hooks and memory."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrtool.cam import METHODS, class_activation_maps, feature_grid, low_res_maps, upsample
from cxrtool.cam.maps import Grid
from cxrtool.models import create_model


def manual_cam(model, x, classes):
    with torch.no_grad():
        features = model.forward_features(x)
        return torch.einsum("kc,bchw->bkhw", model.head.weight[classes], features)


@pytest.mark.parametrize("arch", ["tiny-cnn", "resnet18", "densenet121"])
def test_cam_is_the_head_weighted_sum_of_the_final_features(arch):
    torch.manual_seed(0)
    model = create_model(arch, 4).eval()
    x = torch.rand(2, 1, 64, 64)
    batch = low_res_maps(model, x, [0, 2], "cam")
    expected = manual_cam(model, x, [0, 2])
    assert torch.allclose(batch.maps, expected, atol=1e-5)
    # CAM's identity: the map's spatial mean plus the head's bias is the class logit.
    with torch.no_grad():
        logits = model(x)
    assert torch.allclose(batch.maps.mean(dim=(2, 3)) + model.head.bias[[0, 2]], logits[:, [0, 2]], atol=1e-4)
    maps, probs = class_activation_maps(model, x, [0, 2], "cam")
    assert maps.shape == (2, 2, 64, 64)  # the image's size, whatever the feature map's
    assert torch.allclose(probs, torch.sigmoid(logits), atol=1e-6)
    plain, _ = class_activation_maps(model, x, [0, 2], "cam", align=False)
    assert torch.allclose(
        plain, F.interpolate(expected, size=(64, 64), mode="bilinear", align_corners=False), atol=1e-5
    )


def test_one_and_three_channel_inputs_give_the_same_maps():
    torch.manual_seed(1)
    model = create_model("tiny-cnn", 3).eval()
    grey = torch.rand(2, 1, 64, 64)
    for method in METHODS:
        one, p1 = class_activation_maps(model, grey, [1], method)
        three, p3 = class_activation_maps(model, grey.repeat(1, 3, 1, 1), [1], method)
        assert one.shape == three.shape == (2, 1, 64, 64)
        assert torch.allclose(one, three, atol=1e-5) and torch.allclose(p1, p3)


def test_gradcam_is_the_positive_part_of_cam_for_a_pooled_linear_head():
    # With global average pooling and a linear head, d logit_c / d f_k(i,j) = w_ck / (h w) everywhere,
    # so Grad-CAM must come out as ReLU(CAM) / (h w): a check of the gradient plumbing.
    torch.manual_seed(2)
    model = create_model("tiny-cnn", 3).eval()
    x = torch.rand(3, 1, 64, 64)
    cam = low_res_maps(model, x, [0, 1, 2], "cam").maps
    grad = low_res_maps(model, x, [0, 1, 2], "gradcam").maps
    h, w = cam.shape[-2:]
    assert torch.allclose(grad, F.relu(cam) / (h * w), atol=1e-6)


def test_gradcam_plus_plus_is_non_negative_and_differs_from_gradcam():
    torch.manual_seed(3)
    model = create_model("resnet18", 2).eval()
    x = torch.rand(2, 1, 64, 64)
    pp = low_res_maps(model, x, [0, 1], "gradcam++").maps
    g = low_res_maps(model, x, [0, 1], "gradcam").maps
    assert torch.isfinite(pp).all() and (pp >= 0).all()
    assert not torch.allclose(
        pp / (pp.amax(dim=(2, 3), keepdim=True) + 1e-12), g / (g.amax(dim=(2, 3), keepdim=True) + 1e-12)
    )


def test_multi_label_models_give_each_class_its_own_map(trained_run, synth_data):
    from cxrtool.models.checkpoint import load_checkpoint

    model, card = load_checkpoint(trained_run)
    several = np.flatnonzero(np.nansum(synth_data.targets(), axis=1) >= 2)[:4]
    x = torch.from_numpy(np.asarray(synth_data.images[several])).float().div(255).unsqueeze(1)
    classes = list(range(len(card["labels"])))
    maps = low_res_maps(model, x, classes, "cam").maps
    assert torch.allclose(maps, manual_cam(model, x, classes), atol=1e-4)
    for a in classes:
        for b in classes[a + 1 :]:
            assert not torch.allclose(maps[:, a], maps[:, b], atol=1e-3), (card["labels"][a], card["labels"][b])


def test_hooks_are_removed_after_use_even_when_the_forward_fails():
    model = create_model("tiny-cnn", 2).eval()

    def hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())

    for method in METHODS:
        class_activation_maps(model, torch.rand(1, 1, 32, 32), [0, 1], method)
        assert hooks() == 0
        with pytest.raises(RuntimeError):
            low_res_maps(model, torch.rand(1, 2, 32, 32), [0], method)  # two channels: the model refuses
        assert hooks() == 0
    feature_grid(model, 48)
    assert hooks() == 0


def test_mapping_200_images_leaves_no_hooks_and_no_growing_memory():
    torch.manual_seed(4)
    model = create_model("tiny-cnn", 2).eval()
    images = torch.rand(200, 1, 1, 24, 24)

    def live_tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is torch.Tensor or type(o) is torch.nn.Parameter)

    counts = []
    for i, x in enumerate(images):
        maps, _ = class_activation_maps(model, x, [i % 2], METHODS[i % 3])
        assert maps.shape == (1, 1, 24, 24)
        if i in (20, 199):
            counts.append(live_tensors())
    assert not model.cam_layer._forward_hooks and not model.cam_layer._backward_hooks
    assert counts[1] <= counts[0]  # nothing per image is kept alive: no graph, no activations
    assert all(p.grad is None for p in model.parameters())  # maps never touch the weights' gradients


@pytest.mark.parametrize("arch, size", [("tiny-cnn", 256), ("resnet18", 256)])
def test_feature_grid_matches_where_each_cell_looks(arch, size):
    # The centroid of an interior cell's input gradient (its effective receptive field) is where
    # the grid says the cell sits, and (for ResNet) not where a plain resize would put it.
    torch.manual_seed(0)
    model = create_model(arch, 2).eval()
    grid = feature_grid(model, size)
    x = torch.full((1, 1, size, size), 0.5, requires_grad=True)
    features = model.forward_features(x)
    i = features.shape[-1] // 2
    features[0, :, i, i].sum().backward()
    g = x.grad[0, 0].abs()
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    cy = float((g.sum(1) * centres).sum() / g.sum())
    cx = float((g.sum(0) * centres).sum() / g.sum())
    predicted = grid.stride_y * i + grid.offset_y
    assert abs(cy - predicted) < 3 and abs(cx - (grid.stride_x * i + grid.offset_x)) < 3
    if arch == "resnet18":
        plain = (i + 0.5) * size / features.shape[-1]
        assert abs(cy - plain) > 10


def test_upsample_puts_a_hot_cell_at_its_grid_centre():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 1, 2] = 1.0
    grid = Grid(stride_y=16, offset_y=1.0, stride_x=16, offset_x=1.0)
    aligned = upsample(maps, 64, grid, 64)[0, 0]
    y, x = np.unravel_index(int(aligned.argmax()), aligned.shape)
    assert (y + 0.5, x + 0.5) == pytest.approx((16 * 1 + 1, 16 * 2 + 1), abs=0.6)
    plain = upsample(maps, 64)[0, 0]
    y, x = np.unravel_index(int(plain.argmax()), plain.shape)
    assert (y + 0.5, x + 0.5) == pytest.approx((24, 40), abs=0.6)
    # Half the size (a 32-pixel overlay of a 64-pixel network input): the same place, scaled.
    small = upsample(maps, 32, grid, 64)[0, 0]
    y, x = np.unravel_index(int(small.argmax()), small.shape)
    assert ((y + 0.5) * 2, (x + 0.5) * 2) == pytest.approx((17, 33), abs=1.1)
