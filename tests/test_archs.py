"""The architecture registry (models/archs.py): every entry's head, first convolution, CAM layer and
input convention are what the built network has, and help and docs list the registry's names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cxrtool.cli import app
from cxrtool.models.archs import arch_choices, arch_names, get_spec
from cxrtool.models.backbones import INPUT_CONVENTIONS
from cxrtool.models.registry import create_model
from cxrtool.models.weights import load_body_weights

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("arch", arch_names())
def test_an_entry_names_what_the_network_has(arch):
    spec = get_spec(arch)
    model = create_model(arch, 2)
    # The first convolution is the first Conv2d of the body, in module order.
    first = next(name for name, m in model.body.named_modules() if isinstance(m, nn.Conv2d))
    assert spec.first_conv == first == model.first_conv
    # The CAM layer's output is the feature map the head pools.
    seen = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    x = torch.rand(1, 1, 64, 64)
    try:
        with torch.no_grad():
            features = model.forward_features(x)
    finally:
        handle.remove()
    assert model.cam_layer is model.get_submodule(spec.cam_layer)
    assert torch.equal(seen["out"], features) and features.shape[1] == model.num_features
    channels, mean, _ = INPUT_CONVENTIONS[spec.input]
    assert model.convention == spec.input and model.in_channels == channels
    assert model.input_convention()["channels"] == channels and tuple(model.mean.flatten().tolist()) == pytest.approx(
        mean
    )


@pytest.mark.parametrize("arch", ["resnet18", "tiny-cnn"])
def test_only_the_entrys_head_is_left_out_of_a_weights_file(arch):
    spec = get_spec(arch)
    source = create_model(arch, 2)
    state = dict(source.body.state_dict())  # a bare body, as torchvision names it
    heads = {"head.weight": torch.zeros(2, source.num_features)}
    if spec.head:
        heads[f"{spec.head}.weight"] = torch.zeros(1000, source.num_features)
    report = load_body_weights(create_model(arch, 2), {**state, **heads}, "--weights test", allow_partial=True)
    assert report.complete and not report.unexpected
    other = "classifier" if spec.head != "classifier" else "fc"  # another architecture's head is not ours
    report = load_body_weights(
        create_model(arch, 2), {**state, f"{other}.weight": torch.zeros(3, 3)}, "--weights test", allow_partial=True
    )
    assert report.unexpected == [f"{other}.weight"]


def test_a_one_channel_convention_replaces_the_named_first_convolution():
    model = create_model("resnet18", 2)
    before = model.body.get_submodule(model.first_conv).weight.detach().clone()
    model.set_input_convention("torchxrayvision")
    stem = model.body.get_submodule(model.first_conv)
    assert stem.in_channels == 1 and torch.allclose(stem.weight, before.sum(dim=1, keepdim=True))


def test_help_and_docs_list_the_registrys_architectures():
    text = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "250"}).output
    assert arch_choices() in text
    row = next(line for line in (DOCS / "pretrain.md").read_text().splitlines() if line.startswith("| `--arch NAME`"))
    assert re.findall(r"`([a-z0-9-]+)`", row.split("|")[3]) == arch_names()
    table = (DOCS / "architecture.md").read_text().split("## How to add an architecture")[1]
    for arch in arch_names():
        spec = get_spec(arch)
        cells = f"| `{arch}` | {f'`{spec.head}`' if spec.head else '-'} | `{spec.first_conv}` | `{spec.cam_layer}` | `{spec.input}` |"
        assert cells in table, cells
