"""Backbones behind one interface, and the classifier every command uses.

`XRayClassifier` wraps a convolutional body (image -> final convolution's feature map) with
global average pooling and one linear head (one logit per label), in the timm style:
`forward_features(x) -> (B, C, h, w)`, `forward_head(f, pre_logits=True) -> (B, C)`, and
`cam_layer`, the module whose output is the final feature map. CAM and embeddings need nothing
else. Which module is the CAM layer and which is the body's first convolution are named by the
architecture's entry (models/archs.py) and given to the classifier when it is built. Inputs are
float images in [0, 1] with 1 or 3 channels; the network repeats a grey channel to three and
applies the ImageNet normalisation itself, so every caller (trainer, predict, cam) feeds the
same thing and the normalisation travels inside the checkpoint. An input convention
(`INPUT_CONVENTIONS`) says how many channels the body takes and how [0, 1] maps to its input:
"imagenet" (grey repeated to three channels, ImageNet mean/std) for our own networks,
"torchxrayvision" (one channel, -1024..1024) for networks imported from that package.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (channels, mean, std): the network sees (x - mean) / std for x in [0, 1].
INPUT_CONVENTIONS: dict[str, tuple[int, tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (3, IMAGENET_MEAN, IMAGENET_STD),
    # torchxrayvision's `normalize(img, 255)`: (2 * img / 255 - 1) * 1024 = (x - 0.5) * 2048.
    "torchxrayvision": (1, (0.5,), (1.0 / 2048.0,)),
}


class XRayClassifier(nn.Module):
    """body -> global average pool -> linear head, with the input normalisation built in."""

    # What the starting weights gave the body (`models.weights.LoadReport.manifest()`), for the
    # run's manifest; None when the network started from random weights.
    weights_report: dict | None = None

    def __init__(
        self,
        arch: str,
        body: nn.Module,
        num_features: int,
        num_labels: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        convention: str = "imagenet",
        *,
        first_conv: str,
        cam_layer: str = "body",
    ):
        super().__init__()
        self.arch = arch
        self.convention = convention
        self.first_conv = first_conv  # path of the body's first convolution (archs.ArchSpec)
        self.cam_layer_path = cam_layer  # path of the module whose output is the feature map
        self.body = body
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_labels)
        # Buffers, not parameters: saved with the weights, never trained.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is the final convolutional feature map (B, C, h, w)."""
        return self.get_submodule(self.cam_layer_path)

    @property
    def in_channels(self) -> int:
        return int(self.mean.shape[1])

    def input_convention(self) -> dict:
        """The card's `input` field: the convention's name, channels, and what 0 and 1 become."""
        mean, std = self.mean.flatten().tolist(), self.std.flatten().tolist()
        return {
            "convention": self.convention,
            "channels": self.in_channels,
            "range": [[round(-m / s, 4), round((1 - m) / s, 4)] for m, s in zip(mean, std)],
        }

    def set_input_convention(
        self, convention: str, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
    ) -> None:
        """Switch to another input convention; a one-channel convention gets a one-channel stem."""
        channels, default_mean, default_std = INPUT_CONVENTIONS[convention]
        mean, std = tuple(mean or default_mean), tuple(std or default_std)
        if channels == 1 and self.in_channels != 1:
            single_channel_stem(self.body, self.first_conv)
        device = self.mean.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.convention = convention

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.in_channels != 1:
            x = x.expand(-1, self.in_channels, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.pool(features)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(self, num_labels: int) -> None:
        """A fresh head for another label set; the body keeps its weights."""
        device = self.head.weight.device
        self.head = nn.Linear(self.num_features, num_labels).to(device)


# ---------------------------------------------------------------- bodies


def resnet_body(model: nn.Module) -> tuple[nn.Module, int]:
    """The convolutional part of a torchvision-style ResNet (everything before avgpool/fc)."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    body = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
    return body, model.fc.in_features


def densenet_body(model: nn.Module) -> tuple[nn.Module, int]:
    """torchvision DenseNet's `features` plus the ReLU its forward applies before pooling."""
    body = nn.Sequential(OrderedDict([("features", model.features), ("relu", nn.ReLU(inplace=False))]))
    return body, model.classifier.in_features


def single_channel_stem(body: nn.Module, name: str) -> None:
    """Replace the body's first convolution (at path `name`) by one that takes a single channel (in place)."""
    child = body.get_submodule(name)
    if not isinstance(child, nn.Conv2d):
        raise TypeError(f"{name} is a {type(child).__name__}, not the body's first convolution")
    conv = nn.Conv2d(
        1,
        child.out_channels,
        child.kernel_size,
        child.stride,
        child.padding,
        child.dilation,
        child.groups,
        child.bias is not None,
    ).to(child.weight.device)
    with torch.no_grad():  # the sum over colour channels: the same response to a grey image
        conv.weight.copy_(child.weight.sum(dim=1, keepdim=True))
        if child.bias is not None:
            conv.bias.copy_(child.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(body.get_submodule(parent_name) if parent_name else body, attr, conv)


class TinyCNN(nn.Module):
    """A four-stage CNN (about 0.1 M parameters) for tests and quick CPU demos; stride 16 overall."""

    def __init__(self, width: int = 16):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        blocks = []
        for i in range(4):
            blocks += [
                (f"conv{i + 1}", nn.Conv2d(chans[i], chans[i + 1], 3, stride=2 if i else 1, padding=1, bias=False)),
                (f"bn{i + 1}", nn.BatchNorm2d(chans[i + 1])),
                (f"relu{i + 1}", nn.ReLU(inplace=True)),
            ]
            if i == 0:
                blocks.append(("pool", nn.MaxPool2d(2)))
        self.features = nn.Sequential(OrderedDict(blocks))
        self.num_features = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
