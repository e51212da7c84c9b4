"""Reading images: every bad file gets a clear ImageError or the right pixels."""

import time

import cv2
import numpy as np
import pytest

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


def test_absurd_declared_size_is_refused_without_decoding():
    # A PNG header claiming 100000 x 100000 pixels, and nothing behind it.
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (100000).to_bytes(4, "big") * 2
    with pytest.raises(ImageError, match="too large"):
        decode_image(header + b"\x08\x02\x00\x00\x00", "bomb.png")


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
