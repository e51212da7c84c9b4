"""python -m trainer refresh PACK: a shipped model pack rebuilt from its sources.

    python -m trainer refresh dlib-resnet-v1 [--remeasure] [--recalibrate]

One command for every pack the app ships: the detector (mtcnn-v1, converted from
facenet-pytorch's weights), the teacher (dlib-resnet-v1, converted from dlib's .dat)
and each student whose run is kept in trainer/generations/ (exported from it). It

1. builds the pack's files in a staging folder of the trainer cache: convert or
   export, then int8 with the calibration recorded in trainer/calibration/
   (trainer/calibration.py: the same bytes on every machine);
2. compares them with the pack's files by checksum;
3. measures what the manifest measured on its files (LFW 1:1 figures and operating
   points, the degraded protocol, 1:N calibration, clustering threshold). Files with
   the same checksums keep the measured sections of the manifest they had (they were
   measured on these very bytes); changed files, or --remeasure, measure every
   section the manifest had again (a new pack: the ones the app needs). A section
   is never dropped;
4. writes the files and manifest.json into assets/models/<pack>/, keys in the order
   the manifest had them, so a refresh with nothing changed rewrites the same bytes.

Each measurement is kept in the trainer cache under the checksums it was made on, so
an interrupted refresh resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceapp.core.models import MANIFEST, ModelPack, file_sha256

from .calibration import CalibrationMismatch, load_record
from .packs import (MEASURED_FIELDS, MEASURED_SECTIONS, in_order_of, keep_sections,
                    manifest_text, repo_packs_dir)
from .upstream import cache_dir

DETECTOR = "mtcnn-v1"
TEACHER = "dlib-resnet-v1"
EDITED = ("description",)  # manifest fields people may have reworded after a build


class RefreshError(RuntimeError):
    pass


@dataclass
class Refreshed:
    pack: str
    path: Path
    files: dict[str, str] = field(default_factory=dict)  # key -> "unchanged" / "changed"
    kept: list[str] = field(default_factory=list)  # measured sections kept as they were
    measured: list[str] = field(default_factory=list)  # measured here
    seconds: float = 0.0


class Progress:
    def __init__(self, pack: str):
        self.pack, self.started = pack, time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[refresh {self.pack} {elapsed:6.0f} s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- the packs

def student_run(pack: str, manifest: dict | None):
    """The kept run a student pack was exported from (trainer/generations/)."""
    from .distill import Run, kept_runs_dir

    provenance = (manifest or {}).get("provenance", {})
    lineage = provenance.get("generations") or []
    name = lineage[-1]["run"] if lineage else None
    if name is None and "trained_by" in provenance:
        name = provenance["trained_by"].split("--name")[-1].split()[0]
    if not name or not (kept_runs_dir() / name / "config.json").exists():
        raise RefreshError(
            f"{pack}: not a pack refresh can build: it is neither {DETECTOR} nor {TEACHER}, "
            f"and no run it was exported from is kept in trainer/generations/ "
            f"({name or 'its manifest names none'})")
    return Run(name)


def build(pack: str, staging: Path, previous: dict | None, recalibrate: bool,
          log: Progress, adopt: Path | None = None) -> dict:
    """Write the pack's files and a manifest without measured sections into staging;
    returns that manifest. adopt: the pack's int8 file, whose ranges are recorded."""
    for stale in staging.glob("*"):
        if stale.is_file():
            stale.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    if pack == DETECTOR:
        from .teachers.mtcnn import convert_detector

        log("converting facenet-pytorch's MTCNN to ONNX")
        convert_detector(staging)
    elif pack == TEACHER:
        from .convert_teacher import convert_teacher

        log("converting dlib's ResNet to ONNX and quantizing it to int8")
        template_flip = (previous or {}).get("template_flip_fusion")
        convert_teacher(staging, recalibrate=recalibrate, keep_figures=False,
                        template_flip=template_flip, adopt_int8=adopt)
    else:
        from .students import export_student, student_record

        run = student_run(pack, previous)
        log(f"exporting the student from its kept run {run.name}")
        if (recalibrate or load_record(pack) is None) and \
                not ModelPack.load(TEACHER).has_file("fp32"):
            # the calibration faces come from the distillation targets, made by the
            # teacher's fp32 file, which is not shipped
            log(f"the teacher's fp32 file is needed: refreshing {TEACHER} first")
            refresh(TEACHER, measure_sections=False)
        record = student_record(pack, run.config.student.template, recalibrate)
        export_student(run, pack_name=pack, out_root=staging.parent, record=record,
                       template_flip=bool((previous or {}).get("template_flip_fusion", False)),
                       keep_figures=False, adopt_int8=adopt)
    return json.loads((staging / MANIFEST).read_text(encoding="utf-8"))


