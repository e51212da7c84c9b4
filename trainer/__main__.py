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
                           calibration_faces=args.calibration_faces, method=args.calibration,
                           recalibrate=args.recalibrate,
                           template_flip=True if args.flip_templates else None)
    print(f"wrote embedder pack {path}")
    return 0


def cmd_evaluate(args) -> int:
    from faceapp.core.models import ModelPack

    from .evaluate import evaluate_lfw, lfw_manifest_entries, summary_line
    from .packs import update_manifest

    pack = ModelPack.load(args.model)
    if args.benchmark == "lfw-low":
        from .evaluate import LFW_LOW_KEPT, degraded_summary, evaluate_degraded

        variants = list(pack.manifest["files"]) if args.variant == "all" else [
            args.variant or pack.manifest.get("default_variant", "int8")]
        evaluation = dict(pack.manifest.get("evaluation", {}))
        for variant in variants:
            report = evaluate_degraded(pack, variant, Path(args.reports) / pack.name,
                                       flip=args.flip, threads=args.threads)
            print(degraded_summary(report))
            key = variant + ("+flip" if args.flip else "")
            evaluation.setdefault("lfw_low", {})[key] = {k: report[k] for k in LFW_LOW_KEPT}
        if args.update_manifest:
            update_manifest(pack.path, evaluation=evaluation)
        return 0
    if args.benchmark == "lfw-1n":
        return _evaluate_identification(pack, args)
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
        evaluation.setdefault("lfw", {})[key], operating_points[key] = \
            lfw_manifest_entries(report)
    if args.update_manifest:
        update_manifest(pack.path, evaluation=evaluation, operating_points=operating_points)
        print(f"updated {pack.path / 'manifest.json'}")
    return 0


def _evaluate_identification(pack, args) -> int:
    """LFW 1:N through the app's own decisions; --update-manifest stores the
    calibration the app's operating points come from (trainer/identification.py)."""
    from faceapp.core.embed import setting_key
    from faceapp.core.operating import Calibration

    from .identification import calibrate, evaluate, lfw_1n, plot
    from .packs import update_manifest

    variants = [v for v in pack.manifest["files"] if pack.has_file(v)] \
        if args.variant == "all" else [args.variant or pack.manifest.get("default_variant")]
    settings = []  # (searches fused with their mirror, templates fused)
    if args.both_flips:
        settings += [(False, False), (True, True)]
    elif args.flip:
        settings.append((True, True))
    elif not args.flip_templates:  # --flip-templates alone measures only its own
        settings.append((False, False))
    if args.flip_templates:
        settings.append((False, True))
    identification = dict(pack.manifest.get("identification", {}))
    out = Path(args.reports) / pack.name
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for variant in variants:
        for flip, template_flip in settings:
            key = setting_key(variant, flip, template_flip)
            lfw = lfw_1n(pack, variant, flip, template_flip, args.threads)
            print(f"{pack.name} {key}: calibrating on LFW 1:N (research data)")
            spec = calibrate(lfw)
            identification[key] = spec
            own = None
            if template_flip and not flip:  # the gallery's photos search as fused faces
                fused = setting_key(variant, True)
                if fused not in identification:
                    raise SystemExit(f"{pack.name}: measure {fused} first (--both-flips): "
                                     "the app checks a gallery of fused templates with it")
                own = Calibration(identification[fused], fused)
            rows = evaluate(lfw, Calibration(spec, key), own_calibration=own)
            results[key] = rows
            for row in rows:
                print(f"  {row['people']:5d} people ({row['galleries']} galleries): rank-1 "
                      f"{row['rank1']:.3f}, best single threshold DIR@FPIR1% "
                      f"{row['best_single_threshold_dir_at_fpir_1%']:.3f}")
                for name in ("strict", "balanced", "lenient", "fpir 1%"):
                    r = row[name]
                    print(f"      {name:8s} FPIR stated {r['stated_fpir']:.3%} measured "
                          f"{r['measured_fpir']:.3%}  DIR {r['dir']:.3f}  "
                          f"(threshold {r['threshold']:.4f}, runner-up weight "
                          f"{r['runner_up_weight']:.3f})")
    (out / f"{pack.name}-lfw-1n.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / f"{pack.name}-lfw-1n-dir-fpir.png",
         f"{pack.name}: LFW 1:N through the app's decisions (research data)")
    print(f"wrote {out / f'{pack.name}-lfw-1n.json'} and the DIR/FPIR plot")
    if args.update_manifest:
        update_manifest(pack.path, identification=identification)
        print(f"updated {pack.path / 'manifest.json'}")
    return 0


