"""MTCNN (Zhang et al. 2016) P-, R- and O-Net in torch, and their conversion to ONNX.

The weights are facenet-pytorch 2.6.0's state dicts (MIT), read straight out of the
pinned wheel by trainer.upstream. Module and parameter names below follow those
state dicts so that `load_state_dict(strict=True)` checks the layout for us.

About transposition: the original Caffe models were trained on images transposed
(MATLAB is column-major), and davidsandberg/facenet's TF port still transposes every
image before the nets. facenet-pytorch folded that transpose into the weights when it
converted them: the conv kernels were stored with their two spatial axes swapped, and
R-/O-Net flatten their last feature map in (W, H, C) order before the dense layers.
So these nets take ordinary, *untransposed* NCHW RGB images, and their outputs are in
image order: regression (dx1, dy1, dx2, dy2) and landmarks (x1..x5, y1..y5). We keep
the (W, H, C) flatten inside the graph and record `"input_transposed": false` in the
manifest. This was checked on real photos: on 25 sample portraits O-Net scored the
untransposed 48x48 face crop 0.99 on average and the transposed crop 0.46, and the
untransposed landmarks put the image-left eye left and the eyes above the mouth in
all 25 (tests/test_detect.py checks the landmark geometry; LFW detection rate with
`bench/bench_detector.py --lfw`).

Speed: PReLU and the two-way softmax are exported in equivalent forms that
onnxruntime runs much faster (see PReLU and _softmax2); `_check_export` compares the
ONNX outputs with facenet-pytorch's plain maths (nn.PReLU, softmax).

The runtime (faceapp/core/detect.py) never imports this module or torch: it reads
everything it needs (normalisation, thresholds, NMS settings, input sizes, pyramid
factor) from the manifest written here.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceapp.core.models import ModelPack
from trainer.packs import keep_measured_figures, register_file, repo_packs_dir, write_manifest
from trainer.upstream import MTCNN_MEMBERS, MTCNN_WHEEL, read_member

PACK_NAME = "mtcnn-v1"
OPSET = 17


class _FlattenWHC(nn.Module):
    """(N, C, H, W) -> (N, W*H*C), the order the converted dense weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PReLU(nn.PReLU):
    """nn.PReLU (same parameters, same values) in a form onnxruntime runs fast.

    onnxruntime's PRelu kernel broadcasts the per-channel slope element by element and
    took a third of each net's time; Max(x, a*x), which equals PReLU when every
    slope a <= 1, or else x + (a-1)*min(x, 0), run an order of magnitude faster.
    """

    reference = False   # True: plain nn.PReLU maths (used to check the export)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if PReLU.reference:
            return nn.functional.prelu(x, self.weight)
        a = self.weight.reshape((1, -1) + (1,) * (x.dim() - 2))
        if getattr(self, "slopes_at_most_one", False):
            return torch.maximum(x, x * a)
        return x + (a - 1.0) * torch.clamp(x, max=0.0)

    def settle(self) -> None:
        """Pick the cheaper form once the weights are loaded."""
        self.slopes_at_most_one = bool(self.weight.detach().max() <= 1.0)


