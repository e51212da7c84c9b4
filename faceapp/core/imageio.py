"""Reading images from disk and normalising arrays to 8-bit RGB.

Everything downstream (detector, aligner, embedder) works on HxWx3 uint8 RGB.
Bad files raise ImageError with a message a person can act on; they never crash
the caller or hang it. Only regular files are read (a FIFO would wait for ever, a
link to /dev/zero never ends), and none larger than MAX_FILE_BYTES. The format is
told from the file's first bytes, as OpenCV picks its decoder, and the pixel size
and EXIF orientation are read from the header (Pillow, restricted to that format)
before anything is decoded: a format whose size cannot be read that way is refused,
huge JPEGs are decoded at a fraction of their size, other huge images refused, so
memory stays bounded; photos stored sideways are turned upright.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .filenames import display_name, special_kind

# Larger images are decoded at 1/2, 1/4 or 1/8 scale (faces in them stay far above
# the detector's minimum size); beyond 8x that, they are refused.
MAX_PIXELS = 40_000_000
REDUCED_READS = ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (8, cv2.IMREAD_REDUCED_COLOR_8))
# A photo is far smaller; a larger file is refused by its size before it is read.
MAX_FILE_BYTES = 200 << 20
EXIF_ORIENTATION = 0x0112
# Pillow only reads headers here (OpenCV decodes); the size is checked below against
# the format's limit, so Pillow's own check (which only says "too large", not how
# large) is switched off.
Image.MAX_IMAGE_PIXELS = None
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")

# The formats OpenCV decodes, by the signatures its decoders check (the file's name
# plays no part): (signature test, name, Pillow formats that read its header). None:
# Pillow cannot read that header, so the size cannot be known before decoding.
_SIGNATURES = (
    (lambda d: d.startswith(b"\xff\xd8\xff"), "JPEG", ("JPEG", "MPO")),
    (lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), "PNG", ("PNG",)),
    (lambda d: d.startswith(b"BM"), "BMP", ("BMP",)),
    (lambda d: d[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), "TIFF", ("TIFF",)),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", "WEBP", ("WEBP",)),
    (lambda d: d.startswith((b"\0\0\0\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")),
     "JPEG2000", ("JPEG2000",)),
    (lambda d: d.startswith((b"GIF87a", b"GIF89a")), "GIF", ("GIF",)),
    (lambda d: d.startswith(b"\x59\xa6\x6a\x95"), "SUN", ("SUN",)),
    (lambda d: len(d) > 2 and d[:1] == b"P" and d[1:2] in b"123456f"
     and d[2:3].isspace(), "PPM", ("PPM",)),
    (lambda d: d[4:8] == b"ftyp" and (b"avif" in d[8:] or b"avis" in d[8:]), "AVIF",
     ("AVIF",)),
    (lambda d: d.startswith((b"#?RADIANCE", b"#?RGBE")), "Radiance HDR", None),
    (lambda d: d.startswith(b"PF") and d[2:3].isspace(), "colour PFM", None),
    (lambda d: d.startswith(b"P7"), "PAM", None),
    (lambda d: d.startswith(b"\x76\x2f\x31\x01"), "OpenEXR", None),
)
# The most pixels decoded per format: what decoding costs per pixel (measured peak,
# the codec's own buffers included: about 6 bytes for JPEG or PNG, 17 for JPEG 2000
# and AVIF) times this stays within about 250 MB, so one file never costs much more.
PIXEL_LIMITS = {"JPEG": MAX_PIXELS, "PNG": MAX_PIXELS, "BMP": MAX_PIXELS,
                "PPM": MAX_PIXELS, "SUN": MAX_PIXELS, "WEBP": 32_000_000,
                "GIF": 30_000_000, "TIFF": 25_000_000, "JPEG2000": 14_000_000,
                "AVIF": 14_000_000}
# Pillow keeps a Python object per TIFF strip or tile while reading the header (about
# 350 bytes each): a crafted 16 MB TIFF declaring 2 million strips took 740 MB.
MAX_TIFF_STRIPS = 1 << 17
_TIFF_STRIP_TAGS = (273, 279, 324, 325)  # Strip/TileOffsets, Strip/TileByteCounts


class ImageError(ValueError):
    """An image could not be used; the message says why (`reason`: without the name)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def _refuse(name: str, reason: str) -> ImageError:
    return ImageError(f"{name}: {reason}", reason)


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"


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
    mode: str = ""  # Pillow's mode: "RGB", "L", "F", ...


