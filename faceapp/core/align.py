"""Face alignment: the one place where faces are warped.

A similarity transform (rotation, uniform scale, translation) maps the detector's
five points (left eye, right eye, nose tip, left and right mouth corner, "left" being
the smaller x in the image) onto a template in the crop. Model packs name the
template they were trained with in their manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Template:
    name: str
    size: tuple[int, int]  # (width, height) of the crop
    points: np.ndarray  # 5x2 float32, crop pixel coordinates
    description: str
    weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)  # of each point in the fit


TEMPLATES: dict[str, Template] = {
    # The template of the ArcFace/insightface family of embedders (112x112 crops).
    "arcface112": Template(
        name="arcface112",
        size=(112, 112),
        points=np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32),
        description="insightface's standard 5-point template for 112x112 crops",
    ),
    # dlib's 150x150 chip (get_face_chip, padding 0.25) expressed in MTCNN's points.
    # dlib aligns on eye corners and the base of the nose; these positions are the
    # mean of our detector's points mapped through dlib's own chip transform on 1,419
    # training faces (trainer/derive_template.py; spread 1.5 px at the eyes, 4 px at
    # the mouth), so our chips frame faces as dlib's do and the dlib ResNet sees what
    # it was trained on.
    "dlib150": Template(
        name="dlib150",
        size=(150, 150),
        points=np.array([[47.20, 45.23], [101.46, 45.23], [74.02, 77.07],
                         [50.77, 101.59], [97.58, 101.55]], dtype=np.float32),
        description="dlib's face chip (size 150, padding 0.25) framing, MTCNN landmarks",
        # dlib frames its chips from the eyes and the nose alone; fitting our mouth
        # corners too (they move with expression) costs 0.15 points on LFW.
        weights=(1.0, 1.0, 1.0, 0.0, 0.0),
    ),
}


# Smaller inputs for the distilled students: the same framing, scaled, so a student
# trained at 80x80 sees what one at 112x112 sees, with fewer pixels.
for _side in (96, 80, 64):
    TEMPLATES[f"arcface{_side}"] = Template(
        name=f"arcface{_side}",
        size=(_side, _side),
        # scaled about pixel centres: (p + 0.5) * s - 0.5
        points=((TEMPLATES["arcface112"].points + 0.5) * (_side / 112.0) - 0.5).astype(np.float32),
        description=f"insightface's 112x112 template scaled to {_side}x{_side}",
    )


# The students cut from the dlib ResNet (trainer/nets/dlib_derived.py) read its chip
# framing with fewer pixels.
for _side in (128, 112, 104):
    TEMPLATES[f"dlib{_side}"] = Template(
        name=f"dlib{_side}",
        size=(_side, _side),
        points=((TEMPLATES["dlib150"].points + 0.5) * (_side / 150.0) - 0.5).astype(np.float32),
        description=f"dlib's 150x150 chip framing scaled to {_side}x{_side}",
        weights=TEMPLATES["dlib150"].weights,
    )


# The gallery keeps each face on a wider canvas than any model's crop (dlib's chip
# framing scaled to put the eyes 64 px apart, centred in 256 px), together with its
# landmarks inside that canvas: any template can be cut from it later, so switching
# models re-embeds stored faces without the original photos.
STORAGE_SIZE = 256
_dlib = TEMPLATES["dlib150"]
_storage_scale = 64.0 / float(np.linalg.norm(_dlib.points[1] - _dlib.points[0]))
TEMPLATES["storage256"] = Template(
    name="storage256",
    size=(STORAGE_SIZE, STORAGE_SIZE),
    points=((_dlib.points - 75.0) * _storage_scale + STORAGE_SIZE / 2).astype(np.float32),
    description="the gallery's stored face canvas: dlib framing with a wide margin",
    weights=_dlib.weights,
)


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown alignment template '{name}' "
                         f"(known: {', '.join(TEMPLATES)})") from None


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights=None) -> np.ndarray:
    """Weighted least-squares similarity (Umeyama, no reflection) mapping src onto dst."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    src_mean, dst_mean = w @ src, w @ dst
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = (dst_c * w[:, None]).T @ src_c
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    src_var = float(w @ (src_c ** 2).sum(axis=1))
    scale = (s * d).sum() / src_var if src_var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def alignment_matrix(landmarks: np.ndarray, template: str | Template) -> np.ndarray:
    tpl = template if isinstance(template, Template) else get_template(template)
    return similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), tpl.points,
                                tpl.weights)


def warp_face(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp with bilinear sampling; shrink first when the face is much larger than the
    crop, since bilinear sampling alone aliases when it skips pixels."""
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        # Crop the region the output reads from, shrink it with area averaging so the
        # remaining warp scales by ~0.5 at most, and fold both steps into the matrix.
        inverse = cv2.invertAffineTransform(matrix)
        w, h = size
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64)
        region = corners @ inverse.T
        x0 = int(max(0, np.floor(region[:, 0].min()) - 2))
        y0 = int(max(0, np.floor(region[:, 1].min()) - 2))
        x1 = int(min(image.shape[1], np.ceil(region[:, 0].max()) + 2))
        y1 = int(min(image.shape[0], np.ceil(region[:, 1].max()) + 2))
        if x1 > x0 and y1 > y0:
            shrink = 2.0 * scale
            roi = image[y0:y1, x0:x1]
            new_w = max(1, int(round(roi.shape[1] * shrink)))
            new_h = max(1, int(round(roi.shape[0] * shrink)))
            roi = cv2.resize(roi, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
            # pixel centres: p_small = (p - x0 + 0.5) * f - 0.5
            to_roi = np.array([[fx, 0, (0.5 - x0) * fx - 0.5],
                               [0, fy, (0.5 - y0) * fy - 0.5],
                               [0, 0, 1]])
            matrix = matrix @ np.linalg.inv(to_roi)
            image = roi
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align_face(image: np.ndarray, landmarks: np.ndarray,
               template: str | Template = "arcface112") -> np.ndarray:
    """One aligned crop (H x W x 3, same dtype and channel order as the image)."""
    tpl = template if isinstance(template, Template) else get_template(template)
    return warp_face(image, alignment_matrix(landmarks, tpl), tpl.size)


def align_faces(image: np.ndarray, landmarks_list, template: str | Template) -> np.ndarray:
    """N aligned crops as one N x H x W x 3 array (N may be 0)."""
    tpl = template if isinstance(template, Template) else get_template(template)
    w, h = tpl.size
    crops = np.zeros((len(landmarks_list), h, w, 3), dtype=np.uint8)
    for i, points in enumerate(landmarks_list):
        crops[i] = align_face(image, points, tpl)
    return crops


def storage_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face on the gallery's canvas, and its landmarks in canvas coordinates."""
    tpl = TEMPLATES["storage256"]
    matrix = alignment_matrix(landmarks, tpl)
    points = np.asarray(landmarks, np.float64).reshape(5, 2) @ matrix[:, :2].T + matrix[:, 2]
    return warp_face(image, matrix, tpl.size), points.astype(np.float32)
