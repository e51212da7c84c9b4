"""The int8 calibration of a pack, kept in the repository: trainer/calibration/<pack>.json.

Why it is recorded rather than only recomputed: what static quantization measures
is floating-point arithmetic, and that arithmetic is not the same on every CPU.
onnxruntime picks its kernels when it starts (AVX2 or AVX-512, with or without
VNNI), and they add in different orders, so the same network on the same image gives
results that differ in the last bits from one machine to the next. Two steps of a
calibration see those bits:

- which faces, and where: the calibration faces are found by the app's own detector
  (MTCNN in onnxruntime, with graph optimisations that lay convolutions out for the
  CPU's vector width). Of the teacher's 512 faces, an AVX2 CPU and an AVX-512 one
  give landmarks that differ by ~1e-5 px for most faces and by 2 px for one (another
  refinement of a borderline face); 302 of the 512 aligned crops differ in some grey
  level;
- the activation ranges: min/max calibration takes the largest activation of each
  tensor over the faces, so every changed pixel (and, on other CPUs or versions, every
  last-bit difference of a convolution) lands in the scales written into the int8
  file. Measured here, the same crops gave bit-identical ranges on AVX2 (emulated)
  and AVX-512, but the crops above did not: the teacher's int8 file built on an
  AVX-512 CPU and on an AVX2 one differ in 57 of their 267 initializers (scales, zero
  points and the biases quantized with them; the weights are the same), with the
  same seeds, threads and library versions, and the same metadata.

So the calibration is recorded once, like a lock file: the faces (image path and the
5 landmarks the detector gave, exactly) and the activation ranges measured on them.
Quantization reads the record, so the int8 file is a function of the fp32 file and
committed data: the same bytes on every machine. A refresh measures the ranges again
on the recorded faces and reports how far this machine's measurement lies from the
record (last-bit noise: ~1e-6 of a range); a larger gap means the network or the
data changed, and `--recalibrate` records the calibration anew. A pack built before
its calibration was recorded gets one from its own int8 file (`ranges_from_int8`:
the ranges that give exactly its scales and zero points), as the teacher did.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import align_faces, sample_train_faces, shared_data_root

RECORDS = Path(__file__).resolve().parent / "calibration"
# A refresh's ranges may differ from the record by last-bit noise; beyond this share
# of a tensor's range the calibration no longer describes the network it is used on.
RANGE_TOLERANCE = 1e-3


class CalibrationMismatch(RuntimeError):
    pass


@dataclass
class CalibrationRecord:
    pack: str
    template: str  # the alignment the faces are cropped with
    method: str  # onnxruntime's calibration method ("minmax")
    seed: int  # the sample of training faces (trainer/data.py sample_train_faces)
    faces: list[tuple[str, list[float]]]  # path under ../shared/data, 10 landmark floats
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    measured_on: str = ""  # the CPU and library versions of the recorded measurement
    file: Path | None = field(default=None, compare=False)  # default: record_path(pack)

    @property
    def path(self) -> Path:
        return self.file or record_path(self.pack)

    def crops(self) -> np.ndarray:
        """The recorded faces aligned for the record's template (N x H x W x 3 uint8)."""
        root = shared_data_root()
        return align_faces([(root / rel, np.asarray(points, np.float32).reshape(5, 2))
                            for rel, points in self.faces], self.template)

    def to_json(self) -> str:
        """Deterministic JSON, one range and one face per line (a recalibration reads
        as a diff of what moved)."""
        head = {"pack": self.pack, "template": self.template, "method": self.method,
                "seed": self.seed, "measured_on": self.measured_on}
        lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        ranges = [f"  {json.dumps(k)}: {json.dumps([low, high])}"
                  for k, (low, high) in self.ranges.items()]
        lines += [' "ranges": {', ",\n".join(ranges), " },"] if ranges else [' "ranges": {},']
        faces = [f"  {json.dumps([rel, list(points)])}" for rel, points in self.faces]
        lines += [' "faces": [', ",\n".join(faces), " ]", "}"]
        return "\n".join(lines) + "\n"

    def save(self, path: Path | None = None) -> Path:
        path = path or self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def record_path(pack: str) -> Path:
    return RECORDS / f"{pack}.json"