def sniff_format(data: bytes) -> tuple[str, tuple[str, ...] | None] | None:
    """(format, Pillow formats that read its header or None) of the decoder OpenCV
    would use for these bytes, or None when OpenCV has none for them."""
    head = bytes(data[:64])
    for test, name, pillow in _SIGNATURES:
        if test(head):
            return name, pillow
    return None


def tiff_strip_count(data: bytes) -> int:
    """The most strips or tiles the first directory of a TIFF declares, from the
    counts in its fixed 12-byte (BigTIFF: 20-byte) entries; the values are not read.
    0 when the directory cannot be found (Pillow then says what is wrong)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    entry, size = (order + "HHQ", 20) if big else (order + "HHI", 12)
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (entries,) = struct.unpack_from(order + "Q", data, offset)
            offset += 8
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (entries,) = struct.unpack_from(order + "H", data, offset)
            offset += 2
        most = 0
        for i in range(min(entries, (len(data) - offset) // size)):
            tag, _, count = struct.unpack_from(entry, data, offset + i * size)
            if tag in _TIFF_STRIP_TAGS:
                most = max(most, count)
        return most
    except struct.error:
        return 0


def read_header(data: bytes, formats: tuple[str, ...] | None = None) -> Header | None:
    """Size, format and EXIF orientation from the file's header, without decoding the
    pixels (None: not an image Pillow reads). formats: only these Pillow formats are
    tried (the one the signature names), so Pillow and OpenCV read the same format."""
    try:
        with Image.open(io.BytesIO(data), formats=list(formats) if formats else None) as im:
            width, height = im.size  # lazy: Pillow has read the header only
            # a PNG's EXIF after its pixels is found only by decoding them all
            # (Pillow's getexif would): read it only when it came before them
            if im.format == "PNG" and "exif" not in im.info:
                orientation = 1
            else:
                try:
                    orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
                except Exception:  # a damaged EXIF block must not stop the photo
                    orientation = 1
            return Header(width, height, im.format or "?",
                          orientation if 1 <= orientation <= 8 else 1, im.mode)
    except MemoryError:
        return None
    except Exception:  # any parser error on hostile bytes: not a header Pillow reads
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


def probe_header(data: bytes, name: str) -> Header:
    """The header of a format OpenCV decodes, read before any pixel, or ImageError."""
    sniffed = sniff_format(data)
    if sniffed is None:
        raise _refuse(name, "not a readable image (corrupt, truncated or unknown format)")
    kind, pillow = sniffed
    if pillow is None:
        raise _refuse(name, f"{_a(kind)} image: cannot tell its size from its header, so "
                            "it is not decoded (convert it to JPEG or PNG)")
    if kind == "TIFF" and tiff_strip_count(data) > MAX_TIFF_STRIPS:
        raise _refuse(name, f"a TIFF of more than {MAX_TIFF_STRIPS} strips or tiles: "
                            "not a photo faceapp reads")
    header = read_header(data, pillow)
    if header is None or header.format not in pillow:
        raise _refuse(name, f"not a readable image (a damaged {kind} header: cannot tell "
                            "its size)")
    if header.width < 1 or header.height < 1:
        raise _refuse(name, "the image is empty")
    return header


def decode_image_scaled(data: bytes, name: str = "image",
                        reduce: int = 1) -> tuple[np.ndarray, float]:
    """Encoded bytes -> (HxWx3 uint8 RGB upright, scale) or ImageError. scale > 1 when
    a huge JPEG was decoded at 1/2, 1/4 or 1/8 of its size: positions in the pixels
    times scale are positions in the file's image. reduce: a JPEG is decoded at the
    first of those fractions that is at least 1/reduce smaller (the codec skips the
    fine detail: a 12-megapixel photo takes about half the time at 1/2, 40% at 1/4),
    for callers that need only large features; other formats ignore it."""
    if not data:
        raise _refuse(name, "the file is empty")
    header = probe_header(data, name)
    # 8-bit colour straight from the codec (it converts row by row): a 16-bit or
    # alpha image costs no more than a plain one
    flags, scale = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, 1.0
    if header.mode == "F":  # float grey (TIFF, PFM): OpenCV would not scale it to 8 bits
        flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    limit = PIXEL_LIMITS.get(header.format, MAX_PIXELS)
    pixels = header.width * header.height
    if pixels > limit:
        # only JPEG can be decoded at a fraction of its size; other formats would need
        # all their pixels in memory first
        jpeg = header.format in ("JPEG", "MPO")
        fitting = [(factor, flag) for factor, flag in REDUCED_READS
                   if pixels <= limit * factor * factor] if jpeg else []
        if not fitting:
            most = limit * 64 if jpeg else limit
            size = f"{header.width}x{header.height}"
            kind = "JPEG" if jpeg else header.format
            raise _refuse(name, f"{size} pixels is too large for {_a(kind)} "
                                f"(limit {most // 1_000_000} megapixels); scale it down first")
        scale, reduced = fitting[0]
        flags = reduced | cv2.IMREAD_IGNORE_ORIENTATION
    if reduce > scale and header.format in ("JPEG", "MPO"):
        scale, reduced = next(((factor, flag) for factor, flag in REDUCED_READS
                               if factor >= reduce), REDUCED_READS[-1])
        flags = reduced | cv2.IMREAD_IGNORE_ORIENTATION
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        decoded = cv2.imdecode(buf, flags)
        if decoded is None:
            raise _refuse(name, "not a readable image (corrupt, truncated or unknown format)")
        if decoded.ndim == 3 and decoded.shape[2] == 3:
            cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=decoded)  # in place: no copy
        elif decoded.ndim == 3 and decoded.shape[2] == 4:
            decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
        decoded = apply_orientation(decoded, header.orientation)
        return as_rgb8(decoded), float(scale)
    except cv2.error as exc:  # e.g. out of memory inside a codec
        raise _refuse(name, f"cannot be decoded ({str(exc).strip().splitlines()[-1]})") \
            from None
    except MemoryError:
        raise _refuse(name, "not enough memory to decode it") from None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 RGB (upright), or ImageError."""
    return decode_image_scaled(data, name)[0]


