"""dlib's ResNet (CC0) -> an embedder model pack: fp32 ONNX and int8 ONNX.

Only the int8 file ships with the app; the fp32 file is rebuilt from the upstream
.dat whenever it is needed (evaluation, distillation) and is not committed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from faceapp.core.embed import Preprocessing

from . import upstream
from .calibration import settle_ranges, teacher_record
from .export import (export_onnx, input_convolutions, quantize_int8, quantized_graph_report,
                     run_onnx)
from .packs import keep_measured_figures, register_file, repo_packs_dir, write_manifest
from .teachers.dlib_resnet import load_dlib_resnet

PACK_NAME = "dlib-resnet-v1"
TEMPLATE = "dlib150"
CALIBRATION_FACES = 512  # seeded sample of training faces (trainer/data.py)


def teacher_manifest(module) -> dict:
    return {
        "name": PACK_NAME,
        "version": "1.0",
        "task": "embedder",
        "description": "dlib's ResNet face descriptor (29 conv layers, 128-d), the "
                       "accurate embedder and the teacher of the distilled students",
        "default_variant": "int8",
        "input": {"size": [150, 150], "color": "RGB", "layout": "NCHW",
                  "mean": [round(float(m), 6) for m in module.input_mean],
                  "std": [1.0 / module.input_scale] * 3},
        "alignment": TEMPLATE,
        "embedding_size": 128,
        # measured (int8, LFW): +0.15 points on the 6,000 pairs, rank-1 91.0 -> 93.3% in 1:N
        "flip_fusion": True,
        "similarity": "cosine",
        "licence": "CC0-1.0",
        "provenance": {
            "weights": "dlib_face_recognition_resnet_model_v1.dat by Davis E. King (CC0)",
            "source": upstream.DLIB_MODELS_SDIST.requirement,
            "source_sha256": upstream.DLIB_MODELS_SDIST.sha256,
            "source_member": upstream.DLIB_RESNET_MEMBER,
            "converted_by": "python -m trainer convert-teacher",
        },
    }


def convert_teacher(out_dir: Path | None = None, calibration_faces: int = CALIBRATION_FACES,
                    method: str = "minmax", recalibrate: bool = False,
                    keep_figures: bool = True, template_flip: bool | None = None,
                    adopt_int8: Path | None = None) -> Path:
    """Write the teacher pack (fp32 + int8 ONNX, manifest) into out_dir.

    The int8 file is quantized with the calibration recorded in
    trainer/calibration/dlib-resnet-v1.json (trainer/calibration.py), so it is the
    same bytes on every machine; `recalibrate` chooses the faces and measures the
    ranges again, here, and records them. keep_figures: a rebuild with byte-identical
    files keeps the figures measured on them (trainer/refresh.py decides itself).
    template_flip: the manifest's template_flip_fusion (None: not written; True: the
    students' mode, searches in one pass, so flip_fusion off).
    adopt_int8: record the ranges of this int8 file (calibration.ranges_from_int8).
    """
    out_dir = out_dir or repo_packs_dir() / PACK_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    module = load_dlib_resnet()
    manifest = teacher_manifest(module)
    if template_flip is not None:
        # the students' mode: the gallery's templates fused with their mirror once, at
        # enrolment, and every search in one pass (flip_fusion fuses both)
        manifest["template_flip_fusion"] = bool(template_flip)
        if template_flip:
            manifest["flip_fusion"] = False
    preprocessing = Preprocessing.from_manifest(manifest["input"])

    fp32_name, int8_name = f"{PACK_NAME}.fp32.onnx", f"{PACK_NAME}.int8.onnx"
    export_onnx(module, out_dir / fp32_name, (150, 150))

    record = teacher_record(PACK_NAME, TEMPLATE, calibration_faces, method,
                            recalibrate=recalibrate)
    print(f"aligning the {len(record.faces)} calibration faces ...", file=sys.stderr)
    batch = preprocessing.to_tensor(record.crops())

    with torch.no_grad():
        expected = module(torch.from_numpy(batch)).numpy()
    got = run_onnx(out_dir / fp32_name, batch)
    worst = float(np.abs(got - expected).max())
    print(f"fp32 ONNX vs torch on {len(batch)} faces: max abs diff {worst:.2e}", file=sys.stderr)
    if worst > 1e-3:
        raise RuntimeError(f"ONNX export does not match torch (max abs diff {worst})")

    # The 7x7 stem stays fp32: quantized, it alone drops the mean cosine to fp32 from
    # 0.9995 to 0.989 on held-out training faces; it is ~9% of the multiply-adds.
    keep_fp32 = input_convolutions(out_dir / fp32_name)
    started = time.perf_counter()
    ranges = settle_ranges(record, out_dir / fp32_name, batch, keep_fp32, adopt=adopt_int8)
    quantize_int8(out_dir / fp32_name, out_dir / int8_name, None, method=method,
                  keep_fp32=keep_fp32, ranges=ranges)
    print(f"quantized in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    report = quantized_graph_report(out_dir / int8_name, keep_fp32)
    if report["fp32_islands"]:
        raise RuntimeError(f"int8 graph has fp32 compute nodes: {report['fp32_islands']}")
    q = run_onnx(out_dir / int8_name, batch)
    cos = np.sum(q * expected, 1) / np.linalg.norm(q, axis=1) / np.linalg.norm(expected, axis=1)
    print(f"int8 vs fp32 cosine: mean {cos.mean():.5f}, worst {cos.min():.5f}", file=sys.stderr)

    register_file(manifest, out_dir, "int8", int8_name)
    register_file(manifest, out_dir, "fp32", fp32_name, shipped=False,
                  missing_hint="it is not shipped; run `python -m trainer convert-teacher`")
    manifest["quantization"] = {
        "format": "QDQ", "weights": "int8 per-channel", "activations": "uint8",
        "calibration": f"{len(batch)} aligned faces from ../shared/data/train, "
                       f"{method} ranges",
        "int8_vs_fp32_cosine": {"mean": round(float(cos.mean()), 5),
                                "worst": round(float(cos.min()), 5)},
        "quantized_compute_nodes": report["quantized_compute_nodes"],
        "fp32_by_design": report["fp32_by_design"],
    }
    if keep_figures:
        keep_measured_figures(out_dir, manifest)
    write_manifest(out_dir, manifest)
    return out_dir