def _student_config(args):
    from .distill_config import DistillConfig

    config = DistillConfig()
    if args.config:
        config = DistillConfig.from_dict(json.loads(Path(args.config).read_text()))
    student = dict(config.student.to_dict())
    for key in ("arch", "width", "input_size", "act", "depth", "stage_widths"):
        value = getattr(args, key)
        if value is not None:
            student[key] = value
    if args.arch == "dlib-derived" and args.act is None:
        student["act"] = "relu"  # cut from the teacher: its activation, nothing else
    overrides = {key: getattr(args, key) for key in
                 ("epochs", "batch_size", "lr", "distill_loss", "alpha", "arcface_weight",
                  "init", "seed", "limit", "mixup", "relational", "cut_from",
                  "teacher_variant", "neighbours", "neighbour_temperature", "hints")
                 if getattr(args, key) is not None}
    if args.clean:
        overrides["robust"] = False
    if args.online_teacher:
        overrides["teacher_online"] = True
    if args.quant_aware:
        overrides["quant_aware"] = True
    data = config.to_dict()
    data.update(overrides)
    data["student"] = student
    return DistillConfig.from_dict(data)


def cmd_distill(args) -> int:
    from .distill import Run

    config = None if args.resume_only else _student_config(args)
    name = args.name or (config.student.slug if config else None)
    if not name:
        raise SystemExit("--name is needed with --resume-only")
    run = Run(name, config)
    result = run.train(device=args.device, max_minutes=args.max_minutes, threads=args.threads)
    state = "finished" if result["finished"] else "paused (run the same command to resume)"
    print(f"run '{name}' {state} after epoch {result['epoch']}: {run.folder}")
    if result["log"]:
        print(json.dumps(result["log"][-1]))
    if result["finished"] and args.export:
        from .students import export_student
        print(f"wrote student pack {export_student(run)}")
    return 0


def cmd_export_student(args) -> int:
    from .distill import Run
    from .students import export_student

    path = export_student(Run(args.run), pack_name=args.pack_name,
                          out_root=Path(args.out_root) if args.out_root else None,
                          template_flip=args.flip_templates)
    print(f"wrote student pack {path}")
    return 0


def cmd_keep_run(args) -> int:
    from .distill import Run

    print(f"kept run '{args.run}' in {Run(args.run).keep()} (commit it: the next "
          f"generation starts from it with --init {args.run})")
    return 0


def cmd_refresh(args) -> int:
    from .refresh import main_refresh

    return main_refresh(args)


def cmd_convert_liveness(args) -> int:
    from .liveness import convert_liveness

    path = convert_liveness(Path(args.out) if args.out else None,
                            real_count=args.real_faces, variant=args.variant)
    print(f"wrote liveness pack {path}")
    return 0


def cmd_evaluate_liveness(args) -> int:
    from .liveness import evaluate_liveness

    evaluate_liveness(args.model, Path(args.nuaa) if args.nuaa else None,
                      args.lfw_images or None, Path(args.reports), args.update_manifest)
    return 0


