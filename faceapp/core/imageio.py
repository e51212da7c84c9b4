"""Reading images from disk and normalising arrays to 8-bit RGB.

Everything downstream (detector, aligner, embedder) works on HxWx3 uint8 RGB.
Bad files raise ImageError with a message a person can act on; they never crash
the caller or hang it (huge images are refused before they are decoded).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# Larger images are decoded at 1/2, 1/4 or 1/8 scale (faces in them stay far above
# the detector's minimum size); beyond 8x that, they are refused.
MAX_PIXELS = 40_000_000
REDUCED_READS = ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (8, cv2.IMREAD_REDUCED_COLOR_8))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


class ImageError(ValueError):
    """An image could not be used; the message says why."""


def as_rgb8(image: np.ndarray, channel_order: str = "RGB") -> np.ndarray:
    """Any grey/RGB/RGBA, 8- or 16-bit or float array -> contiguous HxWx3 uint8 RGB."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected an image array, got {type(image).__name__}")
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"unsupported image shape {image.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError("the image is empty")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(arr)) <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if channel_order.upper() == "BGR":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG or JPEG header, without decoding the pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[i + 5:i + 7], "big")
                width = int.from_bytes(data[i + 7:i + 9], "big")
                return width, height
            i += 2 + length
    return None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 RGB, or ImageError."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    flags = cv2.IMREAD_UNCHANGED
    size = _declared_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        fitting = [flag for factor, flag in REDUCED_READS
                   if size[0] * size[1] <= MAX_PIXELS * factor * factor]
        if not fitting:
            raise ImageError(
                f"{name}: {size[0]}x{size[1]} pixels is too large "
                f"(limit {64 * MAX_PIXELS // 1_000_000} megapixels); scale it down first")
        flags = fitting[0]
    buf = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buf, flags)
    if decoded is None:
        raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)")
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    elif decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return as_rgb8(decoded)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB, or raise ImageError saying why not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return decode_image(data, str(path))
