"""What each cut of the teacher costs before any training: LFW accuracy against MACs
and int8 speed, for input size, inner width (one share, or one per stage) and depth
(trainer/nets/dlib_derived.py).

    python bench/bench_derived_cuts.py [--runs 100] [--configs 112:1.0: 112:0.5:2-2-1-1 ...]
    python bench/bench_derived_cuts.py --configs 150:0.5: 150:1.0::0.5-1-1-1 150:1.0::1-1-1-0.5

Each configuration is cut from the dlib ResNet (importance measured on 512 training
faces), exported, quantized to int8 as a student pack would be, and timed beside the
teacher's shipped int8 file in the same run (median ms per face, batch 1 on 1 thread).
LFW accuracy is the cut's fp32 torch network on the 6,000 pairs, no flip (LFW is
research data, non-commercial use).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CONFIGS = ["150:1.0:", "128:1.0:", "112:1.0:", "96:1.0:", "112:0.75:",
                   "112:0.5:", "112:1.0:2-2-1-1", "112:0.75:2-2-1-1", "96:0.5:2-2-1-1",
                   # each stage alone at half its inner channels, then a 3 MB budget
                   # spent on the early stages
                   "150:0.5:", "150:1.0::0.5-1-1-1", "150:1.0::1-0.5-1-1", "150:1.0::1-1-0.5-1",
                   "150:1.0::1-1-1-0.5", "150:1.0::1-1-0.75-0.4", "150:1.0::1-1-1-0.35"]


def median_ms(path: Path, batch: np.ndarray, runs: int, threads: int = 1) -> float:
    import onnxruntime as ort

    from faceapp.core.models import DISABLED_OPTIMIZERS

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=DISABLED_OPTIMIZERS)  # as the app runs
    name = session.get_inputs()[0].name
    for _ in range(5):
        session.run(None, {name: batch})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: batch})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / len(batch)


def main(argv=None) -> int:
    import torch

    from faceapp.core.models import ModelPack
    from trainer.cache import distill_targets
    from trainer.distill import (calibration_rows, lfw_accuracy, student_model, aligned_faces,
                                 to_input)
    from trainer.export import export_onnx, input_convolutions, nodes_after_last_compute, \
        quantize_int8
    from trainer.nets import StudentConfig, count_multiply_adds, count_parameters
    from trainer.nets.dlib_derived import derive_from_teacher
    from trainer.teachers.dlib_resnet import load_dlib_resnet

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--speed-only", action="store_true", help="skip LFW")
    parser.add_argument("--configs", nargs="*", default=DEFAULT_CONFIGS,
                        help="SIZE:WIDTH:DEPTH[:STAGE_WIDTHS] (depth empty: the teacher's "
                             "3-3-2-2; stage widths, e.g. 1-1-0.75-0.4, replace the width)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    teacher = load_dlib_resnet()
    targets = distill_targets()
    rows = calibration_rows(len(targets))
    chips = aligned_faces(targets, rows)
    teacher_pack = ModelPack.load("dlib-resnet-v1")
    teacher_batch = teacher.normalise(chips[:1]).numpy()
    # the shipped teacher reads (p - mean) / 256 on 150 px chips
    teacher_ms = median_ms(teacher_pack.file("int8"), teacher_batch, args.runs)
    teacher_ms8 = median_ms(teacher_pack.file("int8"), teacher.normalise(chips[:8]).numpy(),
                            max(10, args.runs // 4), threads=2)
    print(f"teacher int8: {teacher_ms:.2f} ms/face (batch 1, 1 thread), "
          f"{teacher_ms8:.2f} (batch 8, 2 threads)")
    print("size width          depth | params MACs(M) | LFW fp32 (no training) | int8 ms  speed-up "
          "| batch 8 ms  speed-up")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs:
            size, width, depth, *stages = spec.split(":")
            cfg = StudentConfig(arch="dlib-derived", width=float(width),
                                input_size=int(size), act="relu", depth=depth,
                                stage_widths=stages[0] if stages else "")
            model = student_model(cfg)
            derive_from_teacher(model.net, teacher, chips)
            model.eval()
            acc = ({"accuracy": float("nan"), "tar_at_far_0.001": float("nan")}
                   if args.speed_only else lfw_accuracy(model, cfg.template))
            macs, params = count_multiply_adds(model, int(size)), count_parameters(model)
            if int(size) == 150 and not depth and float(width) == 1.0 and not cfg.stage_widths:
                ms, ms8 = teacher_ms, teacher_ms8  # the uncut teacher: its shipped file
            else:
                crops = aligned_faces(targets, rows, cfg.template)
                calibration = to_input(crops).numpy()
                fp32 = Path(tmp) / f"{cfg.slug}.fp32.onnx"
                int8 = fp32.with_name(fp32.name.replace("fp32", "int8"))
                export_onnx(model, fp32, (int(size), int(size)))
                keep = input_convolutions(fp32) + nodes_after_last_compute(fp32)
                quantize_int8(fp32, int8, calibration, keep_fp32=keep, seven_bit_weights=True)
                ms = median_ms(int8, calibration[:1], args.runs)
                ms8 = median_ms(int8, calibration[:8], max(10, args.runs // 4), threads=2)
            shares = cfg.stage_widths or f"{float(width):.2f}"
            print(f"{size:>4} {shares:>14} {depth or '3-3-2-2':>7} | {params / 1e6:5.2f}M "
                  f"{macs / 1e6:7.1f} | {100 * acc['accuracy']:6.2f}% "
                  f"TAR@1e-3 {100 * acc['tar_at_far_0.001']:5.1f}% | {ms:6.2f}  "
                  f"{teacher_ms / ms:4.2f}x | batch 8: {ms8:5.2f} {teacher_ms8 / ms8:4.2f}x",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
