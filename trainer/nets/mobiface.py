"""MobiFace (Duong et al. 2019), as in the table of its paper: fast downsampling
(112 -> 56 in the first two layers), bottleneck blocks that halve the size and
residual bottlenecks that keep it, expansion 2, channels doubling after each
bottleneck, BN after every layer and an activation except on the linear ones, and a
fully connected embedding over the whole 7x7 map."""

from __future__ import annotations

from torch import nn

from .layers import ConvBN, InvertedResidual, final_spatial, scaled

# (output channels, residual repeats): Block then RBlock x repeats, expansion 2
STAGES = ((64, 2), (128, 3), (256, 6))


class MobiFace(nn.Module):
    # no defaults here: StudentConfig is the one place for them (build() passes all)
    def __init__(self, *, width: float, input_size: int, embedding: int, act: str):
        super().__init__()
        stem = scaled(64, width)
        layers = [ConvBN(3, stem, 3, 2, act=act),
                  ConvBN(stem, stem, 3, 1, groups=stem, act=act)]
        cin = stem
        for channels, repeats in STAGES:
            cout = scaled(channels, width)
            layers.append(InvertedResidual(cin, cout, 2, 2, act))  # Block: halves the size
            cin = cout
            layers += [InvertedResidual(cin, cin, 2, 1, act) for _ in range(repeats)]  # RBlocks
        last = scaled(512, width)
        layers.append(ConvBN(cin, last, 1, act=act))
        self.features = nn.Sequential(*layers)
        spatial = final_spatial(input_size, 4)
        self.fc = nn.Linear(last * spatial * spatial, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)

    def forward(self, x):
        return self.bn(self.fc(self.features(x).flatten(1)))