# -------------------------------------------------------------------- measuring

def _default_keys(manifest: dict) -> dict[str, list[str]]:
    """What a new embedder pack measures: the settings the app runs it with."""
    from faceapp.core.embed import setting_key

    variant = manifest.get("default_variant", "int8")
    app = setting_key(variant, bool(manifest.get("flip_fusion", False)))
    identification = [app]
    if manifest.get("template_flip_fusion") and not manifest.get("flip_fusion"):
        identification = [setting_key(variant, True), setting_key(variant, False, True)]
    return {"lfw": [variant, variant + "+flip"], "lfw_low": [variant],
            "identification": identification, "clustering": [app]}


def measurements(manifest: dict, previous: dict | None) -> list[tuple[str, str]]:
    """(kind, key) to measure: every key of the previous manifest's measured sections
    (a new pack: the defaults), 1:N with fused searches before fused templates."""
    if previous is None or not any(previous.get(s) for s in MEASURED_SECTIONS):
        wanted = _default_keys(manifest)
    else:
        evaluation = previous.get("evaluation", {})
        wanted = {
            "lfw": list(dict.fromkeys(list(evaluation.get("lfw", {}))
                                      + list(previous.get("operating_points", {})))),
            "lfw_low": list(evaluation.get("lfw_low", {})),
            "identification": sorted(previous.get("identification", {}),
                                     key=lambda k: k.endswith("+flip-templates")),
            "clustering": list(previous.get("clustering", {})),
        }
    return [(kind, key) for kind in ("lfw", "lfw_low", "identification", "clustering")
            for key in wanted.get(kind, [])]


def _measurement_key(pack: ModelPack, variant: str) -> str:
    """The checksums a measurement depends on: the variant's file and the detector's."""
    detector = ModelPack.load(DETECTOR).manifest["files"]
    digest = hashlib.sha256(pack.manifest["files"][variant]["sha256"].encode())
    for key in sorted(detector):
        digest.update(detector[key]["sha256"].encode())
    return digest.hexdigest()[:16]


def measure(pack: ModelPack, kind: str, key: str, identification: dict, threads: int,
            reports: Path) -> Any:
    """One measurement, cached under the checksums it depends on."""
    from .identification import parse_setting

    variant, flip, template_flip = parse_setting(key)
    if not pack.has_file(variant):
        raise RefreshError(f"{pack.name}: the {variant} file is needed to measure {kind} "
                           f"{key} and is not in {pack.path}")
    cache = cache_dir() / "refresh" / "measured" / pack.name / \
        f"{_measurement_key(pack, variant)}-{kind}-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    if kind == "lfw":
        from .evaluate import evaluate_lfw, lfw_manifest_entries

        result = list(lfw_manifest_entries(evaluate_lfw(pack, variant, reports, flip=flip,
                                                        threads=threads)))
    elif kind == "lfw_low":
        from .evaluate import LFW_LOW_KEPT, evaluate_degraded

        report = evaluate_degraded(pack, variant, reports, flip=flip, threads=threads)
        result = {k: report[k] for k in LFW_LOW_KEPT}
    elif kind == "identification":
        from .identification import calibrate, lfw_1n

        if template_flip and not flip:
            from faceapp.core.embed import setting_key

            if setting_key(variant, True) not in identification:
                raise RefreshError(f"{pack.name}: {key} needs {setting_key(variant, True)} "
                                   "measured first")
        result = calibrate(lfw_1n(pack, variant, flip, template_flip, threads))
    elif kind == "clustering":
        from .clustering import calibrate

        result = calibrate(pack, variant, flip)
    else:  # pragma: no cover
        raise ValueError(kind)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(cache)
    return result


