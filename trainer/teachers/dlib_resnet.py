"""dlib's ResNet face-embedding network (dlib_face_recognition_resnet_model_v1.dat) in PyTorch.

The network is our teacher: the one strong, freely licensed (CC0) face embedder we can
obtain offline. dlib itself is a heavy C++ build, so we read its serialization with
plain Python and rebuild the network as an ordinary torch module that exports to ONNX.

The .dat file stores the network outermost layer first: the loss layer, then one
version number per layer (tag/skip layers write *only* that), then the input layer,
then the layer records from input to output. Tag/skip layers leave no record, so the
wiring (which layer adds to which) comes from the network's C++ type, reproduced in
``_TOPOLOGY`` below; the bytes are checked against it layer by layer.

Only valid for 150 x 150 chips: the zero-padding dlib's add_prev does in the
down-sampling blocks depends on the spatial sizes, which we fix at construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP_SIZE = 150
EMBEDDING_DIM = 128
INPUT_SCALE = 1.0 / 256.0  # dlib divides (pixel - mean) by 256, not by a std


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization of this network."""


# --------------------------------------------------------------------------------------
# dlib serialization primitives (dlib/serialize.h, dlib/float_details.h, dnn/tensor.h)
# --------------------------------------------------------------------------------------

_FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class DlibReader:
    """Sequential reader of dlib's portable binary encoding."""

    def __init__(self, data: bytes, offset: int = 0):
        self.data = memoryview(data)
        self.pos = offset

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (+{n})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        # One control byte: bit 7 = sign, low nibble = byte count (1..8); then the
        # magnitude little-endian. Sign-magnitude, so zero is "01 00".
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        # Written as an int64 mantissa then an int16 exponent: value = m * 2**e; three
        # reserved exponents stand for +inf, -inf and NaN.
        mantissa = self.int()
        exponent = self.int()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        byte = self._take(1)[0]
        if byte not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{byte:02x} at {self.pos - 1}")
        return byte == ord("1")

    def string(self) -> str:
        return bytes(self._take(self.int())).decode("ascii")

    def tensor(self) -> np.ndarray:
        # dlib writes tensor data as raw little-endian float32 (not its float encoding).
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at {self.pos}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        # A view into a layer's params: shape only.
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} at {self.pos}, expected 1")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def at_end(self) -> bool:
        return self.pos == len(self.data)


@dataclass
class LayerRecord:
    """One computational layer as stored: its kind ('con', 'affine', ...) and values."""

    kind: str
    name: str
    values: dict = field(default_factory=dict)


def _read_layer(r: DlibReader) -> LayerRecord:
    name = r.string()
    v: dict = {}
    if name == "con_4":
        v["params"] = r.tensor()
        v["num_filters"] = r.int()
        v["nr"], v["nc"] = r.int(), r.int()
        v["stride_y"], v["stride_x"] = r.int(), r.int()
        v["pad_y"], v["pad_x"] = r.int(), r.int()
        v["filters_shape"] = r.alias_tensor()
        v["biases_shape"] = r.alias_tensor()
        v["multipliers"] = [r.float() for _ in range(4)]
        kind = "con"
    elif name == "affine_":
        v["params"] = r.tensor()
        v["gamma_shape"] = r.alias_tensor()
        v["beta_shape"] = r.alias_tensor()
        v["mode"] = r.int()
        kind = "affine"
    elif name in ("relu_", "add_prev_"):
        kind = name.rstrip("_")
    elif name in ("max_pool_2", "avg_pool_2"):
        v["nr"], v["nc"] = r.int(), r.int()
        v["stride_y"], v["stride_x"] = r.int(), r.int()
        v["pad_y"], v["pad_x"] = r.int(), r.int()
        kind = name[:8]
    elif name == "fc_2":
        v["num_outputs"], v["num_inputs"] = r.int(), r.int()
        v["params"] = r.tensor()
        v["weights_shape"] = r.alias_tensor()
        v["biases_shape"] = r.alias_tensor()
        v["bias_mode"] = r.int()
        v["multipliers"] = [r.float() for _ in range(4)]
        kind = "fc"
    else:
        raise DlibFormatError(f"unknown layer {name!r} at byte {r.pos}")
    return LayerRecord(kind, name, v)


