"""Reading images: every bad file gets a clear ImageError or the right pixels."""

import io
import resource
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from faceapp.core.imageio import MAX_PIXELS, ImageError, as_rgb8, decode_image, load_image


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_reads_jpeg_as_rgb(photos):
    image = load_image(photos / "img1.jpg")
    bgr = cv2.imread(str(photos / "img1.jpg"))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    np.testing.assert_array_equal(image, bgr[:, :, ::-1])


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is a text file, not a photo\n", "not a readable image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not a readable image"),
])
def test_bad_files_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_truncated_jpeg_gives_error_or_full_size_image(tmp_path, photos):
    data = (photos / "img1.jpg").read_bytes()
    expected = load_image(photos / "img1.jpg").shape
    for fraction in (0.05, 0.5, 0.9):
        path = tmp_path / f"cut{fraction}.jpg"
        path.write_bytes(data[: int(len(data) * fraction)])
        try:
            image = load_image(path)
        except ImageError as exc:
            assert str(path) in str(exc)
        else:
            assert image.shape == expected


def test_grey_rgba_and_16bit_pngs(tmp_path):
    grey = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    image = load_image(_write(tmp_path / "grey.png", grey))
    assert image.shape == (8, 256, 3)
    assert (image[:, :, 0] == grey).all() and (image[:, :, 2] == grey).all()

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200  # blue in OpenCV's BGRA order
    rgba[..., 3] = 10
    image = load_image(_write(tmp_path / "rgba.png", rgba))
    assert image.shape == (4, 5, 3) and (image[..., 2] == 200).all() and (image[..., 0] == 0).all()

    deep = np.full((3, 3), 65535, np.uint16)
    deep[0, 0] = 256
    image = load_image(_write(tmp_path / "deep.png", deep))
    assert image[1, 1, 0] == 255 and image[0, 0, 0] == 1


def test_one_pixel_image(tmp_path):
    assert load_image(_write(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))).shape == (1, 1, 3)


def test_huge_image_is_decoded_reduced_quickly(tmp_path):
    side = 12000
    assert side * side > MAX_PIXELS
    path = tmp_path / "huge.jpg"
    _write(path, np.full((side, side), 128, np.uint8))
    started = time.perf_counter()
    image = load_image(path)
    assert time.perf_counter() - started < 20
    assert image.shape[0] * image.shape[1] <= MAX_PIXELS
    assert image.shape[0] == image.shape[1] and image.shape[0] >= side // 8


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + \
        zlib.crc32(kind + body).to_bytes(4, "big")


def test_absurd_declared_size_is_refused_without_decoding():
    # A valid PNG header claiming 100000 x 100000 pixels, and nothing behind it.
    ihdr = (100000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    bomb = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageError, match="100000x100000 pixels is too large"):
        decode_image(bomb, "bomb.png")


def _patched(image: Image.Image, fmt: str, patch) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return patch(bytearray(buf.getvalue()))


def _tiff_size(data: bytearray, side: int) -> bytes:
    """A small TIFF whose ImageWidth and ImageLength tags say `side`."""
    offset = int.from_bytes(data[4:8], "little")
    for n in range(int.from_bytes(data[offset:offset + 2], "little")):
        entry = offset + 2 + 12 * n
        if int.from_bytes(data[entry:entry + 2], "little") in (256, 257):
            data[entry + 2:entry + 4] = (4).to_bytes(2, "little")  # LONG
            data[entry + 8:entry + 12] = side.to_bytes(4, "little")
    return bytes(data)


def _webp_size(data: bytearray, side: int) -> bytes:
    """A small lossless WebP whose VP8L header says side x side."""
    at = data.find(b"VP8L") + 9  # chunk id, size, signature byte
    bits = int.from_bytes(data[at:at + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (side - 1) | ((side - 1) << 14)
    data[at:at + 4] = bits.to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("fmt, patch, side", [
    ("TIFF", _tiff_size, 30000), ("WEBP", _webp_size, 16383)])
def test_decompression_bombs_of_every_format_are_refused_from_the_header(fmt, patch, side):
    """The pixel limit holds for TIFF and WebP too (they took 3.8 GB and 2 GB)."""
    data = _patched(Image.new("RGB", (8, 8), (9, 9, 9)), fmt,
                    lambda d: patch(d, side))
    assert Image.open(io.BytesIO(data)).size == (side, side)  # what the header declares
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageError, match=f"{side}x{side} pixels is too large for a {fmt}"):
        decode_image(data, f"bomb.{fmt.lower()}")
    assert time.perf_counter() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    """Phone photos are stored sideways with an EXIF Orientation tag: the app sees
    them upright, exactly as PIL.ImageOps.exif_transpose turns them."""
    rng = np.random.default_rng(orientation)
    pixels = cv2.resize(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8), (40, 24),
                        interpolation=cv2.INTER_NEAREST)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(pixels).save(path, quality=98, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = load_image(path)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 3


def test_as_rgb8_conversions():
    assert as_rgb8(np.ones((2, 2), np.float32)).max() == 255
    assert as_rgb8(np.zeros((2, 2, 1), np.uint8)).shape == (2, 2, 3)
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[..., 0] = 7
    assert as_rgb8(bgr, "BGR")[0, 0, 2] == 7
    with pytest.raises(ImageError):
        as_rgb8(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageError):
        as_rgb8(np.zeros((0, 4, 3), np.uint8))
