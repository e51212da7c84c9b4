"""How the activation function moves a student's speed after int8 quantization.

    python bench/bench_activations.py [--arch mobilefacenet] [--width 1.0] [--input-size 80]

For each activation (ReLU, LeakyReLU, PReLU as torch exports it, PReLU written as
relu(x) - a*relu(-x)) the same network is exported, quantized exactly as the trainer
does (QDQ, per-channel, calibrated on 128 real aligned training faces) and timed on 1
thread at batch 1. The weights are untrained, so these are speed figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.distill import to_input  # noqa: E402
from trainer.export import export_onnx, quantize_int8, quantized_graph_report  # noqa: E402
from trainer.nets import ACTIVATIONS, StudentConfig, build  # noqa: E402
from trainer.students import calibration_crops  # noqa: E402


def median_ms(path: Path, batch: np.ndarray, runs: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    one = batch[:1]
    for _ in range(10):
        session.run(None, {name: one})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {name: one})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="mobilefacenet")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--input-size", type=int, default=80)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)

    calibration = None
    print(f"{args.arch} width {args.width:g}, {args.input_size}x{args.input_size}: "
          "ms per face, batch 1, 1 thread (median)")
    print(f"{'activation':12} {'fp32':>7} {'int8':>7}  int8 graph")
    with tempfile.TemporaryDirectory() as tmp:
        for act in ACTIVATIONS:
            config = StudentConfig(args.arch, args.width, args.input_size, act)
            if calibration is None:
                calibration = to_input(calibration_crops(config.template, 128)).numpy()
            fp32 = export_onnx(build(config).eval(), Path(tmp) / f"{act}.onnx",
                               (args.input_size, args.input_size))
            int8 = quantize_int8(fp32, Path(tmp) / f"{act}.int8.onnx", calibration)
            report = quantized_graph_report(int8)
            ops = report["op_counts"]
            note = (f"{report['quantized_compute_nodes']} int8 convs, "
                    f"{ops.get('PRelu', 0)} PRelu, {ops.get('DequantizeLinear', 0)} dequantize")
            print(f"{act:12} {median_ms(fp32, calibration, args.runs):7.2f} "
                  f"{median_ms(int8, calibration, args.runs):7.2f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
