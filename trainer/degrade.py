"""The degraded-quality LFW protocol (after the deployment seed's High/Low idea).

Each LFW pair image gets one "Low" version, made once with a fixed seed and cached:
the face shrunk to about 40 px wide and scaled back up, a Gaussian blur (sigma ~1)
and JPEG quality 20. The app's own detector then runs on the Low image, exactly as it
would on a poor camera frame. Every model is evaluated on the same files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from faceapp.core.imageio import load_image

from .data import shared_data_root
from .upstream import cache_dir

VERSION = "v1"
SEED = 20191124
FACE_WIDTH = 40.0  # pixels, after shrinking
BLUR_SIGMA = 1.0
JPEG_QUALITY = 20
# LFW's deep-funneled 250x250 images hold faces about 100 px wide; the face width is
# estimated per image as 2.1x the distance between the eyes when it is known.
EYES_TO_FACE_WIDTH = 2.1
DEFAULT_FACE_WIDTH = 100.0


def degrade_image(image: np.ndarray, face_width: float, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    factor = FACE_WIDTH * rng.uniform(0.9, 1.1) / max(face_width, FACE_WIDTH)
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                       interpolation=cv2.INTER_AREA)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    image = cv2.GaussianBlur(image, (0, 0), BLUR_SIGMA)
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return data


def degraded_lfw(images: list[str], clean_landmarks: np.ndarray | None = None) -> Path:
    """The folder of Low images (same relative names as LFW), built on first use."""
    out = cache_dir() / f"lfw-low-{VERSION}"
    done = out / ".complete"
    if done.exists():
        return out
    if clean_landmarks is None:
        from faceapp.core.detect import MTCNNDetector

        from .lfw import LFW_MIN_FACE, detect_landmarks
        detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=LFW_MIN_FACE)
        clean_landmarks, _ = detect_landmarks(detector, shared_data_root() / "lfw" / "images",
                                              images)
    rng = np.random.default_rng(SEED)
    root = shared_data_root() / "lfw" / "images"
    print(f"writing the degraded LFW images to {out}", file=sys.stderr)
    for rel, points in zip(images, clean_landmarks):
        eyes = float(np.linalg.norm(points[1] - points[0]))
        face_width = eyes * EYES_TO_FACE_WIDTH if eyes > 5 else DEFAULT_FACE_WIDTH
        data = degrade_image(load_image(root / rel), face_width, rng)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, target)
    done.write_text("ok\n")
    return out