def read_file(path: str | bytes | os.PathLike, limit: int | None = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, or ImageError naming it. FIFOs, devices and sockets
    (and links to them) are refused unopened: their stat says what they are. The file
    is then opened without blocking and its descriptor checked again, so one swapped
    in between is refused too. limit: larger files are refused by their size."""
    name = display_name(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        gone = "a link to nothing" if os.path.islink(path) else "no such file"
        raise _refuse(name, gone) from None
    except OSError as exc:
        raise _refuse(name, f"cannot be read ({exc.strerror or exc})") from None

    def check(st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise _refuse(name, "is a folder, not an image")
        kind = special_kind(st.st_mode)
        if kind:
            raise _refuse(name, f"{kind}, not a photo file: left unread")
        if limit is not None and st.st_size > limit:
            raise _refuse(name, f"{st.st_size / (1 << 20):.0f} MB is too large for a photo "
                                f"(limit {limit >> 20} MB)")

    check(st)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _refuse(name, f"cannot be read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        check(st)
        # what fstat says now: a file still growing is read as far as that
        size, chunks, got = st.st_size, [], 0
        while got < size:
            chunk = os.read(fd, size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except MemoryError:
        raise _refuse(name, "too large to read into memory") from None
    except OSError as exc:
        raise _refuse(name, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_image(path: str | bytes | os.PathLike) -> tuple[np.ndarray, float]:
    """(HxWx3 uint8 RGB, scale) of an image file; see decode_image_scaled."""
    return decode_image_scaled(read_file(path), display_name(path))


def load_image(path: str | bytes | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB, upright, or raise ImageError saying why."""
    return read_image(path)[0]
