"""python -m trainer <command>: produces and measures every model the app ships."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def cmd_convert_detector(args) -> int:
    from .teachers.mtcnn import convert_detector

    pack = convert_detector(Path(args.out) if args.out else None)
    print(f"wrote detector pack {pack.path}")
    return 0


def cmd_convert_teacher(args) -> int:
    from .convert_teacher import convert_teacher

    path = convert_teacher(Path(args.out) if args.out else None,
                           calibration_faces=args.calibration_faces, method=args.calibration)
    print(f"wrote embedder pack {path}")
    return 0


def cmd_evaluate(args) -> int:
    from faceapp.core.models import ModelPack

    from .evaluate import evaluate_lfw, summary_line
    from .packs import update_manifest

    pack = ModelPack.load(args.model)
    if args.benchmark == "lfw-1n":
        from .evaluate import lfw_identification

        report = lfw_identification(pack, args.variant or pack.manifest.get("default_variant"),
                                    Path(args.reports) / pack.name, flip=args.flip,
                                    threads=args.threads)
        print(json.dumps(report, indent=2))
        return 0
    variants = list(pack.manifest["files"]) if args.variant == "all" else [args.variant
                                                                            or pack.manifest.get("default_variant", "int8")]
    evaluation = dict(pack.manifest.get("evaluation", {}))
    operating_points = dict(pack.manifest.get("operating_points", {}))
    for variant in variants:
        report = evaluate_lfw(pack, variant, Path(args.reports) / pack.name, flip=args.flip,
                              threads=args.threads)
        print(summary_line(report))
        print("  operating points (all LFW pairs): " + ", ".join(
            f"FAR {p['far']:g}: cos>={p['cosine']:.3f} TAR {p['tar']:.4f}"
            for p in report["operating_points"]["points"]))
        key = variant + ("+flip" if args.flip else "")
        evaluation.setdefault("lfw", {})[key] = {
            k: (round(v, 5) if isinstance(v, float) else v) for k, v in report.items()
            if k in ("accuracy_mean", "accuracy_std", "roc_auc", "tar_at_far_0.001",
                     "tar_at_far_0.0001", "images", "images_without_detection",
                     "no_detection_policy", "dataset_note")}
        operating_points[key] = {
            "measured_on": (f"LFW, all pairs among the {report['images']} images of pairs.txt: "
                            f"{report['operating_points']['genuine_pairs']} genuine, "
                            f"{report['operating_points']['impostor_pairs']} impostor"),
            "points": report["operating_points"]["points"],
        }
    if args.update_manifest:
        update_manifest(pack.path, evaluation=evaluation, operating_points=operating_points)
        print(f"updated {pack.path / 'manifest.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert-detector", help="MTCNN (facenet-pytorch weights) -> ONNX pack")
    p.add_argument("--out", help="pack folder (default assets/models/mtcnn-v1)")
    p.set_defaults(func=cmd_convert_detector)

    p = sub.add_parser("convert-teacher", help="dlib ResNet -> fp32 + int8 ONNX pack")
    p.add_argument("--out", help="pack folder (default assets/models/dlib-resnet-v1)")
    p.add_argument("--calibration-faces", type=int, default=512)
    p.add_argument("--calibration", choices=["minmax", "entropy", "percentile"],
                   default="minmax")
    p.set_defaults(func=cmd_convert_teacher)

    p = sub.add_parser("evaluate", help="measure an embedder pack on a benchmark")
    p.add_argument("--model", required=True, help="pack name or folder")
    p.add_argument("--benchmark", default="lfw", choices=["lfw", "lfw-1n"],
                   help="lfw: 6,000-pair verification; lfw-1n: 1:N identification")
    p.add_argument("--variant", help="int8, fp32 or all (default: the pack's default)")
    p.add_argument("--flip", action="store_true", help="flip fusion (face + mirror)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reports", default=str(REPORTS), help="where JSON and ROC PNG go")
    p.add_argument("--update-manifest", action="store_true",
                   help="store the figures and operating thresholds in the manifest")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
