"""Reading images: every bad file gets a clear ImageError or the right pixels."""

import io
import re
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


# ------------------------------------------------- hostile files (issue: the gallery
# survives every program beside it)

# Runs the command as its only child and prints that child's peak RSS (KB) last on
# stderr. A child's ru_maxrss starts at its parent's RSS (Linux carries it across
# fork and exec): measured from this small wrapper, not from pytest's own memory.
_MEASURE = ("import resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)\n")


def run_measured(args, timeout: float = 60, **kwargs):
    """Run a command: (CompletedProcess, its peak RSS in MB, seconds)."""
    import os
    import signal
    import subprocess
    import sys

    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", _MEASURE, *map(os.fspath, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, **kwargs)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise AssertionError(f"{args} still ran after {timeout} s") from None
    seconds = time.monotonic() - started
    err = err.decode("utf-8", "replace").rstrip("\n")
    err, _, peak_kb = err.rpartition("\n") if "\n" in err else ("", "", err)
    done = subprocess.CompletedProcess(args, child.returncode,
                                       out.decode("utf-8", "replace"), err)
    return done, int(peak_kb) / 1024, seconds


def write_huge_png(path, side: int, colour: bool = False):
    """A side x side PNG of zeros streamed through zlib: a few MB on disk, side^2
    (x3 in colour) bytes once decoded."""
    kind, channels = (2, 3) if colour else (0, 1)
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, kind, 0, 0, 0])
    row = bytes(side * channels + 1)
    packer = zlib.compressobj(1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr))
        for start in range(0, side, 1000):
            part = b"".join(packer.compress(row) for _ in range(min(1000, side - start)))
            if part:
                f.write(_png_chunk(b"IDAT", part))
        f.write(_png_chunk(b"IDAT", packer.flush()) + _png_chunk(b"IEND", b""))
    return path


def write_radiance_hdr(path, side: int):
    """A side x side Radiance HDR (a format Pillow cannot read), run-length encoded as
    its writers do: about 9 MB at 12000, 1.7 GB as OpenCV decodes it."""
    runs, left = b"", side
    while left:
        n = min(127, left)
        runs += bytes([128 + n, 100])
        left -= n
    line = bytes([2, 2, side >> 8, side & 255]) + runs * 4
    with open(path, "wb") as f:
        f.write(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {side} +X {side}\n".encode())
        for _ in range(side):
            f.write(line)
    return path


_LOAD_IN_CHILD = """
import sys
from faceapp.core.imageio import ImageError, load_image
try:
    print("decoded", load_image(sys.argv[1]).shape)
except ImageError as exc:
    print("refused", exc)
"""


def _load_in_child(path, timeout=60):
    import sys

    run, peak_mb, seconds = run_measured([sys.executable, "-c", _LOAD_IN_CHILD, str(path)],
                                         timeout=timeout)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    return run.stdout.strip(), peak_mb, seconds


def test_a_huge_png_and_an_hdr_named_jpg_are_refused_from_the_header(tmp_path):
    """A 30000 x 30000 PNG cost 3.6 GB and 15 s (its EXIF was looked for by decoding
    it); a 12000 x 12000 Radiance HDR named .jpg (Pillow cannot read its header, so no
    size was checked) took 5.6 GB. Both are refused under 500 MB, at once."""
    png = write_huge_png(tmp_path / "huge.png", 30000)
    said, peak_mb, seconds = _load_in_child(png)
    assert said.startswith("refused") and "30000x30000 pixels is too large for a PNG" in said
    assert str(png) in said
    assert peak_mb < 500 and seconds < 20, (peak_mb, seconds)

    hdr = write_radiance_hdr(tmp_path / "sunset.jpg", 12000)
    assert 8 << 20 < hdr.stat().st_size < 10 << 20
    said, peak_mb, seconds = _load_in_child(hdr)
    assert said.startswith("refused") and "cannot tell its size" in said, said
    assert "Radiance HDR" in said and str(hdr) in said
    assert peak_mb < 500 and seconds < 20, (peak_mb, seconds)


def test_a_tiff_declaring_millions_of_strips_is_refused_before_pillow_lists_them(tmp_path):
    """Pillow keeps an object per strip while reading a TIFF's header: a 16 MB file
    declaring 2 million strips took 740 MB before a pixel was decoded."""
    import struct

    count, side = 2_000_000, 4000
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, count, 130), (277, 3, 1, 1), (278, 4, 1, 1),
               (279, 4, count, 130 + 4 * count)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e)
                                                      for e in entries) + bytes(4)
    path = tmp_path / "strips.tif"
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd
                     + struct.pack("<I", 0) * count + struct.pack("<I", 1) * count)
    said, peak_mb, _ = _load_in_child(path)
    assert said.startswith("refused") and "strips or tiles" in said, said
    assert peak_mb < 200, peak_mb


