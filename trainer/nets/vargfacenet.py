"""VarGFaceNet (Yan et al. 2019): variable group convolutions (a constant S = 8
channels per group, so the number of groups varies with the width), an SE unit in
the normal block, the head setting (a stride-1 3x3 convolution first, so the first
layer keeps the full resolution) and the embedding setting (expand to 1024 channels,
a 7x7 variable group convolution down to 1x1, then pointwise to 512 and the FC)."""

from __future__ import annotations

from torch import nn

from .layers import ConvBN, activation, final_spatial, scaled

GROUP_CHANNELS = 8  # S in the paper
# (output channels, normal blocks after the downsampling block)
STAGES = ((80, 2), (160, 6), (320, 3))


class VarGSeparable(nn.Module):
    """3x3 variable group conv expanding by 2, then a pointwise conv."""

    def __init__(self, cin: int, cout: int, stride: int, act: str, act_after: bool,
                 kernel: int = 3):
        super().__init__()
        self.group = ConvBN(cin, cin * 2, kernel, stride, groups=cin // GROUP_CHANNELS, act=act)
        self.point = ConvBN(cin * 2, cout, 1, act=act if act_after else None)

    def forward(self, x):
        return self.point(self.group(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
                                  nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
                                  nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x)


class NormalBlock(nn.Module):
    def __init__(self, channels: int, act: str):
        super().__init__()
        self.body = nn.Sequential(VarGSeparable(channels, channels, 1, act, True),
                                  VarGSeparable(channels, channels, 1, act, False),
                                  SqueezeExcite(channels))
        self.out = activation(act, channels)

    def forward(self, x):
        return self.out(x + self.body(x))


class DownsampleBlock(nn.Module):
    def __init__(self, cin: int, cout: int, act: str):
        super().__init__()
        self.branch_a = VarGSeparable(cin, cout, 2, act, True)
        self.branch_b = VarGSeparable(cin, cout, 2, act, True)
        self.merge_act = activation(act, cout)
        self.merged = VarGSeparable(cout, cout, 1, act, False)
        self.shortcut = VarGSeparable(cin, cout, 2, act, False)
        self.out = activation(act, cout)

    def forward(self, x):
        merged = self.merged(self.merge_act(self.branch_a(x) + self.branch_b(x)))
        return self.out(merged + self.shortcut(x))


class VarGFaceNet(nn.Module):
    # no defaults here: StudentConfig is the one place for them (build() passes all)
    def __init__(self, *, width: float, input_size: int, embedding: int, act: str):
        super().__init__()
        head = scaled(40, width)
        layers = [ConvBN(3, head, 3, 1, act=act),  # head setting: stride 1
                  DownsampleBlock(head, head, act)]
        cin = head
        for channels, normals in STAGES:
            cout = scaled(channels, width)
            layers.append(DownsampleBlock(cin, cout, act))
            layers += [NormalBlock(cout, act) for _ in range(normals)]
            cin = cout
        expanded = scaled(1024, width)
        layers.append(ConvBN(cin, expanded, 1, act=act))
        self.features = nn.Sequential(*layers)
        spatial = final_spatial(input_size, 4)
        # embedding setting: shrink the map to 1x1 with a variable group conv
        self.shrink = ConvBN(expanded, expanded, spatial, groups=expanded // GROUP_CHANNELS,
                             act=None, padding=0)
        pointwise = scaled(512, width)
        self.point = ConvBN(expanded, pointwise, 1, act=act)
        self.fc = nn.Linear(pointwise, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)

    def forward(self, x):
        x = self.point(self.shrink(self.features(x)))
        return self.bn(self.fc(x.flatten(1)))
