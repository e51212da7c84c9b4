"""Building blocks shared by the students."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("relu", "leaky", "prelu", "prelu-split")


class SplitPReLU(nn.Module):
    """PReLU written as relu(x) - a * relu(-x): the same function, but exported as
    ops onnxruntime fuses and quantizes (a plain PReLU node stays fp32 between
    quantize/dequantize pairs; ../shared/notes/cpu-inference.md)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 0.25))

    def forward(self, x):
        a = self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return torch.relu(x) - a * torch.relu(-x)


def activation(kind: str, channels: int) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky":
        return nn.LeakyReLU(0.1, inplace=True)
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "prelu-split":
        return SplitPReLU(channels)
    raise ValueError(f"unknown activation '{kind}' (known: {', '.join(ACTIVATIONS)})")


class ConvBN(nn.Sequential):
    """Conv + BN, followed by the activation unless the layer is linear."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu", padding: int | None = None):
        pad = (kernel - 1) // 2 if padding is None else padding
        layers = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act:
            layers.append(activation(act, cout))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise (stride s), linear 1x1 projection; a shortcut when
    the shape is kept. MobileFaceNet's bottleneck and MobiFace's (R)Block alike."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int, act: str):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            ConvBN(cin, hidden, 1, act=act),
            ConvBN(hidden, hidden, 3, stride, groups=hidden, act=act),
            ConvBN(hidden, cout, 1, act=None),
        )

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """Channels times the width multiplier, rounded to a multiple of `divisor`."""
    return max(divisor, int(round(channels * width / divisor)) * divisor)


class EmbeddingHead(nn.Module):
    """Global depthwise conv over the last feature map (no pooling: faces are aligned,
    so where a feature is matters), then a linear projection to the embedding."""

    def __init__(self, channels: int, spatial: int, embedding: int):
        super().__init__()
        self.gdconv = ConvBN(channels, channels, spatial, groups=channels, act=None, padding=0)
        self.project = nn.Conv2d(channels, embedding, 1, bias=False)
        self.bn = nn.BatchNorm1d(embedding)

    def forward(self, x):
        return self.bn(self.project(self.gdconv(x)).flatten(1))


def final_spatial(input_size: int, downsamplings: int) -> int:
    size = input_size
    for _ in range(downsamplings):
        size = (size + 1) // 2
    return size
