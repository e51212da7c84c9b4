"""MiniFASNetV2 and MiniFASNetV1SE (Minivision's silent anti-spoofing nets) in torch.

The weights are the vendor's published state dicts (minivision-ai/Silent-Face-Anti-
Spoofing, Apache-2.0, in ../shared/models/minifasnet). Module and parameter names
below follow those state dicts (after the DataParallel `module.` prefix is stripped),
so `load_state_dict(strict=True)` checks the layout for us; the widths of each block
are the vendor's pruned ones, written here as one table per network.

Both nets take an 80x80 BGR crop with raw 0..255 values (no mean, no scaling: the
vendor's ToTensor does not divide by 255) and return 3 logits; class 1 is a real face.

Layout: a 3x3/2 stem, a depthwise 3x3, then four stages of inverted-bottleneck blocks
(1x1 expand + PReLU, depthwise 3x3 + PReLU, 1x1 project), each stage opened by a
stride-2 block without shortcut, then a 1x1 to 512 channels, a 5x5 depthwise "global"
conv, a 512->128 linear + BatchNorm and the 128->3 classifier. V1SE puts a squeeze-
and-excitation gate on the projected branch of the last block of each residual stage.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

INPUT_SIZE = 80
NUM_CLASSES = 3
LIVE_CLASS = 1

# Inner (expanded) widths of each block; the block outputs are 64 then 128 channels.
#            stem  conv_23  conv_3 (4 blocks)   conv_34  conv_4 (6 blocks)            conv_45  conv_5
WIDTHS = {
    "V1SE": (32, 103, (13, 26, 13, 52), 231, (154, 52, 26, 52, 26, 26), 308, (26, 26)),
    "V2": (32, 103, (13, 13, 13, 13), 231, (231, 52, 26, 77, 26, 26), 308, (26, 26)),
}


class PReLU(nn.PReLU):
    """nn.PReLU with the same parameters, exported as x + (a-1)*min(x, 0): onnxruntime's
    PRelu kernel broadcasts the per-channel slope element by element and is several
    times slower than Min/Mul/Add (the same finding as trainer/teachers/mtcnn.py)."""

    reference = False  # True: nn.functional.prelu (to check the export against)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if PReLU.reference:
            return nn.functional.prelu(x, self.weight)
        a = self.weight.reshape((1, -1) + (1,) * (x.dim() - 2))
        return x + (a - 1.0) * torch.clamp(x, max=0.0)


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm, + PReLU unless linear (names: conv, bn, prelu)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if kernel == 3 else 0,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if not linear:
            self.prelu = PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if hasattr(self, "prelu") else x


class SqueezeExcite(nn.Module):
    """Channel gate: avg-pool, 1x1 (C -> C/4) + BN + ReLU, 1x1 back + BN, sigmoid."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        inner = channels // reduction
        self.fc1 = nn.Conv2d(channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.fc2 = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(dim=(2, 3), keepdim=True)
        g = torch.relu(self.bn1(self.fc1(g)))
        return x * torch.sigmoid(self.bn2(self.fc2(g)))


class Bottleneck(nn.Module):
    """1x1 expand, depthwise 3x3 (stride 1 or 2), 1x1 linear projection; a shortcut
    when the shape is kept; an optional SE gate on the branch before the sum."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int = 1,
                 se: bool = False) -> None:
        super().__init__()
        self.conv = ConvBN(cin, inner)
        self.conv_dw = ConvBN(inner, inner, 3, stride, groups=inner)
        self.project = ConvBN(inner, cout, linear=True)
        self.shortcut = stride == 1 and cin == cout
        if se:
            self.se_module = SqueezeExcite(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        if not self.shortcut:
            return y
        if hasattr(self, "se_module"):
            y = self.se_module(y)
        return x + y


class Stage(nn.Module):
    """Residual blocks in a `model` Sequential (the state dicts' name)."""

    def __init__(self, channels: int, inners: tuple[int, ...], se: bool) -> None:
        super().__init__()
        self.model = nn.Sequential(*[
            Bottleneck(channels, inner, channels, se=se and i == len(inners) - 1)
            for i, inner in enumerate(inners)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """(N, 3, 80, 80) BGR 0..255 -> (N, 3) logits; `probabilities` adds the softmax."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        stem, w23, w3, w34, w4, w45, w5 = WIDTHS[variant]
        se = variant.endswith("SE")
        self.variant = variant
        self.conv1 = ConvBN(3, stem, 3, 2)
        self.conv2_dw = ConvBN(stem, stem, 3, 1, groups=stem)
        self.conv_23 = Bottleneck(stem, w23, 64, stride=2)
        self.conv_3 = Stage(64, w3, se)
        self.conv_34 = Bottleneck(64, w34, 128, stride=2)
        self.conv_4 = Stage(128, w4, se)
        self.conv_45 = Bottleneck(128, w45, 128, stride=2)
        self.conv_5 = Stage(128, w5, se)
        self.conv_6_sep = ConvBN(128, 512)
        kernel = (INPUT_SIZE + 15) // 16  # the last map's size: one "global" depthwise conv
        self.conv_6_dw = ConvBN(512, 512, kernel, groups=512, linear=True)
        self.linear = nn.Linear(512, 128, bias=False)
        self.bn = nn.BatchNorm1d(128)
        self.prob = nn.Linear(128, NUM_CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2_dw(self.conv1(x))
        x = self.conv_3(self.conv_23(x))
        x = self.conv_4(self.conv_34(x))
        x = self.conv_5(self.conv_45(x))
        x = self.conv_6_dw(self.conv_6_sep(x)).flatten(1)
        return self.prob(self.bn(self.linear(x)))


class WithSoftmax(nn.Module):
    """What the ONNX file holds: the class probabilities (the vendor's softmax)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def load_state_dict(path: Path) -> "OrderedDict[str, torch.Tensor]":
    """The vendor's state dict, without DataParallel's `module.` prefix."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v)
                       for k, v in state.items())


def load_net(variant: str, path: Path) -> MiniFASNet:
    net = MiniFASNet(variant)
    net.load_state_dict(load_state_dict(path), strict=True)
    return net.eval()