@pytest.mark.parametrize("name, body, says", [
    ("radiance.png", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + bytes(64),
     "a Radiance HDR image: cannot tell its size"),
    ("pam.ppm", b"P7\nWIDTH 4\nHEIGHT 4\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n"
     + bytes(48), "a PAM image: cannot tell its size"),
    ("colour.pfm", b"PF\n4 4\n-1.0\n" + bytes(4 * 4 * 3 * 4), "a colour PFM image: cannot tell"),
    ("exr.jpg", b"\x76\x2f\x31\x01" + bytes(64), "an OpenEXR image: cannot tell"),
    ("jpeg.jpg", b"\xff\xd8\xff\xe0" + bytes(20), "not a readable image"),
], ids=["hdr", "pam", "pfm", "exr", "jpeg-without-header"])
def test_formats_whose_size_cannot_be_read_first_are_refused(tmp_path, name, body, says):
    """OpenCV picks its decoder by the first bytes, not the name: every format it
    decodes has its size read from the header first, or is refused undecoded."""
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(ImageError, match=says.replace("(", r"\(")) as refused:
        load_image(path)
    assert str(path) in str(refused.value)


@pytest.mark.parametrize("suffix, save", [
    (".jpg", "cv2"), (".png", "cv2"), (".bmp", "cv2"), (".tif", "cv2"), (".webp", "cv2"),
    (".jp2", "cv2"), (".ras", "cv2"), (".ppm", "cv2"), (".pgm", "cv2"), (".avif", "cv2"),
    (".gif", "pil"), (".pfm", "pil")])
def test_every_format_opencv_decodes_is_still_read(tmp_path, suffix, save):
    rng = np.random.default_rng(1)
    pixels = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (80, 60),
                        interpolation=cv2.INTER_NEAREST)
    path = tmp_path / f"photo{suffix}"
    if suffix in (".pgm",):
        pixels = pixels[:, :, :1].repeat(3, axis=2)
    if save == "cv2":
        assert cv2.imwrite(str(path), pixels[:, :, :1] if suffix == ".pgm" else pixels)
    elif suffix == ".pfm":
        Image.fromarray(pixels[:, :, 0].astype(np.float32) / 255, "F").save(path)
        pixels = pixels[:, :, :1].repeat(3, axis=2)
    else:
        Image.fromarray(pixels[:, :, ::-1]).save(path)
    image = load_image(path)
    assert image.shape == (60, 80, 3)
    if suffix in (".png", ".bmp", ".tif", ".webp", ".ras", ".ppm", ".pgm"):  # lossless
        np.testing.assert_array_equal(image, pixels[:, :, ::-1])
    else:
        assert np.abs(image.astype(int) - pixels[:, :, ::-1].astype(int)).mean() < 40


def test_special_files_are_refused_without_being_read(tmp_path):
    """A FIFO would wait for a writer for ever, /dev/zero never ends, a socket cannot
    be read: each is refused from its stat, naming it, at once."""
    import os
    import socket

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "z.jpg"
    os.symlink("/dev/zero", zero)
    sock = tmp_path / "s.jpg"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    dangling = tmp_path / "gone.jpg"
    os.symlink(tmp_path / "nothing-here", dangling)
    started = time.monotonic()
    try:
        for path, says in ((fifo, "a named pipe (FIFO)"), (zero, "a character device"),
                           (sock, "a socket"), (dangling, "a link to nothing")):
            with pytest.raises(ImageError, match=re.escape(says)) as refused:
                load_image(path)
            assert str(refused.value).startswith(f"{path}: "), refused.value
    finally:
        server.close()
    assert time.monotonic() - started < 2


def test_a_file_larger_than_a_photo_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:  # sparse: no disk used, 300 MB as stat says
        f.truncate(300 << 20)
    said, peak_mb, seconds = _load_in_child(big)
    assert said.startswith("refused") and "300 MB is too large for a photo" in said, said
    assert peak_mb < 150 and seconds < 20


def test_names_that_are_not_utf8_become_escaped_text():
    from faceapp.core.filenames import display_name

    assert display_name(b"/photos/Jos\xe9.jpg") == "/photos/Jos\\xe9.jpg"
    assert display_name(os_fsdecode(b"Jos\xe9.jpg")) == "Jos\\xe9.jpg"  # as listdir gives it
    assert display_name("Zoë/Łódź.jpg") == "Zoë/Łódź.jpg"  # UTF-8 names stay as they are
    assert display_name("fake\nskipped other.jpg") == "fake\\x0askipped other.jpg"
    assert display_name("photo\u202egpj.exe") == "photo\\u202egpj.exe"
    text = display_name(b"\xff\xfe.png")
    text.encode("utf-8")  # storable in SQLite, printable as JSON


def os_fsdecode(raw: bytes) -> str:
    import os

    return os.fsdecode(raw)


def test_a_photo_with_a_name_that_is_not_utf8_is_read_and_named(tmp_path, photos):
    import os

    raw = os.path.join(os.fsencode(tmp_path), b"Jos\xe9.jpg")
    with open(raw, "wb") as f:
        f.write((photos / "img1.jpg").read_bytes())
    assert load_image(os.fsdecode(raw)).shape == load_image(photos / "img1.jpg").shape
    assert load_image(raw).ndim == 3  # bytes paths too
    os.truncate(raw, 10)
    with pytest.raises(ImageError) as refused:
        load_image(raw)
    assert str(refused.value).startswith(f"{tmp_path}/Jos\\xe9.jpg: ")