def _read_layer_state(r: DlibReader) -> None:
    # add_layer's bookkeeping after each layer: 3 bools and 3 (empty) work tensors.
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()


@dataclass
class ParsedNetwork:
    loss_name: str
    loss_values: tuple[float, float]      # margin, distance threshold
    versions: list[int]                   # outermost layer first, tags/skips included
    input_mean: tuple[float, float, float]  # RGB
    input_size: tuple[int, int]           # rows, cols
    layers: list[LayerRecord]             # input to output
    sample_expansion_factor: int


# --------------------------------------------------------------------------------------
# Topology (dlib/examples/dnn_face_recognition_ex.cpp, anet_type)
# --------------------------------------------------------------------------------------
# ("stem",) | ("res", N) | ("down", N) | ("head",), from input to output.
_TOPOLOGY: list[tuple] = (
    [("stem",)]
    + [("res", 32)] * 3
    + [("down", 64)] + [("res", 64)] * 3
    + [("down", 128)] + [("res", 128)] * 2
    + [("down", 256)] + [("res", 256)] * 2
    + [("down", 256)]
    + [("head",)]
)

# For each stage: its layers from input to output, as (kind, dlib add_layer version);
# tag/skip layers have kind None (they write a version but no record).
_STAGE_LAYERS = {
    "stem": [("con", 2), ("affine", 2), ("relu", 2), ("max_pool", 2)],
    "res": [(None, 1), ("con", 2), ("affine", 2), ("relu", 2), ("con", 2), ("affine", 2),
            ("add_prev", 2), ("relu", 2)],
    # tag1, block, tag2, skip1, avg_pool, add_prev2, relu
    "down": [(None, 1), ("con", 2), ("affine", 2), ("relu", 2), ("con", 2), ("affine", 2),
             (None, 1), (None, 1), ("avg_pool", 2), ("add_prev", 2), ("relu", 2)],
    "head": [("avg_pool", 2), ("fc", 2)],
}


def _expected_layers() -> list[tuple]:
    return [layer for stage in _TOPOLOGY for layer in _STAGE_LAYERS[stage[0]]]


def parse_dlib_network(data: bytes) -> ParsedNetwork:
    """Parse the whole .dat file, checking it against the expected network type."""
    r = DlibReader(data)
    if r.int() != 1:
        raise DlibFormatError("unexpected add_loss_layer version")
    loss_name = r.string()
    if loss_name != "loss_metric_2":
        raise DlibFormatError(f"loss layer {loss_name!r}, expected 'loss_metric_2'")
    loss_values = (r.float(), r.float())

    expected = _expected_layers()
    # Versions are written outermost first; the innermost add_layer (the stem conv,
    # which owns the input layer) writes version 3 instead of 2.
    versions = [r.int() for _ in range(len(expected))]
    want = [ver for _, ver in reversed(expected)]
    want[-1] = 3
    if versions != want:
        raise DlibFormatError("layer versions do not match the expected network type")

    if r.string() != "input_rgb_image_sized":
        raise DlibFormatError("unexpected input layer")
    input_mean = (r.float(), r.float(), r.float())
    input_size = (r.int(), r.int())

    layers: list[LayerRecord] = []
    sample_expansion_factor = 0
    for index, (kind, _) in enumerate(k for k in expected if k[0] is not None):
        record = _read_layer(r)
        if record.kind != kind:
            raise DlibFormatError(f"layer {index} is {record.name!r}, expected {kind}")
        _read_layer_state(r)
        if index == 0:
            sample_expansion_factor = r.int()
        layers.append(record)
    if not r.at_end():
        raise DlibFormatError(f"{len(data) - r.pos} trailing bytes")
    return ParsedNetwork(loss_name, loss_values, versions, input_mean, input_size,
                         layers, sample_expansion_factor)


# --------------------------------------------------------------------------------------
# The torch module
# --------------------------------------------------------------------------------------

