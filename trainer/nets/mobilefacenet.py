"""MobileFaceNet (Chen et al. 2018): inverted residual bottlenecks, a global
depthwise convolution instead of pooling, 128-d embedding."""

from __future__ import annotations

from torch import nn

from .layers import ConvBN, EmbeddingHead, InvertedResidual, final_spatial, scaled

# (expansion, output channels, repeats, first stride), as in the paper's Table 1
STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class MobileFaceNet(nn.Module):
    # no defaults here: StudentConfig is the one place for them (build() passes all)
    def __init__(self, *, width: float, input_size: int, embedding: int, act: str):
        super().__init__()
        stem = scaled(64, width)
        layers = [ConvBN(3, stem, 3, 2, act=act),
                  ConvBN(stem, stem, 3, 1, groups=stem, act=act)]
        cin = stem
        for expansion, channels, repeats, stride in STAGES:
            cout = scaled(channels, width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, expansion, stride if i == 0 else 1, act))
                cin = cout
        last = scaled(512, width)
        layers.append(ConvBN(cin, last, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.head = EmbeddingHead(last, final_spatial(input_size, 4), embedding)

    def forward(self, x):
        return self.head(self.features(x))
