"""Write tests/data/dlib_golden.json: dlib's own descriptors for a few real faces.

Run with a Python that has dlib (built from source; never a project dependency),
numpy and opencv-python-headless, from the repository root:

    /path/to/dlib-venv/bin/python bench/make_dlib_golden.py [--data ../shared/data]

For each face: dlib's HOG frontal detector (upsample 1) and 5-point shape predictor
give dlib's face-chip details (size 150, padding 0.25), which we turn into the 2x3
affine matrix M mapping image coordinates to chip coordinates. The chip is built with
cv2.warpAffine(rgb, M, (150, 150), INTER_LINEAR, BORDER_CONSTANT) -- exactly what
tests/test_teacher.py rebuilds -- and dlib's descriptor of THAT chip is stored, so the
test compares networks on identical input. dlib's own get_face_chip is also computed,
only to report how closely the warpAffine chip reproduces it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import sys
import tarfile
from pathlib import Path

import cv2
import dlib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "dlib_golden.json"
CHIP_SIZE, PADDING = 150, 0.25

# Single-face photos (dlib's HOG detector finds exactly one face in each), two of them
# the same person (img16/img17: a "Yes" pair in master.csv), plus one face of couple.jpg.
PHOTOS = ["img5.jpg", "img10.jpg", "img16.jpg", "img17.jpg", "img20.jpg"]
COUPLE = "couple.jpg"

# Where the project's trainer keeps the pinned upstream archive (trainer/upstream.py);
# read directly so this script does not import the project.
SDIST = Path.home() / ".cache" / "faceapp-trainer" / "face_recognition_models-0.3.0.tar.gz"
MODELS = "face_recognition_models-0.3.0/face_recognition_models/models/"


def model_file(name: str, tmp: Path) -> Path:
    out = tmp / name
    if not out.exists():
        with tarfile.open(SDIST, "r:gz") as tf:
            out.write_bytes(tf.extractfile(MODELS + name).read())
    return out


def image_to_chip_matrix(details) -> np.ndarray:
    """The 2x3 matrix M with chip = M @ [x, y, 1] for dlib's chip_details.

    dlib (get_mapping_to_chip) rotates the chip rectangle's corners by `angle` about
    its centre and maps top-left, top-right, bottom-right to (0, 0), (cols-1, 0),
    (cols-1, rows-1); three point pairs fix the affine map exactly.
    """
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    ca, sa = math.cos(details.angle), math.sin(details.angle)

    def rot(x, y):
        dx, dy = x - cx, y - cy
        return (ca * dx - sa * dy + cx, sa * dx + ca * dy + cy)

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()),
                    rot(r.right(), r.bottom())], np.float64)
    dst = np.array([[0, 0], [details.cols - 1, 0],
                    [details.cols - 1, details.rows - 1]], np.float64)
    return np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst).T  # 2 x 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tmp", type=Path, default=Path("/work/tmp"))
    args = parser.parse_args()
    args.tmp.mkdir(parents=True, exist_ok=True)

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat",
                                                    args.tmp)))
    facerec = dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat", args.tmp)))

    faces = []
    for name in PHOTOS + [COUPLE]:
        rel = f"samples/photos/{name}"
        bgr = cv2.imread(str(args.data / rel), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        dets = list(detector(rgb, 1))
        if name == COUPLE:
            if len(dets) < 2:
                raise SystemExit(f"{rel}: expected two faces, dlib found {len(dets)}")
            det = min(dets, key=lambda d: d.left())  # the left-hand face
        else:
            if len(dets) != 1:
                raise SystemExit(f"{rel}: expected one face, dlib found {len(dets)}")
            det = dets[0]
        shape = predictor(rgb, det)
        details = dlib.get_face_chip_details(shape, CHIP_SIZE, PADDING)
        m = image_to_chip_matrix(details)
        chip = cv2.warpAffine(rgb, m, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        descriptor = np.array(facerec.compute_face_descriptor(chip), np.float64)

        # How well does the warpAffine chip reproduce dlib's own chip?
        dlib_chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=PADDING)
        inner = (slice(1, -1), slice(1, -1))  # dlib leaves the last row/col black
        pix = np.abs(dlib_chip.astype(int) - chip.astype(int))[inner]
        dlib_desc = np.array(facerec.compute_face_descriptor(dlib_chip), np.float64)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        face_px = (details.rect.right() - details.rect.left())
        print(f"{rel:28s} face rect {det.width()}px, chip window {face_px:.0f}px: "
              f"chip vs dlib.get_face_chip max |d| {pix.max()}, mean {pix.mean():.3f}; "
              f"descriptor distance {np.linalg.norm(descriptor - dlib_desc):.4f}")

        faces.append({
            "photo": rel,
            "detection": [det.left(), det.top(), det.right(), det.bottom()],
            "shape5": pts.round(3).tolist(),
            "M": m.tolist(),
            "chip_sha256": hashlib.sha256(chip.tobytes()).hexdigest(),
            "descriptor": [float(v) for v in descriptor],
        })

    d = np.array([f["descriptor"] for f in faces])
    print("pairwise dlib distances:\n", np.round(
        np.linalg.norm(d[:, None] - d[None], axis=2), 3))

    golden = {
        "generator": "bench/make_dlib_golden.py",
        "date": datetime.date.today().isoformat(),
        "dlib_version": dlib.__version__,
        "opencv_version": cv2.__version__,
        "how": ("dlib.get_frontal_face_detector() (upsample 1) + "
                "shape_predictor_5_face_landmarks.dat -> dlib.get_face_chip_details("
                f"shape, {CHIP_SIZE}, {PADDING}) -> M (image->chip, from the rotated chip "
                "rect as dlib's get_mapping_to_chip) -> chip = cv2.warpAffine(rgb, M, "
                "(150, 150), INTER_LINEAR, BORDER_CONSTANT) -> descriptor = "
                "dlib.face_recognition_model_v1(dlib_face_recognition_resnet_model_v1.dat)"
                ".compute_face_descriptor(chip)"),
        "photos_relative_to": "shared/data (../shared/data from the repository root)",
        "distance_threshold": 0.6,
        "faces": faces,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(faces)} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