def measure_all(pack: ModelPack, previous: dict | None, threads: int, reports: Path,
                log: Progress) -> tuple[dict, list[str]]:
    """The measured sections for the staged pack: {section: {key: ...}}."""
    sections: dict[str, dict] = {}
    done = []
    todo = measurements(pack.manifest, previous)
    for i, (kind, key) in enumerate(todo, 1):
        log(f"measuring {i}/{len(todo)}: {kind} {key}")
        result = measure(pack, kind, key, sections.get("identification", {}), threads,
                         reports)
        if kind == "lfw":
            evaluation, operating = result
            if previous is None or key in previous.get("evaluation", {}).get("lfw", {}):
                sections.setdefault("evaluation", {}).setdefault("lfw", {})[key] = evaluation
            if previous is None or key in previous.get("operating_points", {}) \
                    or not previous.get("operating_points"):
                sections.setdefault("operating_points", {})[key] = operating
        elif kind == "lfw_low":
            sections.setdefault("evaluation", {}).setdefault("lfw_low", {})[key] = result
        else:
            sections.setdefault(kind, {})[key] = result
        done.append(f"{kind} {key}")
    return sections, done


def _check_nothing_dropped(pack: str, previous: dict | None, manifest: dict) -> None:
    """Every measured key of the previous manifest is in the new one (two levels deep:
    evaluation.lfw.int8, identification.int8+flip, ...)."""
    for name in MEASURED_SECTIONS:
        old = (previous or {}).get(name, {})
        new = manifest.get(name, {})
        for key, value in old.items():
            missing = key not in new or (
                name == "evaluation" and isinstance(value, dict)
                and not set(value) <= set(new.get(key, {})))
            if missing:
                raise RefreshError(f"{pack}: {name}.{key} was not measured again (a refresh "
                                   "never drops a measured section)")


# -------------------------------------------------------------------- comparing

def describe_difference(old: Path, new: Path) -> str:
    """Why two ONNX files differ: their metadata (producer, opsets: library versions)
    or their initializers (weights, scales, zero points: the calibration)."""
    try:
        import numpy as np
        import onnx
        from onnx import numpy_helper

        a, b = onnx.load(str(old)), onnx.load(str(new))
    except Exception as exc:  # not ONNX, or unreadable: the checksum says enough
        return f"({exc})"
    parts = []
    meta = lambda m: (m.ir_version, m.producer_name, m.producer_version,  # noqa: E731
                      sorted((o.domain, o.version) for o in m.opset_import))
    if meta(a) != meta(b):
        parts.append(f"metadata {meta(a)[:3]} -> {meta(b)[:3]}")
    if [n.SerializeToString() for n in a.graph.node] != \
            [n.SerializeToString() for n in b.graph.node]:
        parts.append("graph nodes differ")
    ia = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    ib = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    changed = [k for k in ia if k not in ib or ia[k].shape != ib[k].shape
               or not np.array_equal(ia[k], ib[k])]
    if changed or set(ib) - set(ia):
        parts.append(f"{len(changed)} of {len(ia)} initializers differ (e.g. "
                     f"{', '.join(changed[:3])})")
    return "; ".join(parts) or "same content, other serialization"


# ----------------------------------------------------------------------- refresh