def _folded_conv(con: LayerRecord, affine: LayerRecord, in_channels: int) -> nn.Conv2d:
    """Conv2d equal to dlib's con_ (with bias) followed by a per-channel affine_.

    affine(conv(x)) = gamma * (W x + b) + beta, so W' = gamma W and b' = gamma b + beta;
    folding (in float64) leaves a plain Conv2d that exports and quantizes cleanly.
    """
    c = con.values
    out_ch, kh, kw = c["num_filters"], c["nr"], c["nc"]
    if c["filters_shape"] != (out_ch, in_channels, kh, kw):
        raise DlibFormatError(f"conv filters {c['filters_shape']}, expected "
                              f"{(out_ch, in_channels, kh, kw)}")
    params = c["params"].reshape(-1).astype(np.float64)
    n_w = out_ch * in_channels * kh * kw
    if params.size != n_w + out_ch:
        raise DlibFormatError("conv params size does not match filters + biases")
    weight = params[:n_w].reshape(out_ch, in_channels, kh, kw)
    bias = params[n_w:]

    a = affine.values
    if a["mode"] != 0:  # 0 = CONV_MODE: one gamma/beta per channel
        raise DlibFormatError(f"affine mode {a['mode']}, expected per-channel (0)")
    ab = a["params"].reshape(-1).astype(np.float64)
    if ab.size != 2 * out_ch:
        raise DlibFormatError("affine params size does not match the conv's channels")
    gamma, beta = ab[:out_ch], ab[out_ch:]

    conv = nn.Conv2d(in_channels, out_ch, (kh, kw), stride=(c["stride_y"], c["stride_x"]),
                     padding=(c["pad_y"], c["pad_x"]), bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight * gamma[:, None, None, None]).float())
        conv.bias.copy_(torch.from_numpy(bias * gamma + beta).float())
    return conv