def load_record(pack: str, path: Path | None = None) -> CalibrationRecord | None:
    path = path or record_path(pack)
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return CalibrationRecord(
        file=path,
        pack=data["pack"], template=data["template"], method=data["method"],
        seed=int(data["seed"]), measured_on=data.get("measured_on", ""),
        faces=[(rel, [float(v) for v in points]) for rel, points in data["faces"]],
        ranges={k: (float(low), float(high)) for k, (low, high) in data["ranges"].items()})


def choose_faces(count: int, seed: int = 0) -> list[tuple[str, list[float]]]:
    """A seeded sample of training faces through the app's detector, as recorded."""
    from faceapp.core.detect import MTCNNDetector

    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=20)
    root = shared_data_root()
    return [(str(path.relative_to(root)), [float(v) for v in np.asarray(points).reshape(-1)])
            for path, points in sample_train_faces(detector, count, seed)]


def faces_from_rows(paths: list[str], landmarks: np.ndarray) -> list[tuple[str, list[float]]]:
    """Recorded faces from rows of the distillation targets (paths under the data root)."""
    return [(rel, [float(v) for v in np.asarray(points, np.float32).reshape(-1)])
            for rel, points in zip(paths, landmarks)]


def this_machine() -> str:
    """CPU features that decide onnxruntime's kernels, and the versions that matter."""
    import onnxruntime

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = "avx512_vnni" if "avx512_vnni" in flags else "avx512f" if "avx512f" in flags \
        else "avx2" if "avx2" in flags else "other"
    return f"x86 {isa}, onnxruntime {onnxruntime.__version__}"


def range_gap(recorded: dict[str, tuple[float, float]],
              measured: dict[str, tuple[float, float]]) -> tuple[float, str]:
    """The largest difference between two sets of ranges, as a share of the recorded
    range's width, and the tensor where it is (inf when the tensors differ)."""
    if set(recorded) != set(measured):
        missing = sorted(set(recorded) ^ set(measured))
        return float("inf"), f"tensors differ: {', '.join(missing[:5])}"
    worst, where = 0.0, ""
    for name, (low, high) in recorded.items():
        m_low, m_high = measured[name]
        width = max(high - low, 1e-12)
        gap = max(abs(m_low - low), abs(m_high - high)) / width
        if gap > worst:
            worst, where = gap, name
    return worst, where


def teacher_record(pack: str, template: str, count: int, method: str = "minmax",
                   seed: int = 0, recalibrate: bool = False) -> CalibrationRecord:
    """The pack's record, or a new one (faces chosen now, ranges still to measure)
    when there is none, when asked to, or when it was made for other settings."""
    record = None if recalibrate else load_record(pack)
    if record is not None and (record.method, record.template, record.seed,
                               len(record.faces)) != (method, template, seed, count):
        print(f"{record.path.name}: recorded for {record.method}, {record.template}, "
              f"seed {record.seed}, {len(record.faces)} faces: calibrating anew",
              file=sys.stderr)
        record = None
    if record is None:
        record = CalibrationRecord(pack, template, method, seed, choose_faces(count, seed))
    return record


