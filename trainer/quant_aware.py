"""Quantization-aware fine-tuning: train with the rounding the int8 graph will apply.

A student exported with LeakyReLU lost 0.3-0.6 points on LFW in int8 (10-fold paired
differences, standard error 0.1-0.2). A third of its error was the int8 kernels'
overflow (7-bit weights fix it, `trainer.export.quantize_int8`); the rest is spread
over the ~100 activation tensors onnxruntime re-quantizes to uint8: left in fp32, no
single layer removes more than 8% of it. So the network sees that rounding while it
trains. Two such epochs on generation 5 turned its int8 - fp32 difference on LFW from
-0.40 into +0.10 points.

`ActivationRounding` rounds, in the forward pass, each tensor that
`trainer.export.quantize_int8` quantizes: the output of every convolution (after its
batch norm, which onnxruntime folds into it), of every activation, of every shortcut
addition, and of the head's projection; gradients pass straight through. Ranges are
per tensor and asymmetric (uint8), measured as the export's minmax
calibration measures them: on the same 512 training faces, through the network as it
is (training measures them again every few dozen steps). A ReLU is fused into its
convolution in int8, so only its output is rounded. Weights are not rounded: their
per-channel rounding moves the embedding 50x less than the activations' does.
The blocks covered are MobileFaceNet's and MobiFace's; VarGFaceNet's own shortcuts
and squeeze-excitation products are not rounded.

Batch norm is frozen during this fine-tuning (running statistics, as in the folded
graph), so what trains is exactly what will be quantized.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver

from .nets.layers import ConvBN, EmbeddingHead, InvertedResidual


def _uint8_rounding() -> FakeQuantize:
    return FakeQuantize(observer=MinMaxObserver, quant_min=0, quant_max=255,
                        dtype=torch.quint8, qscheme=torch.per_tensor_affine)


def rounded_modules(net: nn.Module) -> list[nn.Module]:
    """The modules whose outputs the int8 graph stores as uint8, in the order the
    forward pass computes them."""
    chosen = []

    def visit(module: nn.Module) -> None:
        if isinstance(module, ConvBN):
            batch_norm, activation = module[1], module[2] if len(module) > 2 else None
            if not isinstance(activation, nn.ReLU):  # int8 fuses ReLU into the convolution
                chosen.append(batch_norm)
            if activation is not None:
                chosen.append(activation)
            return
        for child in module.children():
            visit(child)
        if isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):
            chosen.append(module)
        elif isinstance(module, InvertedResidual) and module.residual:
            chosen.append(module)  # the shortcut's sum, after the block's layers
        elif isinstance(module, EmbeddingHead):
            chosen.append(module.project)

    visit(net)
    return chosen


class ActivationRounding:
    """Rounds a student's activations from now on, with ranges measured on
    `calibration` (preprocessed faces); `remove()` gives the plain network back."""

    def __init__(self, net: nn.Module, calibration: torch.Tensor):
        self.net, self.calibration = net, calibration
        device = next(net.parameters()).device
        self.roundings = nn.ModuleList()
        self._handles = []
        for module in rounded_modules(net):
            rounding = _uint8_rounding().to(device)
            self.roundings.append(rounding)
            self._handles.append(module.register_forward_hook(
                lambda _module, _inputs, output, rounding=rounding: rounding(output)))
        self.calibrate()

    def calibrate(self) -> None:
        """Measure the ranges again, on the unrounded network as it is now, as the
        export's minmax calibration will (batch norm on its running statistics)."""
        modes = {module: module.training for module in self.net.modules()}
        self.net.eval()
        for rounding in self.roundings:
            rounding.disable_fake_quant()
            rounding.enable_observer()
            rounding.activation_post_process.reset_min_max_vals()
        with torch.no_grad():
            self.net(self.calibration)
        for rounding in self.roundings:
            rounding.disable_observer()
            rounding.enable_fake_quant()
        for module, training in modes.items():
            module.train(training)

    def __len__(self) -> int:
        return len(self.roundings)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def freeze_batch_norm(model: nn.Module) -> None:
    """Running statistics instead of the batch's, as in the graph that is quantized."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.eval()
