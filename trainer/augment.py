"""Training-time degradation of student inputs (the deployment seed's augmentations).

Robust distillation: the teacher's target comes from the clean face; the student sees
a flipped, recoloured, blurred, shrunk, noisy or JPEG-compressed version of it and
must still land on the clean identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


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

    @classmethod
    def none(cls) -> "Augmentation":
        return cls(flip=0.0, color=0.0, gray=0.0, geometry=0.0, degrade=0.0)


def _color(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + rng.integers(-6, 7)) % 180  # hue (OpenCV: 0..179)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-30, 30)
    mean = img.mean()
    return np.clip((img - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)


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
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < aug.degrade:
        img = _degrade(img, rng, aug)
    return img, flipped
