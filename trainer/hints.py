"""FitNets hints (Romero et al. 2015) for the seed architectures: besides matching the
teacher's 128-d output, a student learns to predict the teacher's intermediate feature
maps of the same face, which carry far more signal per image.

The teacher's maps come from the torch network converted from dlib's weights, at the
ends of its 128-channel (8x8) and 256-channel (4x4) stages. The student's crop has
another framing (insightface's template, not dlib's chip), so each map is resampled
into the crop's frame through the face's chip-to-crop similarity, on a coarse grid.
That is done once per training face and cached: the torch teacher costs ~12 ms a face
on one core, which would triple the cost of every step if it ran online.

The student side (`StudentHints`): its last two stage ends (found by their output
size), pooled to the same grid, each through a 1x1 convolution (the regressor, trained
with the student and not exported) onto the teacher's channels, standardised.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceapp.core.align import get_template

from .augment import chip_to_crop

TEACHER_BLOCKS = (9, 12)  # ends of the teacher's 128ch 8x8 and 256ch 4x4 stages
TEACHER_CHANNELS = (128, 256)
GRID = 4  # both maps are compared on a GRID x GRID grid in the student's frame
DENSE = 16  # sampled this finely in the crop, then averaged down to GRID
CHUNK = 64


def teacher_stage_maps(network, chips: np.ndarray) -> list[torch.Tensor]:
    """The teacher's feature maps at TEACHER_BLOCKS for N x 150 x 150 x 3 chips."""
    x = network.normalise(chips)
    maps = []
    with torch.no_grad():
        h = network.stem_pool(F.relu(network.stem(x)))
        for i, block in enumerate(network.blocks):
            h = block(h)
            if i in TEACHER_BLOCKS:
                maps.append(h)
            if i == max(TEACHER_BLOCKS):
                break
    return maps


def to_crop_frame(maps: torch.Tensor, crop_from_chip: np.ndarray, chip_size: int,
                  crop_size: tuple[int, int]) -> torch.Tensor:
    """N x C x h x w maps over the teacher's chip, resampled over the student's crop:
    N x C x GRID x GRID, each cell the mean of the map over that part of the crop.

    crop_from_chip: N x 2 x 3 similarities from chip pixels to crop pixels.
    Pixel centres are at integer coordinates (OpenCV's convention)."""
    w, h = crop_size
    cells = (np.arange(DENSE) + 0.5) / DENSE
    xs, ys = np.meshgrid(cells * w - 0.5, cells * h - 0.5)
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])  # 3 x P, crop pixels
    grids = []
    for matrix in crop_from_chip:
        chip_from_crop = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))
        chip = (chip_from_crop @ points)[:2]
        grids.append(((2 * chip + 1) / chip_size - 1).T.reshape(DENSE, DENSE, 2))
    grid = torch.from_numpy(np.asarray(grids, np.float32))
    dense = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    return F.adaptive_avg_pool2d(dense, GRID)


def hint_targets(targets, template: str) -> np.ndarray:
    """N x sum(TEACHER_CHANNELS) x GRID x GRID float16 teacher maps of each clean
    training face in `template`'s frame, cached beside the distillation targets."""
    path = targets.folder / f"hints-{template}-b{'-'.join(map(str, TEACHER_BLOCKS))}-g{GRID}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    from tqdm import tqdm

    from faceapp.core.embed import Embedder
    from faceapp.core.models import ModelPack

    from .cache import TEACHER_PACK, train_crops
    from .teachers.dlib_resnet import load_dlib_resnet

    network = load_dlib_resnet()
    chip_template = Embedder(ModelPack.load(TEACHER_PACK), "int8", flip=False).template
    chips = train_crops(targets, chip_template.name)
    crop = get_template(template)
    n = len(targets)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                    shape=(n, sum(TEACHER_CHANNELS), GRID, GRID))
    for start in tqdm(range(0, n, CHUNK), desc=f"teacher hints for {template}",
                      file=sys.stderr, mininterval=10.0):
        rows = range(start, min(n, start + CHUNK))
        maps = teacher_stage_maps(network, np.asarray(chips[start:start + CHUNK]))
        matrices = np.stack([chip_to_crop(targets.landmarks[i], chip_template, crop)
                             for i in rows])
        resampled = [to_crop_frame(m, matrices, chip_template.size[0], crop.size)
                     for m in maps]
        out[start:start + len(rows)] = torch.cat(resampled, dim=1).numpy()
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def channel_statistics(maps: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over all faces and cells."""
    total = np.zeros(maps.shape[1])
    squares = np.zeros(maps.shape[1])
    for start in range(0, len(maps), chunk):
        block = np.asarray(maps[start:start + chunk], np.float64)
        total += block.sum(axis=(0, 2, 3))
        squares += (block ** 2).sum(axis=(0, 2, 3))
    count = len(maps) * maps.shape[2] * maps.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def stage_ends(features: nn.Sequential, input_size: int,
               count: int = 2) -> list[tuple[int, int]]:
    """(index, channels) of the last layer at each of the last `count` output sizes."""
    was_training = features.training
    features.eval()
    shapes = []
    with torch.no_grad():
        h = torch.zeros(1, 3, input_size, input_size)
        for layer in features:
            h = layer(h)
            shapes.append((h.shape[-1], h.shape[1]))
    features.train(was_training)
    ends = [(i, shapes[i][1]) for i in range(len(shapes))
            if i + 1 == len(shapes) or shapes[i + 1][0] != shapes[i][0]]
    if len(ends) < count:
        raise ValueError(f"the student has {len(ends)} stages, hints need {count}")
    return ends[-count:]


class StudentHints(nn.Module):
    """Regressors from the student's last two stage ends onto the teacher's maps."""

    def __init__(self, net: nn.Module, input_size: int):
        super().__init__()
        features = getattr(net, "features", None)
        if not isinstance(features, nn.Sequential):
            raise ValueError("hints are for the seed architectures (a `features` stack); "
                             "a student cut from the teacher starts from its weights")
        ends = stage_ends(features, input_size, len(TEACHER_CHANNELS))
        self.regressors = nn.ModuleList(
            nn.Conv2d(c, t, 1) for (_, c), t in zip(ends, TEACHER_CHANNELS))
        self._maps: dict[int, torch.Tensor] = {}
        for slot, (i, _) in enumerate(ends):
            features[i].register_forward_hook(self._keep(slot))

    def _keep(self, slot: int):
        def hook(_layer, _inputs, output):
            self._maps[slot] = output
        return hook

    def loss(self, target: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
        """Mean squared error against standardised teacher maps (B x C x GRID x GRID)
        for the rows where `use` is set (the unflipped views)."""
        if not bool(use.any()):
            return torch.zeros((), device=target.device)
        parts = torch.split(target[use], list(TEACHER_CHANNELS), dim=1)
        errors = []
        for slot, (regressor, wanted) in enumerate(zip(self.regressors, parts)):
            pooled = F.adaptive_avg_pool2d(self._maps[slot][use], GRID)
            errors.append(((regressor(pooled) - wanted) ** 2).mean())
        return torch.stack(errors).mean()

