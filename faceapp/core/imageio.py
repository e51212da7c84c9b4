"""Reading images from disk and normalising arrays to 8-bit RGB.

Everything downstream (detector, aligner, embedder) works on HxWx3 uint8 RGB.
Bad files raise ImageError with a message a person can act on; they never crash
the caller or hang it. The size and EXIF orientation come from the header (Pillow,
every format) before anything is decoded: huge JPEGs are decoded at a fraction of
their size, other huge formats refused, so memory stays bounded; photos stored
sideways are turned upright.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# Larger images are decoded at 1/2, 1/4 or 1/8 scale (faces in them stay far above
# the detector's minimum size); beyond 8x that, they are refused.
MAX_PIXELS = 40_000_000
REDUCED_READS = ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (8, cv2.IMREAD_REDUCED_COLOR_8))
EXIF_ORIENTATION = 0x0112
# Pillow only reads headers here (OpenCV decodes); the size is checked below against
# MAX_PIXELS for every format, so Pillow's own check (which only says "too large",
# not how large) is switched off.
Image.MAX_IMAGE_PIXELS = None
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


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    format: str  # "JPEG", "PNG", "TIFF", "WEBP", ...
    orientation: int  # EXIF Orientation, 1 (as stored) to 8


def read_header(data: bytes) -> Header | None:
    """Size, format and EXIF orientation from the file's header, for every format
    Pillow knows, without decoding the pixels (None: not an image Pillow knows)."""
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            width, height = im.size
            try:
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
            except Exception:  # a damaged EXIF block must not stop the photo
                orientation = 1
            return Header(width, height, im.format or "?",
                          orientation if 1 <= orientation <= 8 else 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored sideways the way the camera's EXIF tag says (as
    PIL.ImageOps.exif_transpose does): phones store portraits rotated."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return np.ascontiguousarray(turned(image)) if turned else image


def decode_image_scaled(data: bytes, name: str = "image") -> tuple[np.ndarray, float]:
    """Encoded bytes -> (HxWx3 uint8 RGB upright, scale) or ImageError. scale > 1 when
    a huge JPEG was decoded at 1/2, 1/4 or 1/8 of its size: positions in the pixels
    times scale are positions in the file's image."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    header = read_header(data)
    flags, scale = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION, 1.0
    if header is not None and header.width * header.height > MAX_PIXELS:
        pixels = header.width * header.height
        # only JPEG can be decoded at a fraction of its size; other formats would need
        # all their pixels in memory first
        fitting = [(factor, flag) for factor, flag in REDUCED_READS
                   if pixels <= MAX_PIXELS * factor * factor] if header.format == "JPEG" else []
        if not fitting:
            limit = MAX_PIXELS * 64 if header.format == "JPEG" else MAX_PIXELS
            size = f"{header.width}x{header.height}"
            raise ImageError(f"{name}: {size} pixels is too large for a {header.format} "
                             f"(limit {limit // 1_000_000} megapixels); scale it down first")
        scale, reduced = fitting[0]
        flags = reduced | cv2.IMREAD_IGNORE_ORIENTATION
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        decoded = cv2.imdecode(buf, flags)
        if decoded is None:
            raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown "
                             "format)")
        if decoded.ndim == 3 and decoded.shape[2] == 4:
            decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
        elif decoded.ndim == 3 and decoded.shape[2] == 3:
            decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        if header is not None:
            decoded = apply_orientation(decoded, header.orientation)
        return as_rgb8(decoded), float(scale)
    except cv2.error as exc:  # e.g. out of memory inside a codec
        raise ImageError(f"{name}: cannot be decoded ({str(exc).strip().splitlines()[-1]})") \
            from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode it") from None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 RGB (upright), or ImageError."""
    return decode_image_scaled(data, name)[0]


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(HxWx3 uint8 RGB, scale) of an image file; see decode_image_scaled."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except MemoryError:
        raise ImageError(f"{path}: too large to read into memory") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return decode_image_scaled(data, str(path))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB, upright, or raise ImageError saying why."""
    return read_image(path)[0]