def conv_out(size: int, conv: nn.Conv2d) -> int:
    return (size + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1


def _check_pool(rec: LayerRecord, window: int, stride: int) -> None:
    v = rec.values
    if (v["nr"], v["nc"], v["stride_y"], v["stride_x"], v["pad_y"], v["pad_x"]) != (
            window, window, stride, stride, 0, 0):
        raise DlibFormatError(f"unexpected {rec.kind} settings {v}")


class _ZeroPadEnd(torch.autograd.Function):
    """Zero-pad an N x C x H x W tensor at the end of C, H and W by fixed amounts.

    Same as F.pad, but the TorchScript ONNX exporter (dynamo=False, as
    trainer/export.py uses) turns F.pad into a Pad fed by a Shape/Slice/Concat subgraph
    it cannot constant-fold; `symbolic` makes it emit one Pad with constant pads.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, extra: tuple[int, int, int]) -> torch.Tensor:
        ctx.sizes = x.shape[1:]
        dc, dh, dw = extra
        return F.pad(x, (0, dw, 0, dh, 0, dc))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        c, h, w = ctx.sizes
        return grad[:, :c, :h, :w], None

    @staticmethod
    def symbolic(g, x, extra):
        dc, dh, dw = extra
        pads = torch.tensor([0, 0, 0, 0, 0, dc, dh, dw], dtype=torch.int64)  # begins, ends
        return g.op("Pad", x, g.op("Constant", value_t=pads), mode_s="constant")


class ResidualBlock(nn.Module):
    """relu(main(x) (+) skip(x)), where (+) is dlib's add_prev.

    dlib's add_prev adds tensors of different shapes: the result has the larger size of
    the two in every dimension and missing elements count as zero (padded at the end
    of the channels and at the bottom/right). In the down blocks the stride-2, pad-0
    conv and the 2x2 average pool disagree on size (e.g. 256x3x3 vs 128x4x4), so the
    padding matters. The pad amounts follow from the input shape given here, so they are
    computed once here and exported as constant Pad ops.
    """

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, down: bool,
                 in_shape: tuple[int, int, int]):
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.pool = nn.AvgPool2d(2, 2) if down else nn.Identity()
        c, h, w = in_shape
        mh = conv_out(conv_out(h, conv1), conv2)
        mw = conv_out(conv_out(w, conv1), conv2)
        main = (conv2.out_channels, mh, mw)
        skip = (c, (h - 2) // 2 + 1, (w - 2) // 2 + 1) if down else (c, h, w)
        self.out_shape = tuple(max(a, b) for a, b in zip(main, skip))
        self.main_pad = self._pad_for(main, self.out_shape)
        self.skip_pad = self._pad_for(skip, self.out_shape)

    @staticmethod
    def _pad_for(shape, target) -> tuple[int, int, int]:
        return tuple(t - s for s, t in zip(shape, target))  # extra C, H, W at the end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.conv2(F.relu(self.conv1(x)))
        skip = self.pool(x)
        if any(self.main_pad):
            main = _ZeroPadEnd.apply(main, self.main_pad)
        if any(self.skip_pad):
            skip = _ZeroPadEnd.apply(skip, self.skip_pad)
        return F.relu(main + skip)


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet (29 convs + fc) with conv/affine pairs folded.

    Input: N x 3 x 150 x 150 float32 RGB, already normalised as
    (pixel - input_mean) * input_scale. Output: N x 128, not L2-normalised (dlib
    compares raw descriptors by Euclidean distance, threshold 0.6).
    """

    def __init__(self, parsed: ParsedNetwork):
        super().__init__()
        if parsed.input_size != (CHIP_SIZE, CHIP_SIZE):
            raise DlibFormatError(f"input size {parsed.input_size}, expected 150x150")
        self.input_mean: tuple[float, float, float] = tuple(parsed.input_mean)
        self.input_scale: float = INPUT_SCALE
        self.input_size = parsed.input_size
        self.distance_threshold: float = parsed.loss_values[1]

        layers = iter(parsed.layers)

        def take(kind: str) -> LayerRecord:
            rec = next(layers)
            assert rec.kind == kind, (rec.kind, kind)  # guaranteed by the parser
            return rec

        # stem: conv 7x7/2 pad 0 -> affine -> relu -> maxpool 3x3/2
        self.stem = _folded_conv(take("con"), take("affine"), 3)
        take("relu")
        _check_pool(take("max_pool"), 3, 2)
        self.stem_pool = nn.MaxPool2d(3, 2)
        size = (conv_out(CHIP_SIZE, self.stem) - 3) // 2 + 1
        shape = (self.stem.out_channels, size, size)

        blocks = []
        for stage in _TOPOLOGY[1:-1]:
            kind, _ = stage
            conv1 = _folded_conv(take("con"), take("affine"), shape[0])
            take("relu")
            conv2 = _folded_conv(take("con"), take("affine"), conv1.out_channels)
            if kind == "down":
                _check_pool(take("avg_pool"), 2, 2)
            take("add_prev")
            take("relu")
            block = ResidualBlock(conv1, conv2, kind == "down", shape)
            shape = block.out_shape
            blocks.append(block)
        self.blocks = nn.Sequential(*blocks)

        # head: average over all positions (dlib avg_pool with nr = nc = 0) -> fc, no bias
        pool = take("avg_pool").values
        if (pool["nr"], pool["nc"]) != (0, 0):
            raise DlibFormatError("head pool is not avg_pool_everything")
        fc = take("fc").values
        if fc["bias_mode"] != 1 or fc["num_inputs"] != shape[0]:
            raise DlibFormatError(f"unexpected fc layer {fc['num_inputs']} bias_mode "
                                  f"{fc['bias_mode']}")
        # stored as (inputs, outputs); nn.Linear wants (outputs, inputs)
        w = fc["params"].reshape(fc["num_inputs"], fc["num_outputs"]).T
        self.fc = nn.Linear(fc["num_inputs"], fc["num_outputs"], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Other sizes would still run (and can even broadcast) but give wrong results:
        # the add_prev padding is fixed for 150 x 150.
        if not torch.jit.is_tracing() and tuple(x.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"DlibResNet needs N x 3 x 150 x 150 input, got {tuple(x.shape)}")
        x = self.stem_pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

    def normalise(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8/float RGB chips (N x 150 x 150 x 3 or 150 x 150 x 3) -> input tensor."""
        arr = np.asarray(rgb, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        arr = (arr - np.asarray(self.input_mean, np.float32)) * np.float32(self.input_scale)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """Build the teacher from dlib's .dat file (default: the pinned upstream copy)."""
    if path is None:
        from trainer.upstream import dlib_resnet_file

        path = dlib_resnet_file()
    parsed = parse_dlib_network(Path(path).read_bytes())
    return DlibResNet(parsed).eval()