def cmd_clustering(args) -> int:
    from .clustering import main_clustering

    return main_clustering(args)


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
    p.add_argument("--recalibrate", action="store_true",
                   help="choose the calibration faces and measure their ranges again here, "
                        "and record them (trainer/calibration/dlib-resnet-v1.json)")
    p.add_argument("--flip-templates", action="store_true",
                   help="the app fuses gallery templates with their mirror (the manifest's "
                        "template_flip_fusion, as students have it)")
    p.set_defaults(func=cmd_convert_teacher)

    p = sub.add_parser(
        "refresh", help="rebuild a shipped pack from its sources in one command: convert "
                        "or export, int8 with the recorded calibration, measure, write "
                        "(resumable; byte-identical when nothing changed)")
    p.add_argument("pack", help="mtcnn-v1, dlib-resnet-v1, or a student pack whose run is "
                                "kept in trainer/generations/")
    p.add_argument("--remeasure", action="store_true",
                   help="measure every figure of the manifest again, even when the files "
                        "are byte-identical to the pack's")
    p.add_argument("--recalibrate", action="store_true",
                   help="choose the int8 calibration faces and measure their ranges again "
                        "on this machine, and record them in trainer/calibration/")
    p.add_argument("--adopt-calibration", action="store_true",
                   help="record the calibration of the pack's own int8 file (its ranges "
                        "read back from its scales), with faces found here: a pack built "
                        "before its calibration was recorded keeps its bytes")
    p.add_argument("--out-root", help="where the pack folder is (default assets/models)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reports", default=str(REPORTS), help="where measurement reports go")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("evaluate", help="measure an embedder pack on a benchmark")
    p.add_argument("--model", required=True, help="pack name or folder")
    p.add_argument("--benchmark", default="lfw", choices=["lfw", "lfw-1n", "lfw-low"],
                   help="lfw: 6,000-pair verification; lfw-1n: 1:N identification; "
                        "lfw-low: the pairs with degraded images (High/Low protocols)")
    p.add_argument("--variant", help="int8, fp32 or all (default: the pack's default)")
    p.add_argument("--flip", action="store_true", help="flip fusion (face + mirror)")
    p.add_argument("--both-flips", action="store_true",
                   help="lfw-1n: measure with and without flip fusion")
    p.add_argument("--flip-templates", action="store_true",
                   help="lfw-1n: (also) templates fused with their mirror, searches in one "
                        "pass (a pack's template_flip_fusion)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reports", default=str(REPORTS), help="where JSON and ROC PNG go")
    p.add_argument("--update-manifest", action="store_true",
                   help="store the figures and operating thresholds in the manifest")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("clustering", help="choose an embedder's threshold for grouping "
                                          "unknown faces (CelebA), report it on LFW")
    p.add_argument("--model", required=True, help="pack name or folder")
    p.add_argument("--variant", help="int8, fp32 or all (default: the pack's default)")
    p.add_argument("--flip", action="store_true", help="flip fusion (face + mirror)")
    p.add_argument("--both-flips", action="store_true", help="with and without flip fusion")
    p.add_argument("--update-manifest", action="store_true",
                   help="store the thresholds in the pack's manifest")
    p.set_defaults(func=cmd_clustering)

    p = sub.add_parser("distill", help="distill a student from the teacher (resumable)")
    p.add_argument("--name", help="run name (default: from the architecture options)")
    p.add_argument("--config", help="JSON file with a DistillConfig (options override it)")
    p.add_argument("--arch", help="mobilefacenet, mobiface, vargfacenet, or dlib-derived "
                                  "(cut from the teacher's own weights)")
    p.add_argument("--width", type=float, help="width multiplier (dlib-derived: the share "
                                               "of each block's inner channels kept)")
    p.add_argument("--input-size", type=int, help="112, 96, 80 or 64 (dlib-derived: 150, "
                                                  "128, 112 or 104)")
    p.add_argument("--depth", help="dlib-derived: residual blocks kept per stage after its "
                                   "down-sampling block, e.g. 2-2-1-1 (teacher: 3-3-2-2)")
    p.add_argument("--stage-widths", help="dlib-derived: inner-channel share of the 32, 64, "
                                          "128 and 256-channel stages, e.g. 1-1-0.75-0.4 "
                                          "(instead of one --width)")
    p.add_argument("--act", help="relu, leaky, prelu or prelu-split")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--distill-loss", choices=["eq4", "eq5"])
    p.add_argument("--alpha", type=float, help="weight of the distillation loss")
    p.add_argument("--cut-from", help="dlib-derived: a trained run of that family (same input "
                                      "size) to cut this student from, instead of the teacher")
    p.add_argument("--relational", type=float,
                   help="weight of the relational term (the batch's pairwise similarities)")
    p.add_argument("--neighbours", type=float,
                   help="weight of the neighbour term (each face's most similar faces in "
                        "the batch, as the teacher ranks them: the low-FAR tail)")
    p.add_argument("--neighbour-temperature", type=float,
                   help="softmax temperature of the neighbour term (default 0.1)")
    p.add_argument("--hints", type=float,
                   help="weight of FitNets hints: the teacher's stage maps, cached "
                        "(seed architectures, without --online-teacher)")
    p.add_argument("--arcface-weight", type=float, help="0 turns the ArcFace term off")
    p.add_argument("--init", help="run to start from (recursive distillation; its input "
                   "size may differ)")
    p.add_argument("--clean", action="store_true",
                   help="no degradation of the student's inputs")
    p.add_argument("--online-teacher", action="store_true",
                   help="the teacher embeds each augmented view as the student sees it "
                        "(consistent teaching) instead of the cached clean face")
    p.add_argument("--teacher-variant", choices=["fp32", "int8"],
                   help="the teacher file that makes the targets (int8: 4x cheaper online)")
    p.add_argument("--mixup", type=float,
                   help="share of faces blended with another face (needs --online-teacher)")
    p.add_argument("--quant-aware", action="store_true",
                   help="fine-tune --init through the int8 graph's rounding, so the "
                        "int8 pack keeps the fp32 accuracy")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="use only the first N training faces")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, help="stop (resumably) after this long")
    p.add_argument("--resume-only", action="store_true", help="resume --name as saved")
    p.add_argument("--export", action="store_true", help="write the model pack when done")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("export-student", help="a finished run -> fp32 + int8 model pack")
    p.add_argument("--run", required=True)
    p.add_argument("--pack-name", help="default: <run>-v1")
    p.add_argument("--out-root", help="where the pack folder goes (default assets/models: "
                                      "shipped with the app)")
    p.add_argument("--flip-templates", action="store_true",
                   help="the app fuses gallery templates with their mirror and searches in "
                        "one pass (the manifest's template_flip_fusion)")
    p.set_defaults(func=cmd_export_student)

    p = sub.add_parser("keep-run", help="copy a finished run's weights into the repository "
                                        "(trainer/generations/) for later --init")
    p.add_argument("--run", required=True)
    p.set_defaults(func=cmd_keep_run)

    p = sub.add_parser("convert-liveness", help="MiniFASNet presentation-attack nets -> "
                                                "ONNX pack (default assets/models/minifasnet-v1)")
    p.add_argument("--out", help="pack folder")
    p.add_argument("--real-faces", type=int, default=400,
                   help="LFW faces for the export check and the int8 comparison")
    p.add_argument("--variant", choices=["fp32", "int8", "int8-weights"], default="fp32",
                   help="the files shipped (fp32: int8 moves decisions on real faces)")
    p.set_defaults(func=cmd_convert_liveness)

    p = sub.add_parser("evaluate-liveness", help="measure a liveness pack: NUAA (threshold "
                                                 "from its training lists), LFW, samples, ms")
    p.add_argument("--model", default="minifasnet-v1", help="pack name or folder")
    p.add_argument("--nuaa", help="the NUAA Photograph Imposter Database folder (with "
                                  "ClientRaw/, ImposterRaw/ and the *_raw.txt lists)")
    p.add_argument("--lfw-images", type=int, default=0, help="LFW photos (default: all)")
    p.add_argument("--reports", default=str(REPORTS), help="where the JSON report goes")
    p.add_argument("--update-manifest", action="store_true",
                   help="store the threshold and the figures in the manifest (needs --nuaa)")
    p.set_defaults(func=cmd_evaluate_liveness)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
