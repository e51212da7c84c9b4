"""A finished distillation run -> a student model pack (fp32 + int8 ONNX, manifest)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from .cache import distill_targets, train_crops
from .distill import CALIBRATION_FACES, Run, calibration_rows, to_input
from .export import (export_onnx, input_convolutions, nodes_after_last_compute,
                     quantize_int8, quantized_graph_report, run_onnx)
from .nets import count_multiply_adds, count_parameters
from .nets.normalisation import STUDENT_MEAN, STUDENT_STD
from .packs import keep_measured_figures, register_file, repo_packs_dir, write_manifest

TRAINING_DATA_NOTE = (
    "distilled from dlib's ResNet (CC0) on faces from UTKFace, CelebA, MEBeauty and "
    "SCUT-FBP5500 (research datasets, non-commercial use); the weights are ours, the "
    "datasets are not shipped")


def calibration_crops(template: str, count: int = CALIBRATION_FACES) -> np.ndarray:
    crops = train_crops(distill_targets(), template)
    return np.asarray(crops[calibration_rows(len(crops), count)])


def student_record(pack: str, template: str, recalibrate: bool = False):
    """The pack's recorded calibration (trainer/calibration.py), or a new one on the
    faces export has always calibrated students on (`calibration_rows` of the
    distillation targets), ranges still to measure."""
    from .calibration import CalibrationRecord, faces_from_rows, load_record

    record = None if recalibrate else load_record(pack)
    if record is None:
        targets = distill_targets()
        rows = calibration_rows(len(targets), CALIBRATION_FACES)
        record = CalibrationRecord(pack, template, "minmax", 1, faces_from_rows(
            [targets.paths[i] for i in rows], np.asarray(targets.landmarks)[rows]))
    return record


def export_student(run: Run, pack_name: str | None = None, out_root: Path | None = None,
                   calibration: np.ndarray | None = None, template_flip: bool = False,
                   record=None, keep_figures: bool = True,
                   adopt_int8: Path | None = None) -> Path:
    """record: a CalibrationRecord (trainer/calibration.py) whose faces calibrate and
    whose ranges quantize (the same int8 bytes on every machine); without one, the
    ranges are measured here on `calibration` (default: calibration_crops).
    adopt_int8: record the ranges of this int8 file (calibration.ranges_from_int8)."""
    cfg = run.config.student
    name = pack_name or f"{run.name}-v1"
    out_dir = (out_root or repo_packs_dir()) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    model = run.load_model()
    size = cfg.input_size

    fp32_name, int8_name = f"{name}.fp32.onnx", f"{name}.int8.onnx"
    export_onnx(model, out_dir / fp32_name, (size, size))
    if record is not None:
        crops = record.crops()
    else:
        crops = calibration if calibration is not None else calibration_crops(cfg.template)
    batch = to_input(crops).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    got = run_onnx(out_dir / fp32_name, batch)
    worst = float(np.abs(got - expected).max() / (np.abs(expected).max() + 1e-9))
    if worst > 1e-3:
        raise RuntimeError(f"ONNX export does not match torch (relative diff {worst:.2e})")

    # Left in fp32 on purpose: the stem convolution, which reads the image itself
    # (quantized, it alone drops the mean cosine to fp32 from 0.9997 to 0.9966 on
    # held-out faces, for ~1% of the multiply-adds; the teacher shows the same), and
    # the elementwise tail after the last convolution (unit length, teacher's space).
    keep = input_convolutions(out_dir / fp32_name) + nodes_after_last_compute(out_dir / fp32_name)
    if record is not None:
        from .calibration import settle_ranges

        ranges = settle_ranges(record, out_dir / fp32_name, batch, keep, seven_bit_weights=True,
                               adopt=adopt_int8)
        quantize_int8(out_dir / fp32_name, out_dir / int8_name, None, keep_fp32=keep,
                      seven_bit_weights=True, ranges=ranges)
    else:
        quantize_int8(out_dir / fp32_name, out_dir / int8_name, batch, keep_fp32=keep,
                      seven_bit_weights=True)
    report = quantized_graph_report(out_dir / int8_name, keep)
    if report["fp32_islands"]:
        raise RuntimeError(f"int8 graph has fp32 compute nodes: {report['fp32_islands']}")
    q = run_onnx(out_dir / int8_name, batch)
    cos = np.sum(q * expected, 1) / np.linalg.norm(q, axis=1) / np.linalg.norm(expected, axis=1)
    print(f"{name}: int8 vs fp32 cosine mean {cos.mean():.5f}, worst {cos.min():.5f}",
          file=sys.stderr)

    log = run.log()
    manifest = {
        "name": name,
        "version": "1.0",
        "task": "embedder",
        "description": f"{cfg.arch} student ("
                       + (f"stage widths {cfg.stage_widths}" if cfg.stage_widths
                          else f"width {cfg.width:g}") + f", {size}x{size} input, "
                       f"{cfg.act}) distilled from dlib's ResNet",
        "default_variant": "int8",
        "input": {"size": [size, size], "color": "RGB", "layout": "NCHW",
                  "mean": [STUDENT_MEAN] * 3, "std": [STUDENT_STD] * 3},
        "alignment": cfg.template,
        "embedding_size": cfg.embedding,
        "flip_fusion": False,
        "template_flip_fusion": template_flip,
        "similarity": "cosine",
        "licence": "CC0-1.0",
        "licence_note": "the weights are the project's, released CC0 like the teacher "
                        "they reproduce; the faces they were distilled on are research "
                        "data (provenance.training_data): check those terms before "
                        "commercial use",
        "architecture": {**cfg.to_dict(), "parameters": count_parameters(model),
                         "multiply_adds": count_multiply_adds(model, size)},
        "provenance": {
            "teacher": f"dlib-resnet-v1 ({run.config.teacher_variant})",
            "training_data": TRAINING_DATA_NOTE,
            "distillation": run.config.to_dict(),
            "epochs_trained": len(log),
            "generations": run.lineage(),
            "trained_by": f"python -m trainer distill --name {run.name}",
        },
    }
    register_file(manifest, out_dir, "int8", int8_name)
    register_file(manifest, out_dir, "fp32", fp32_name, shipped=False,
                  missing_hint=f"not shipped; `python -m trainer export-student --run {run.name}"
                               + (f" --pack-name {name}`" if pack_name else "`"))
    manifest["quantization"] = {
        "format": "QDQ", "weights": "int8 per-channel, 7-bit range", "activations": "uint8",
        "calibration": f"{len(batch)} aligned faces from ../shared/data/train, minmax ranges",
        "int8_vs_fp32_cosine": {"mean": round(float(cos.mean()), 5),
                                "worst": round(float(cos.min()), 5)},
        "quantized_compute_nodes": report["quantized_compute_nodes"],
        "fp32_by_design": report["fp32_by_design"],
        "fp32_tail": nodes_after_last_compute(out_dir / fp32_name),
    }
    if keep_figures:
        keep_measured_figures(out_dir, manifest)
    write_manifest(out_dir, manifest)
    return out_dir
