"""A student cut from the teacher itself: dlib's ResNet at a smaller input, with fewer
channels inside each residual block and, optionally, fewer blocks per stage.

From-scratch students start at chance and climb half an LFW point per CPU hour here.
This one starts from the teacher's own weights, so distillation only has to repair
what the cuts cost:

- **Input size.** The network is convolutional up to its global average, so the same
  weights run on a 112 px (or 128, 96) chip framed like the teacher's 150 px one. The
  zero-padding of dlib's add_prev in the down-sampling blocks depends on the sizes, so
  each block computes it for this input (`ResidualBlock`).
- **Inner channels** (`width`, or `stage_widths` for each stage): the channels between
  a block's two 3x3 convolutions are kept by measured importance (mean activation
  times the L2 norm of the weights that read it), the residual stream itself is left
  whole, so the skips stay exact. The stages differ: cut alone to half its inner
  channels, the 64-channel stage drops LFW to 90% before any training, the 256-channel
  stage only to 97% though it holds 80% of the weights (bench/bench_derived_cuts.py),
  so a file budget is best spent on full early stages and a narrow last one.
- **Depth** (`depth`, residual blocks per stage after its down-sampling block; the
  teacher has 3-3-2-2): the blocks whose branch adds the least to their input are
  dropped.
- **Preprocessing**: the student convention ((x - 127.5) / 128) is folded into the stem
  convolution, which has no padding, so the fold is exact.

Everything is a plain 3x3 convolution + ReLU, which int8 runs best on this CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .normalisation import STUDENT_MEAN, STUDENT_STD

TEACHER_DEPTH = (3, 3, 2, 2)  # residual blocks per stage: 32, 64, 128, 256 channels
STAGE_CHANNELS = (32, 64, 128, 256, 256)  # the last stage is its down block alone
STEM_CHANNELS = 32


def parse_depth(depth: str | tuple | None) -> tuple[int, ...]:
    if not depth:
        return TEACHER_DEPTH
    counts = tuple(int(part) for part in str(depth).split("-")) if isinstance(depth, str) \
        else tuple(depth)
    if len(counts) != len(TEACHER_DEPTH) or any(
            not 0 <= c <= t for c, t in zip(counts, TEACHER_DEPTH)):
        raise ValueError(f"depth '{depth}': four counts, each at most the teacher's "
                         f"{'-'.join(map(str, TEACHER_DEPTH))}")
    return counts


def parse_stage_widths(widths: str | tuple | None, width: float = 1.0) -> tuple[float, ...]:
    """Inner-channel shares of the 32, 64, 128 and 256-channel stages ("1-1-0.75-0.4");
    empty: `width` for all four."""
    if not widths:
        return (float(width),) * len(TEACHER_DEPTH)
    shares = tuple(float(part) for part in str(widths).split("-")) if isinstance(widths, str) \
        else tuple(float(w) for w in widths)
    if len(shares) != len(TEACHER_DEPTH) or any(not 0 < w <= 1 for w in shares):
        raise ValueError(f"stage widths '{widths}': four shares in (0, 1], one for each of "
                         "the 32, 64, 128 and 256-channel stages")
    return shares


def inner_channels(channels: int, width: float) -> int:
    return max(8, int(round(channels * width / 8.0)) * 8)  # multiples of 8 run fastest


class DlibDerived(nn.Module):
    """Same topology as trainer.teachers.dlib_resnet.DlibResNet, sized by its options.

    Built empty here; `derive_from_teacher` fills it with the teacher's weights.
    Output: N x embedding, not normalised (the teacher's raw descriptor space).
    """

    # the student's output is the teacher's own descriptor, not a centred direction
    # (trainer.distill.student_model)
    raw_teacher_space = True

    def __init__(self, width: float = 1.0, input_size: int = 112, embedding: int = 128,
                 act: str = "relu", depth: str | tuple | None = None,
                 stage_widths: str | tuple | None = None):
        super().__init__()
        from ..teachers.dlib_resnet import ResidualBlock, conv_out

        if act != "relu":
            raise ValueError("the teacher-derived student keeps the teacher's ReLU")
        if embedding != 128:
            raise ValueError("the teacher-derived student keeps the teacher's 128-d output")
        self.depth = parse_depth(depth)
        shares = parse_stage_widths(stage_widths, width)
        self.input_size = input_size
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=0)
        self.stem_pool = nn.MaxPool2d(3, 2)
        size = (conv_out(input_size, self.stem) - 3) // 2 + 1
        if size < 4:
            raise ValueError(f"input size {input_size} is too small for this network")
        shape = (STEM_CHANNELS, size, size)
        blocks = []
        counts = list(self.depth) + [0]
        for stage, (channels, count) in enumerate(zip(STAGE_CHANNELS, counts)):
            kinds = ([] if stage == 0 else [True]) + [False] * count
            for down in kinds:
                # the last stage (a down block alone) has the 256-channel share
                inner = inner_channels(channels, shares[min(stage, len(shares) - 1)])
                conv1 = nn.Conv2d(shape[0], inner, 3, stride=2 if down else 1,
                                  padding=0 if down else 1)
                conv2 = nn.Conv2d(inner, channels, 3, padding=1)
                block = ResidualBlock(conv1, conv2, down, shape)
                shape = block.out_shape
                blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(shape[0], embedding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _teacher_stages(teacher) -> list[list]:
    """The teacher's blocks grouped by stage: [down block or None, residual blocks...]."""
    stages, current = [], [None]
    for block in teacher.blocks:
        down = not isinstance(block.pool, nn.Identity)
        if down:
            stages.append(current)
            current = [block]
        else:
            current.append(block)
    stages.append(current)
    return stages


@torch.no_grad()
def measure_teacher(teacher, inputs: torch.Tensor) -> tuple[dict, dict]:
    """On a batch of the network's inputs: each block's inner-channel importance and
    how much its branch adds to its input (||branch|| / ||input||). Works on the
    teacher and on a student cut from it (the same blocks)."""
    importance, strength = {}, {}
    hooks = []
    for index, block in enumerate(teacher.blocks):
        def hook(module, inputs, _output, index=index):
            x = inputs[0]
            inner = F.relu(module.conv1(x))
            branch = module.conv2(inner)
            reads = module.conv2.weight.flatten(start_dim=2).transpose(0, 1).flatten(1)
            importance[index] = inner.abs().mean(dim=(0, 2, 3)) * reads.norm(dim=1)
            if isinstance(module.pool, nn.Identity):
                strength[index] = float(branch.norm() / (x.norm() + 1e-9))
        hooks.append(block.register_forward_hook(hook))
    teacher(inputs)
    for h in hooks:
        h.remove()
    return importance, strength


@torch.no_grad()
def derive_from_teacher(net: DlibDerived, teacher, chips: np.ndarray) -> dict:
    """Fill `net` with the teacher's weights; `chips` are N x 150 x 150 x 3 uint8
    teacher chips on which channel importance and block strength are measured."""
    # the stem: the teacher reads (p - mean) / 256, the student (p - 127.5) / 128
    scale = STUDENT_STD * teacher.input_scale
    shift = torch.tensor([(STUDENT_MEAN - m) * teacher.input_scale
                          for m in teacher.input_mean], dtype=torch.float32)
    w = teacher.stem.weight
    stem = (w * scale, teacher.stem.bias + (w.sum(dim=(2, 3)) * shift).sum(dim=1))
    return _cut(net, teacher, teacher.normalise(chips), stem)


@torch.no_grad()
def derive_from_student(net: DlibDerived, source: DlibDerived, inputs: torch.Tensor) -> dict:
    """Cut `net` from a trained, larger student of this family (progressive cutting:
    first the input size, trained back, then channels and blocks); `inputs` are that
    student's normalised input faces."""
    return _cut(net, source, inputs, (source.stem.weight, source.stem.bias))


def _cut(net: DlibDerived, source, inputs: torch.Tensor, stem) -> dict:
    importance, strength = measure_teacher(source, inputs)
    index_of = {id(b): i for i, b in enumerate(source.blocks)}
    net.stem.weight.copy_(stem[0])
    net.stem.bias.copy_(stem[1])
    chosen = []
    student_blocks = iter(net.blocks)
    for stage, group in enumerate(_teacher_stages(source)):
        down, residual = group[0], group[1:]
        keep_count = net.depth[stage] if stage < len(net.depth) else 0
        if keep_count > len(residual):
            raise ValueError(f"stage {stage + 1} has {len(residual)} residual blocks to cut "
                             f"from, not {keep_count}")
        # the strongest branches stay, in their original order
        kept = sorted(sorted(residual, key=lambda b: -strength[index_of[id(b)]])[:keep_count],
                      key=lambda b: index_of[id(b)])
        for block in ([down] if down is not None else []) + kept:
            target = next(student_blocks)
            i = index_of[id(block)]
            inner = target.conv1.out_channels
            if inner > block.conv1.out_channels:
                raise ValueError("a cut cannot be wider than what it is cut from")
            keep = torch.sort(torch.argsort(importance[i], descending=True)[:inner]).values
            target.conv1.weight.copy_(block.conv1.weight[keep])
            target.conv1.bias.copy_(block.conv1.bias[keep])
            target.conv2.weight.copy_(block.conv2.weight[:, keep])
            target.conv2.bias.copy_(block.conv2.bias)
            chosen.append(i)
    net.fc.weight.copy_(source.fc.weight)
    return {"source_blocks": chosen, "teacher_blocks": chosen,
            "dropped_blocks": [i for i in range(len(source.blocks)) if i not in chosen]}
