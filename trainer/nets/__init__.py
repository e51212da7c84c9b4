"""The student registry: `build(StudentConfig)` or `--arch NAME` on the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .dlib_derived import DlibDerived, parse_depth, parse_stage_widths
from .layers import ACTIVATIONS
from .mobiface import MobiFace
from .mobilefacenet import MobileFaceNet
from .vargfacenet import VarGFaceNet

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mobilefacenet": MobileFaceNet,
    "mobiface": MobiFace,
    "vargfacenet": VarGFaceNet,
    "dlib-derived": DlibDerived,  # cut from the teacher's own weights
}
INPUT_SIZES = (112, 96, 80, 64)
DERIVED_INPUT_SIZES = (150, 128, 112, 104)  # 150: the teacher itself, uncut


@dataclass(frozen=True)
class StudentConfig:
    arch: str = "mobilefacenet"
    width: float = 1.0
    input_size: int = 112
    # LeakyReLU: 3 points better than ReLU on LFW at equal budget
    # (bench/distill_ablation.py) for ~30% more int8 time on an AVX2 CPU; PReLU is
    # better still but 3-4x slower in int8 (bench/bench_activations.py).
    act: str = "leaky"
    embedding: int = 128
    depth: str = ""  # dlib-derived: residual blocks per stage, e.g. "2-2-1-1"
    stage_widths: str = ""  # dlib-derived: inner-channel share per stage, e.g. "1-1-0.75-0.4"

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture '{self.arch}' "
                             f"(known: {', '.join(ARCHITECTURES)})")
        sizes = DERIVED_INPUT_SIZES if self.arch == "dlib-derived" else INPUT_SIZES
        if self.input_size not in sizes:
            raise ValueError(f"input size must be one of {sizes}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}")
        if (self.depth or self.stage_widths) and self.arch != "dlib-derived":
            raise ValueError("depth and stage widths are options of the dlib-derived "
                             "student only")
        if self.arch == "dlib-derived":
            parse_depth(self.depth)
            parse_stage_widths(self.stage_widths)

    @property
    def template(self) -> str:
        """The alignment template of this input size (faceapp.core.align): the
        teacher's framing for the students cut from it, insightface's for the others."""
        family = "dlib" if self.arch == "dlib-derived" else "arcface"
        return f"{family}{self.input_size}"

    @property
    def slug(self) -> str:
        width = f"{self.width:g}".replace(".", "")
        act = "" if self.act == "relu" else f"-{self.act}"
        if self.stage_widths:
            shares = parse_stage_widths(self.stage_widths)
            width = "-".join(f"{w:g}".replace(".", "") for w in shares)
        depth = f"-d{self.depth.replace('-', '')}" if self.depth else ""
        return f"{self.arch}-w{width}-{self.input_size}{depth}{act}"

    def to_dict(self) -> dict:
        return asdict(self)


def build(config: StudentConfig) -> nn.Module:
    options = ({"depth": config.depth, "stage_widths": config.stage_widths}
               if config.arch == "dlib-derived" else {})
    return ARCHITECTURES[config.arch](width=config.width, input_size=config.input_size,
                                      embedding=config.embedding, act=config.act, **options)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_multiply_adds(module: nn.Module, input_size: int) -> int:
    """Multiply-adds of the convolutions and linear layers for one face."""
    total = 0

    def conv_hook(layer, _inputs, output):
        nonlocal total
        kh, kw = layer.kernel_size
        total += output.numel() // output.shape[0] * (layer.in_channels // layer.groups) * kh * kw

    def linear_hook(layer, _inputs, output):
        nonlocal total
        total += layer.in_features * layer.out_features

    hooks = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            hooks.append(layer.register_forward_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            hooks.append(layer.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros(1, 3, input_size, input_size))
    module.train(was_training)
    for hook in hooks:
        hook.remove()
    return total


def load_across_sizes(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load weights trained at another input size; returns the names of resized ones.

    Every weight but the head's global depthwise kernel is independent of the input
    size, so a student for smaller faces can start from a trained one. That kernel
    (one weight per position of the last feature map) is resampled to the new map
    and scaled by the ratio of the two areas, so each channel's weights keep about
    the same sum and the layer's outputs keep their scale.
    """
    own = model.state_dict()
    if own.keys() != state.keys():
        raise ValueError("the two networks have different layers "
                         "(their architecture, width or PReLU differ)")
    resized, loaded = [], {}
    for name, weight in state.items():
        target = own[name]
        if weight.shape == target.shape:
            loaded[name] = weight
            continue
        spatial_only = (weight.dim() == 4 and weight.shape[:2] == target.shape[:2]
                        and weight.shape[1] == 1)  # depthwise: one input channel per group
        if not spatial_only:
            raise ValueError(f"'{name}' is {tuple(weight.shape)} in the saved network "
                             f"and {tuple(target.shape)} here")
        kernel = torch.nn.functional.interpolate(weight.float(), size=target.shape[2:],
                                                 mode="bilinear", align_corners=True)
        kernel = kernel * (weight[0, 0].numel() / kernel[0, 0].numel())
        loaded[name] = kernel.to(weight.dtype)
        resized.append(name)
    model.load_state_dict(loaded)
    return resized
