"""ONNX export and int8 static quantization of embedders."""

from __future__ import annotations

import collections
import contextlib
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch


def export_onnx(module: torch.nn.Module, path: Path, input_size: tuple[int, int],
                opset: int = 17) -> Path:
    """Export an embedder with a dynamic batch axis: input 'input', output 'embedding'."""
    width, height = input_size
    module = module.eval()
    example = torch.zeros(1, 3, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=["input"],
                          output_names=["embedding"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                          dynamo=False)
    onnx.checker.check_model(str(path))
    return path


def run_onnx(path: Path, batch: np.ndarray, threads: int = 2) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: batch[i:i + 32]})[0]
                           for i in range(0, len(batch), 32)])


class _BatchReader:
    """onnxruntime's calibration reader protocol over an in-memory array."""

    def __init__(self, input_name: str, batch: np.ndarray, batch_size: int = 16):
        self._chunks = iter([{input_name: batch[i:i + batch_size]}
                             for i in range(0, len(batch), batch_size)])

    def get_next(self):
        return next(self._chunks, None)

    def rewind(self):  # pragma: no cover - only some calibrators call it
        pass


def input_convolutions(onnx_path: Path) -> list[str]:
    """Names of the Conv nodes that read the network's input directly."""
    model = onnx.load(str(onnx_path))
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs]


def nodes_after_last_compute(onnx_path: Path) -> list[str]:
    """Names of the nodes after the last Conv/Gemm/MatMul (normalisation, offsets):
    cheap elementwise work whose outputs int8 would round coarsely."""
    model = onnx.load(str(onnx_path))
    nodes = list(model.graph.node)
    last = max(i for i, n in enumerate(nodes) if n.op_type in {"Conv", "Gemm", "MatMul"})
    tail = [n.name for n in nodes[last + 1:]]
    if not all(tail):
        raise ValueError(f"{onnx_path}: unnamed nodes in the output tail")
    return tail


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray | None,
                  method: str = "minmax", keep_fp32: list[str] | None = None,
                  seven_bit_weights: bool = False,
                  ranges: dict[str, tuple[float, float]] | None = None,
                  measured: dict[str, tuple[float, float]] | None = None) -> Path:
    """Static int8 quantization: QDQ, per-channel int8 weights, uint8 activations.

    calibration: N x 3 x H x W float32, already preprocessed as the network expects.
    keep_fp32: node names left unquantized on purpose (see quantized_graph_report).
    seven_bit_weights: weights in [-64, 63]. On x86 CPUs without VNNI (this one),
    onnxruntime's uint8 x int8 kernels add pairs of products in 16 bits, which
    overflow for large weights; for the LeakyReLU student that overflow was a third
    of its int8 error (mean 1 - cos to fp32 0.0102, 0.0080 of it from rounding
    alone; 7-bit weights: 0.0082), at no cost in speed.
    ranges: the activation ranges to quantize with (tensor -> (lowest, highest)),
    instead of measuring them on `calibration` (which may then be None). Given the
    same fp32 file and ranges, the int8 file is the same bytes on every machine; the
    measurement itself is not (trainer/calibration.py says why).
    measured: a dict filled with the ranges the calibration measured (or was given).
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibration is None and ranges is None:
        raise ValueError("quantize_int8 needs calibration faces or their measured ranges")
    with tempfile.TemporaryDirectory() as tmp, \
            _calibration_ranges(methods[method], ranges, measured):
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared)).graph.input[0].name
        if calibration is None:
            calibration = np.zeros((0, 1), np.float32)  # never read: the ranges are given
        quantize_static(
            str(prepared), str(int8_path), _BatchReader(input_name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=seven_bit_weights,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method], nodes_to_exclude=list(keep_fp32 or []),
            extra_options={"CalibTensorRangeSymmetric": False},
        )
    return int8_path


def _one_float(value) -> float:
    array = np.asarray(value, np.float32)
    if array.size != 1:
        raise ValueError(f"a per-tensor range was expected, got shape {array.shape}")
    return float(array.reshape(()))


def measure_ranges(fp32_path: Path, calibration: np.ndarray, method: str = "minmax",
                   keep_fp32: list[str] | None = None,
                   seven_bit_weights: bool = False) -> dict[str, tuple[float, float]]:
    """The activation ranges onnxruntime's calibration measures on these inputs, on
    this machine (tensor -> (lowest, highest))."""
    measured: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        quantize_int8(fp32_path, Path(tmp) / "measure.int8.onnx", calibration, method,
                      keep_fp32, seven_bit_weights, measured=measured)
    # onnxruntime collects the tensors in a set: their order changes from run to run
    return dict(sorted(measured.items()))


class _GivenRanges:
    """Stands in for onnxruntime's calibrator: returns ranges measured before."""

    def __init__(self, method, ranges: dict[str, tuple[float, float]]):
        self.method, self.ranges = method, ranges

    def collect_data(self, reader) -> None:
        pass

    def compute_data(self):
        from onnxruntime.quantization.calibrate import TensorData, TensorsData

        return TensorsData(self.method, {
            name: TensorData(lowest=np.array([low], np.float32),
                             highest=np.array([high], np.float32))
            for name, (low, high) in self.ranges.items()})


@contextlib.contextmanager
def _calibration_ranges(method, ranges, measured):
    """Inside quantize_static: use `ranges` instead of calibrating, and/or copy the
    ranges it quantizes with into `measured` (name -> (lowest, highest) floats).

    onnxruntime's quantize_static takes no ranges (only, in recent releases, a cache
    file of its own format), so its calibrator factory is wrapped for the call."""
    if ranges is None and measured is None:
        yield
        return
    import importlib

    # the module, not the function of the same name the package exports
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    original = ort_quantize.create_calibrator

    def create_calibrator(*args, **kwargs):
        calibrator = _GivenRanges(method, ranges) if ranges is not None \
            else original(*args, **kwargs)
        if measured is not None:
            compute = calibrator.compute_data

            def compute_and_keep():
                data = compute()
                for name, value in data.data.items():
                    low, high = value.range_value
                    measured[name] = (_one_float(low), _one_float(high))
                return data

            calibrator.compute_data = compute_and_keep
        return calibrator

    ort_quantize.create_calibrator = create_calibrator
    try:
        yield
    finally:
        ort_quantize.create_calibrator = original


def quantized_graph_report(int8_path: Path, keep_fp32=()) -> dict:
    """Which compute nodes run in int8 and which are left in fp32.

    A compute node (Conv, Gemm, MatMul, ...) counts as quantized when every float
    input comes from a DequantizeLinear; otherwise it is an fp32 island.
    """
    model = onnx.load(str(int8_path))
    producers = {out: node for node in model.graph.node for out in node.output}
    compute_ops = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
    counts = collections.Counter(node.op_type for node in model.graph.node)
    quantized, islands = [], []
    for node in model.graph.node:
        if node.op_type not in compute_ops:
            continue
        feeds = [name for name in node.input[:2] if name]
        if all(name in producers and producers[name].op_type == "DequantizeLinear"
               for name in feeds):
            quantized.append(node.name)
        else:
            islands.append(node.name or node.op_type)
    return {"op_counts": dict(counts), "quantized_compute_nodes": len(quantized),
            "fp32_by_design": [name for name in islands if name in keep_fp32],
            "fp32_islands": [name for name in islands if name not in keep_fp32]}