def _softmax2(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """softmax over the two channels of a 1x1 conv, as sigmoid of their difference.

    onnxruntime's Softmax over axis 1 of a 4-D map transposes the map twice; folding
    the difference into one 1x1 conv and a Sigmoid gives the same probabilities.
    """
    if PReLU.reference:
        return torch.softmax(conv(x), dim=1)
    w = conv.weight[1:] - conv.weight[:1]
    b = conv.bias[1:] - conv.bias[:1]
    d = nn.functional.conv2d(x, w, b)
    return torch.cat([torch.sigmoid(-d), torch.sigmoid(d)], dim=1)


class PNet(nn.Module):
    """Fully convolutional 12x12 proposal net: (N,3,H,W) -> reg (N,4,h,w), prob (N,2,h,w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)   # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)   # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), _softmax2(self.conv4_1, x)


class RNet(nn.Module):
    """24x24 refinement net: (N,3,24,24) -> reg (N,4), prob (N,2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = PReLU(64)
        self.flatten = _FlattenWHC()
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(self.flatten(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """48x48 output net: (N,3,48,48) -> reg (N,4), landmarks (N,10), prob (N,2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = PReLU(128)
        self.flatten = _FlattenWHC()
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)    # face / not-face logits
        self.dense6_2 = nn.Linear(256, 4)    # box regression
        self.dense6_3 = nn.Linear(256, 10)   # landmarks: x1..x5, y1..y5 (box-relative)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(self.flatten(x)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


_NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}
_OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}
# Fixed input side of each net; P-Net's is its receptive field (it runs on any size).
_INPUT_SIDE = {"pnet": 12, "rnet": 24, "onet": 48}


def load_mtcnn_nets() -> dict[str, nn.Module]:
    """The three nets with facenet-pytorch 2.6.0's weights, in eval mode."""
    nets: dict[str, nn.Module] = {}
    for key, cls in _NETS.items():
        raw = read_member(MTCNN_WHEEL, MTCNN_MEMBERS[key])
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        net = cls()
        net.load_state_dict(state, strict=True)
        for module in net.modules():
            if isinstance(module, PReLU):
                module.settle()
        nets[key] = net.eval()
    return nets


def _export(net: nn.Module, key: str, path: Path) -> None:
    side = _INPUT_SIDE[key]
    outputs = _OUTPUTS[key]
    if key == "pnet":
        example = torch.zeros(1, 3, 64, 48)
        dynamic = {"input": {0: "batch", 2: "height", 3: "width"}}
        for name in outputs:
            dynamic[name] = {0: "batch", 2: "map_height", 3: "map_width"}
    else:
        example = torch.zeros(1, 3, side, side)
        dynamic = {"input": {0: "batch"}}
        for name in outputs:
            dynamic[name] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated but needs no onnxscript and is exact here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(path), input_names=["input"],
                          output_names=outputs, dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def _check_export(net: nn.Module, key: str, path: Path) -> float:
    """Largest |onnx - torch| over a few random inputs; raises if the graphs disagree."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    side = _INPUT_SIDE[key]
    shapes = ([(1, 3, 12, 12), (2, 3, 37, 50), (1, 3, 131, 97)] if key == "pnet"
              else [(1, 3, side, side), (7, 3, side, side)])
    worst = 0.0
    for shape in shapes:
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        # compare with facenet-pytorch's own maths (nn.PReLU, softmax), not the
        # rewritten forms that were exported
        PReLU.reference = True
        try:
            with torch.no_grad():
                expected = [t.numpy() for t in net(torch.from_numpy(x))]
        finally:
            PReLU.reference = False
        got = session.run(None, {"input": x})
        for name, e, g in zip(_OUTPUTS[key], expected, got):
            if e.shape != g.shape:
                raise RuntimeError(f"{key}.{name}: onnx shape {g.shape} != torch {e.shape}")
            worst = max(worst, float(np.max(np.abs(e - g))))
    if worst > 1e-4:
        raise RuntimeError(f"{key}: onnx and torch outputs differ by {worst:.2e}")
    return worst


def convert_detector(out_dir: Path | None = None) -> ModelPack:
    """Export the MTCNN cascade to ONNX and write the mtcnn-v1 pack; returns the pack."""
    out_dir = Path(out_dir) if out_dir is not None else repo_packs_dir() / PACK_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    nets = load_mtcnn_nets()
    manifest: dict = {
        "name": PACK_NAME,
        "version": "1.0",
        "task": "detector",
        "description": "MTCNN face detector (P-Net, R-Net, O-Net cascade) with 5 landmarks",
    }
    diffs = {}
    for key, net in nets.items():
        filename = f"{key}.onnx"
        tmp = out_dir / (filename + ".tmp")
        _export(net, key, tmp)
        diffs[key] = _check_export(net, key, tmp)
        tmp.replace(out_dir / filename)
        register_file(manifest, out_dir, key, filename)
    manifest["detector"] = {
        "kind": "mtcnn",
        "color": "RGB",
        "layout": "NCHW",
        # facenet-pytorch folded the Caffe-era transpose into the weights (see above).
        "input_transposed": False,
        "mean": 127.5,
        "scale": 0.0078125,
        "input_sizes": dict(_INPUT_SIDE),
        "pnet_stride": 2,
        "pnet_cell": 12,
        "thresholds": [0.6, 0.7, 0.7],
        "nms": [
            {"stage": "pnet_scale", "iou": 0.5, "mode": "union"},
            {"stage": "pnet_all", "iou": 0.7, "mode": "union"},
            {"stage": "rnet", "iou": 0.7, "mode": "union"},
            {"stage": "onet", "iou": 0.7, "mode": "min"},
        ],
        "pyramid_factor": 0.709,
        "outputs": {key: list(names) for key, names in _OUTPUTS.items()},
        "landmarks": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
    }
    manifest["licence"] = "MIT"
    manifest["provenance"] = {
        "source": {
            "requirement": MTCNN_WHEEL.requirement,
            "filename": MTCNN_WHEEL.filename,
            "sha256": MTCNN_WHEEL.sha256,
            "members": dict(MTCNN_MEMBERS),
            "licence": MTCNN_WHEEL.licence,
        },
        "homepage": MTCNN_WHEEL.homepage,
        "paper": "Zhang, Zhang, Li, Qiao: Joint Face Detection and Alignment using "
                 "Multi-task Cascaded Convolutional Networks, IEEE SPL 2016",
        "converted_by": "python -m trainer convert-detector",
        "opset": OPSET,
        "max_abs_diff_vs_torch": {k: float(f"{v:.3g}") for k, v in diffs.items()},
    }
    for stale in out_dir.glob("*.tmp"):
        stale.unlink()
    # the same files keep the differences measured on them (their last digits depend on
    # the CPU that measured them, not on the files)
    keep_measured_figures(out_dir, manifest)
    return write_manifest(out_dir, manifest)


def main() -> None:
    pack = convert_detector()
    print(f"wrote {pack.path}")


if __name__ == "__main__":
    main()
