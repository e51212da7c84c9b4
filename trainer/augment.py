"""Training-time augmentation of student inputs (the deployment seed's augmentations).

Robust distillation: the teacher's target comes from the clean face; the student sees
a flipped, recoloured, blurred, shrunk, noisy or JPEG-compressed version of it and
must still land on the clean identity.

Consistent teaching (`paired_views`): with the teacher running during training, both
networks see the same augmented face (the same jitter, blend with another face, flip
and colours), each in its own framing, so every step shows the student a new input
with its true target instead of the same 26k cached ones. Only the poor-image chain
stays the student's alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceapp.core.align import alignment_matrix


@dataclass(frozen=True)
class Augmentation:
    flip: float = 0.5  # probability of each step
    color: float = 0.5
    gray: float = 0.05
    geometry: float = 0.3  # small shift/scale/rotation: landmark noise
    degrade: float = 0.5  # the poor-image chain below (any of its steps)
    downscale: tuple[float, float] = (0.3, 0.8)  # of the crop side
    blur_sigma: tuple[float, float] = (0.4, 1.6)
    jpeg_quality: tuple[int, int] = (15, 60)
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    mixup: float = 0.0  # blend with another face (needs the teacher on the same blend)
    mixup_share: float = 0.5  # the other face's largest share of the blend

    @classmethod
    def none(cls) -> "Augmentation":
        return cls(flip=0.0, color=0.0, gray=0.0, geometry=0.0, degrade=0.0)


def _color_change(rng: np.random.Generator) -> tuple[int, float, float]:
    return int(rng.integers(-6, 7)), rng.uniform(0.7, 1.3), rng.uniform(-30, 30)


def _apply_color(img: np.ndarray, change: tuple[int, float, float],
                 pivot: float | None = None) -> np.ndarray:
    """Hue shift, then contrast about `pivot` (default: the image's mean), then brightness."""
    hue, contrast, brightness = change
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + hue) % 180  # OpenCV hue: 0..179
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    pivot = img.mean() if pivot is None else pivot
    return np.clip((img - pivot) * contrast + pivot + brightness, 0, 255).astype(np.uint8)


def _color(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _apply_color(img, _color_change(rng))


def _gray(img: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def _geometry(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-4, 4), rng.uniform(0.95, 1.05))
    matrix[:, 2] += rng.uniform(-0.025, 0.025, 2) * w
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def _degrade(img: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    h, w = img.shape[:2]
    if rng.random() < 0.6:
        f = rng.uniform(*aug.downscale)
        small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))),
                           interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*aug.blur_sigma))
    if rng.random() < 0.3:
        noise = rng.normal(0, rng.uniform(*aug.noise_sigma), img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        quality = int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1))
        ok, data = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(img)


def augment(crop: np.ndarray, rng: np.random.Generator,
            aug: Augmentation) -> tuple[np.ndarray, bool]:
    """One augmented copy of an aligned RGB crop, and whether it was mirrored
    (the caller then uses the teacher's embedding of the mirror)."""
    img = np.asarray(crop)
    flipped = bool(rng.random() < aug.flip)
    if flipped:
        img = img[:, ::-1]
    img = np.ascontiguousarray(img)
    if rng.random() < aug.geometry:
        img = _geometry(img, rng)
    if rng.random() < aug.color:
        img = _color(img, rng)
    if rng.random() < aug.gray:
        img = _gray(img)
    if rng.random() < aug.degrade:
        img = _degrade(img, rng, aug)
    return img, flipped


def _as3x3(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])


def chip_to_crop(landmarks: np.ndarray, chip_template, crop_template) -> np.ndarray:
    """The 2x3 similarity taking a face's pixels in one template's framing (the
    teacher's chip) to the same points in another's (the student's crop)."""
    to_chip = _as3x3(alignment_matrix(landmarks, chip_template))
    return alignment_matrix(landmarks, crop_template) @ np.linalg.inv(to_chip)


def _warp(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, matrix[:2], (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def paired_views(student: np.ndarray, teacher: np.ndarray, student_from_teacher: np.ndarray,
                 rng: np.random.Generator, aug: Augmentation,
                 partner: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The same augmented face for the student (its crop) and the teacher (its chip).

    student_from_teacher: the 2x3 similarity taking teacher-chip pixels to student-crop
    pixels for this face; a jitter drawn in the chip is carried into the crop through
    it, so both views show the same rotated, scaled and shifted face.
    partner: another face's (student crop, teacher chip), blended in when mixup fires.
    """
    s_view, t_view = np.asarray(student), np.asarray(teacher)
    if rng.random() < aug.geometry:
        side = t_view.shape[1]
        jitter = _as3x3(cv2.getRotationMatrix2D(
            ((side - 1) / 2, (side - 1) / 2), rng.uniform(-6, 6), rng.uniform(0.93, 1.07)))
        jitter[:2, 2] += rng.uniform(-0.03, 0.03, 2) * side
        to_student = _as3x3(student_from_teacher)
        t_view = _warp(t_view, jitter)
        s_view = _warp(s_view, to_student @ jitter @ np.linalg.inv(to_student))
    if partner is not None and rng.random() < aug.mixup:
        share = rng.uniform(0.0, aug.mixup_share)
        s_view = cv2.addWeighted(s_view, 1.0 - share, np.asarray(partner[0]), share, 0.0)
        t_view = cv2.addWeighted(t_view, 1.0 - share, np.asarray(partner[1]), share, 0.0)
    if rng.random() < aug.flip:
        s_view, t_view = s_view[:, ::-1], t_view[:, ::-1]
    s_view, t_view = np.ascontiguousarray(s_view), np.ascontiguousarray(t_view)
    if rng.random() < aug.color:
        change = _color_change(rng)
        pivot = float(t_view.mean())  # one pivot: the crop's hair and background differ
        s_view, t_view = _apply_color(s_view, change, pivot), _apply_color(t_view, change, pivot)
    if rng.random() < aug.gray:
        s_view, t_view = _gray(s_view), _gray(t_view)
    if rng.random() < aug.degrade:
        s_view = _degrade(s_view, rng, aug)
    return s_view, t_view