def refresh(pack: str, remeasure: bool = False, recalibrate: bool = False,
            out_root: Path | None = None, threads: int = 2,
            reports: Path | None = None, measure_sections: bool = True,
            staging: Path | None = None, adopt_calibration: bool = False) -> Refreshed:
    """Rebuild `pack` into out_root/<pack> (default assets/models), built in
    staging/<pack> (default: in the trainer cache). measure_sections False: build and
    compare only, keep every measured section (a test's quick run; it refuses when a
    file changed). adopt_calibration: record the calibration of the pack's own int8
    file (read back from it) instead of measuring one: a pack built before its
    calibration was recorded keeps its bytes."""
    log = Progress(pack)
    dest = (out_root or repo_packs_dir()) / pack
    previous = json.loads((dest / MANIFEST).read_text(encoding="utf-8")) \
        if (dest / MANIFEST).exists() else None
    staging = (staging or cache_dir() / "refresh" / "staging") / pack
    adopt = None
    if adopt_calibration:
        entry = (previous or {}).get("files", {}).get("int8")
        if entry is None or not (dest / entry["path"]).exists():
            raise RefreshError(f"{pack}: no int8 file in {dest} to read its calibration from")
        adopt = dest / entry["path"]
    manifest = build(pack, staging, previous, recalibrate, log, adopt)
    result = Refreshed(pack, dest)

    old_files = (previous or {}).get("files", {})
    for key, entry in manifest["files"].items():
        old = old_files.get(key)
        same = old is not None and (old["sha256"], old["bytes"]) == (entry["sha256"],
                                                                     entry["bytes"])
        result.files[key] = "unchanged" if same else "changed" if old else "new"
        if not same and old and (dest / old["path"]).exists():
            log(f"{entry['path']} differs from the one in {dest}: "
                f"{describe_difference(dest / old['path'], staging / entry['path'])}")
    files_same = previous is not None and previous.get("files") == manifest["files"]

    if previous is not None:
        # words written for people (a description edited after export) stay
        for key in EDITED:
            if key in previous and previous[key] != manifest.get(key):
                manifest[key] = previous[key]
                log(f"kept the manifest's own {key}")
        # what the manifest says that the build does not make (decisions, notes) stays
        extra = [k for k in previous if k not in manifest and k not in MEASURED_SECTIONS]
        for key in extra:
            manifest[key] = previous[key]
        if extra:
            log(f"kept from the manifest as it was: {', '.join(extra)}")
    if files_same and not remeasure:
        result.kept = keep_sections(previous, manifest)
        log("the files are byte-identical to the pack's: its measured sections are kept "
            f"({', '.join(result.kept) or 'none'}; --remeasure measures them again)")
    elif manifest["task"] == "embedder":
        if not measure_sections:
            raise RefreshError(f"{pack}: the rebuilt files differ from the pack's "
                               f"({result.files}): its figures must be measured again")
        staged = ModelPack.load(staging)
        sections, result.measured = measure_all(
            staged, previous, threads, reports or (cache_dir() / "refresh" / "reports"), log)
        for name in MEASURED_SECTIONS:
            if name in sections:
                manifest[name] = sections[name]
        _check_nothing_dropped(pack, previous, manifest)
        if previous is not None:
            for section, key in MEASURED_FIELDS:
                if key in previous.get(section, {}) and key in manifest.get(section, {}):
                    old, new = previous[section][key], manifest[section][key]
                    if old != new:
                        log(f"{section}.{key}: {old} -> {new} (measured here)")
    else:
        result.measured = [f"{s}.{k}" for s, k in MEASURED_FIELDS
                           if k in manifest.get(s, {})]

    # into the pack folder: files first (only what changed is rewritten), manifest last
    dest.mkdir(parents=True, exist_ok=True)
    for key, entry in manifest["files"].items():
        source, target = staging / entry["path"], dest / entry["path"]
        if not target.exists() or file_sha256(target) != entry["sha256"]:
            shutil.copyfile(source, target.with_name(target.name + ".tmp"))
            target.with_name(target.name + ".tmp").replace(target)
    text = manifest_text(in_order_of(previous, manifest) if previous else manifest)
    if not (dest / MANIFEST).exists() or (dest / MANIFEST).read_text(encoding="utf-8") != text:
        tmp = dest / (MANIFEST + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(dest / MANIFEST)
        log(f"wrote {dest / MANIFEST}")
    else:
        log(f"{dest / MANIFEST} is unchanged")
    ModelPack.load(dest)  # the app can read what was written
    result.seconds = time.perf_counter() - log.started
    return result


def main_refresh(args) -> int:
    try:
        result = refresh(args.pack, remeasure=args.remeasure, recalibrate=args.recalibrate,
                         adopt_calibration=args.adopt_calibration,
                         out_root=Path(args.out_root) if args.out_root else None,
                         threads=args.threads,
                         reports=Path(args.reports) / args.pack if args.reports else None)
    except (RefreshError, CalibrationMismatch) as exc:
        raise SystemExit(str(exc)) from None
    files = ", ".join(f"{k} {v}" for k, v in result.files.items())
    print(f"refreshed {result.pack} in {result.seconds:.0f} s: {files}; "
          + (f"measured: {', '.join(result.measured)}" if result.measured
             else f"measured sections kept ({', '.join(result.kept) or 'none'})"))
    return 0
