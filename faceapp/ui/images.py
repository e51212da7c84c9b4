"""Conversions between numpy images (H x W x 3 uint8 RGB) and QImage.

QImage (unlike QPixmap) may be made in any thread, so workers hand finished QImages
to the GUI thread and it only paints them."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtGui import QImage


def to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (the array may be freed afterwards)."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image scaled down to fit max_side (never up), and the scale used."""
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def thumbnail(rgb: np.ndarray, side: int) -> QImage:
    return to_qimage(shrink(rgb, side)[0])


def jpeg_to_qimage(data: bytes | None) -> QImage:
    image = QImage()
    if data:
        image.loadFromData(data, "JPEG")
    return image