def settle_ranges(record: CalibrationRecord, fp32_path: Path, batch: np.ndarray,
                  keep_fp32: list[str], seven_bit_weights: bool = False,
                  adopt: Path | None = None) -> dict:
    """The ranges to quantize with: measured here on the record's faces and compared
    with the record (CalibrationMismatch beyond RANGE_TOLERANCE), or measured and
    recorded when the record has none yet. adopt: an int8 file of this network whose
    ranges are recorded instead (ranges_from_int8): the pack's own file, built before
    its calibration was recorded."""
    from faceapp.core.models import file_sha256

    from .export import measure_ranges

    measured = measure_ranges(fp32_path, batch, record.method, keep_fp32, seven_bit_weights)
    if adopt is not None:
        record.ranges = dict(sorted(ranges_from_int8(adopt, measured).items()))
        gap, where = range_gap(record.ranges, measured)
        record.measured_on = (f"ranges read back from the scales and zero points of the "
                              f"int8 file {file_sha256(adopt)[:12]}, within {gap:.1e} of a "
                              f"range of those measured on these faces ({this_machine()})")
        if gap > RANGE_TOLERANCE:  # a record that the next refresh would refuse
            raise CalibrationMismatch(
                f"{adopt} was not calibrated on faces like these: its ranges differ from "
                f"those measured here by {gap:.2%} of a range ({where}); nothing recorded")
        print(f"calibration recorded in {record.save()}: {record.measured_on}: commit it",
              file=sys.stderr)
        return record.ranges
    if not record.ranges:
        record.ranges = measured
        record.measured_on = this_machine()
        print(f"calibration recorded in {record.save()} ({len(record.faces)} faces, "
              f"{len(measured)} tensors): commit it", file=sys.stderr)
        return record.ranges
    gap, where = range_gap(record.ranges, measured)
    print(f"calibration: the ranges measured here are within {gap:.1e} of a range of "
          f"those recorded in trainer/calibration/{record.path.name} (recorded on "
          f"{record.measured_on or '?'}; here {this_machine()})", file=sys.stderr)
    if gap > RANGE_TOLERANCE:
        raise CalibrationMismatch(
            f"{record.pack}: the activation ranges measured here differ from the recorded "
            f"calibration by {gap:.2%} of a range ({where}): the network or the faces "
            "changed since it was recorded. Run again with --recalibrate to record "
            "the calibration of this network (and commit it).")
    return record.ranges


def ranges_from_int8(int8_path: Path, measured: dict[str, tuple[float, float]]) -> dict:
    """The ranges an int8 file was quantized with, read back from its scales and zero
    points: for each quantized tensor the range nearest to `measured` that gives
    exactly the file's scale and zero point (onnxruntime's compute_scale_zp, uint8).
    Tensors the file does not quantize keep their measured range. With these ranges
    quantization writes that file again, byte for byte: how a pack built before its
    calibration was recorded (on a machine nobody knows) gets a record."""
    import onnx
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8_path)).graph.initializer}

    def gives(rmin, rmax, scale, zero) -> bool:
        low, high = min(np.float64(rmin), 0.0), max(np.float64(rmax), 0.0)
        step = (high - low) / 255.0
        return step > 0 and np.float32(step) == scale and int(np.round(-low / step)) == zero

    def around(value, count):
        out, up, down = [np.float32(value)], np.float32(value), np.float32(value)
        for _ in range(count):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            out += [up, down]
        return out

    ranges = {}
    for name, (low, high) in measured.items():
        if name + "_scale" not in init or init[name + "_scale"].ndim != 0:
            ranges[name] = (low, high)
            continue
        scale = np.float32(init[name + "_scale"])
        zero = int(init[name + "_zero_point"])
        lows = [np.float32(low)]
        if zero:  # any low within half a step of -zero * scale gives that zero point
            lows += [np.float32(-(zero + d) * np.float64(scale))
                     for d in np.linspace(-0.49, 0.49, 99)]
        best = None
        for rmin in lows:
            if zero == 0 and rmin < 0:
                continue
            top = np.float64(min(rmin, 0)) + 255 * np.float64(scale)
            for rmax in [np.float32(high)] + around(top, 64):
                if gives(rmin, rmax, scale, zero):
                    distance = abs(float(rmin) - low) + abs(float(rmax) - high)
                    if best is None or distance < best[0]:
                        best = (distance, float(rmin), float(rmax))
                    break
        if best is None:
            raise ValueError(f"{int8_path}: no range gives the scale and zero point of {name}")
        ranges[name] = (best[1], best[2])
    return ranges
