"""A face the detector missed, from a box a person drew around it.

The detector runs again on the box's region only: the box grown by a margin, scaled
so that the box is BOX_SIDE pixels (a face below the app's smallest face size is then
well above the detector's), with permissive thresholds; when the upright region
gives no clear face, it is also tried turned by up to 90 degrees either way (a head
leaning far over, a person lying down) and the clearest face is taken. At each turn
the detection that best overlaps the box gives the five points, mapped back to the
photo, and the face is then aligned and checked as an enrolment photo is
(Enroller.prepare), so it is saved through the same path (Enroller.save).

The detection's score is not held against the face (the person said it is one), but
every other enrolment check is: a face too small, blurred, turned or dark is refused
with the same words. Without a face and its five points inside the box nothing is
made: aligning a guess would store a wrong face under someone's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .align import warp_face
from .detect import Face, MTCNNDetector
from .enroll import EnrollError, Enroller, PreparedSample
from .imageio import as_rgb8

MARGIN = 0.35  # the region searched: the box grown by this share of its side, each way
BOX_SIDE = 160  # the box's longer side, in pixels, in the region the detector sees
MIN_SHARE = 0.3  # a face found must be at least this share of the box's longer side
INSIDE = 0.5  # and at least this share of the face must lie inside the box
# Permissive, for a face a person says is there (the detector's own: 0.6, 0.7, 0.7).
THRESHOLDS = (0.5, 0.6, 0.6)
ANGLES = (0.0, -30.0, 30.0, -60.0, 60.0, -90.0, 90.0)  # tried in this order
CLEAR = 0.9  # a face found with this score is taken without trying further turns
MIN_BOX = 8.0  # pixels: a smaller box is a slip of the mouse


class NoFaceInBox(EnrollError):
    """No face with its five points inside the box; the message says so plainly."""


@dataclass
class DrawnFace:
    face: Face  # box and landmarks in the photo's pixels
    angle: float  # degrees the region was turned for the detector to find it
    overlap: float  # intersection over union with the box drawn


def _iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(face, box) -> float:
    """The share of the face's box that lies inside `box`."""
    iw = min(face[2], box[2]) - max(face[0], box[0])
    ih = min(face[3], box[3]) - max(face[1], box[1])
    area = (face[2] - face[0]) * (face[3] - face[1])
    return max(iw, 0.0) * max(ih, 0.0) / area if area > 0 else 0.0


def clean_box(box, shape) -> tuple[float, float, float, float]:
    """The box as x1 < x2, y1 < y2 inside the image; NoFaceInBox if nothing is left."""
    x1, x2 = sorted(float(v) for v in (box[0], box[2]))
    y1, y2 = sorted(float(v) for v in (box[1], box[3]))
    h, w = shape[:2]
    x1, x2 = np.clip([x1, x2], 0, w)
    y1, y2 = np.clip([y1, y2], 0, h)
    if not np.isfinite([x1, y1, x2, y2]).all() or min(x2 - x1, y2 - y1) < MIN_BOX:
        raise NoFaceInBox("the box is too small: drag it around the whole face")
    return float(x1), float(y1), float(x2), float(y2)


def region_detector(detector: MTCNNDetector, min_face: int) -> MTCNNDetector:
    """The app's detector nets with permissive thresholds, for one small region: it
    shares the loaded nets (and changes nothing of the detector the app uses)."""
    return MTCNNDetector(detector.pack, detector.sessions, min_face=min_face,
                         thresholds=THRESHOLDS, threads=1)


def _best_in_box(search: MTCNNDetector, region: np.ndarray, to_region: np.ndarray,
                 angle: float, wanted, smallest: float) -> DrawnFace | None:
    """The face in the region turned by angle that best overlaps the box (photo
    pixels), if any is big enough and mostly inside it."""
    out = region.shape[1]
    turn = cv2.getRotationMatrix2D((out / 2, out / 2), angle, 1.0)
    seen = region if angle == 0 else cv2.warpAffine(
        region, turn, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=0)
    # the detector's pixels (region, turned) -> the photo's pixels
    back = np.linalg.inv(np.vstack([turn, [0, 0, 1]]) @ np.vstack([to_region, [0, 0, 1]]))
    back = back[:2]
    best = None
    for found in search.detect(seen):
        x1, y1, x2, y2 = (float(v) for v in found.box)
        corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]) @ back[:, :2].T + back[:, 2]
        face_box = (*corners.min(axis=0), *corners.max(axis=0))
        size = found.width * float(np.sqrt(abs(np.linalg.det(back[:, :2]))))
        if size < smallest or _inside(face_box, wanted) < INSIDE:
            continue
        overlap = _iou(face_box, wanted)
        if best is None or overlap > best.overlap:
            points = found.landmarks.astype(np.float64) @ back[:, :2].T + back[:, 2]
            face = Face(box=np.asarray(face_box, np.float32), score=float(found.score),
                        landmarks=points.astype(np.float32))
            best = DrawnFace(face, angle, overlap)
    return best


def find_face_in_box(detector: MTCNNDetector, image: np.ndarray, box) -> DrawnFace:
    """The face inside a box drawn on an RGB image, with its five points in the
    image's pixels; NoFaceInBox when there is none."""
    image = as_rgb8(image)
    x1, y1, x2, y2 = clean_box(box, image.shape)
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = side * (0.5 + MARGIN)
    # the region around the box (zero outside the photo), scaled so the box is BOX_SIDE
    f = BOX_SIDE / side
    out = int(round(2 * half * f))
    to_region = np.array([[f, 0.0, (half - cx) * f], [0.0, f, (half - cy) * f]])
    region = warp_face(image, to_region, (out, out))  # (shrinks a large face without aliasing)
    search = region_detector(detector, max(detector.cell, int(BOX_SIDE * MIN_SHARE * 0.8)))
    wanted = (x1, y1, x2, y2)
    chosen = None
    for angle in ANGLES:
        found = _best_in_box(search, region, to_region, angle, wanted, side * MIN_SHARE)
        if found is not None and (chosen is None or found.face.score > chosen.face.score):
            chosen = found
        if chosen is not None and chosen.face.score >= CLEAR:
            break  # clearly a face: no need to look at it turned
    if chosen is not None:
        return chosen
    raise NoFaceInBox("no face was found inside the box (draw it around one face, from "
                      "the forehead to the chin; a face too hidden or blurred cannot be "
                      "used)")


def prepare_drawn_face(enroller: Enroller, image: np.ndarray, box,
                       source: str) -> PreparedSample:
    """The face in a drawn box, aligned and checked as an enrolment photo is, ready for
    Enroller.review and Enroller.save (EnrollError says why not)."""
    image = as_rgb8(image)
    drawn = find_face_in_box(enroller.pipeline.detector, image, box)
    checker = Enroller(enroller.pipeline, enroller.gallery,
                       replace(enroller.policy, min_detection_score=0.0))
    return checker.prepare(image, source, face=drawn.face)
