"""MTCNN detector (faceapp.core.detect) on real photos from ../shared/data/samples."""

from __future__ import annotations

import json
import shutil
import time

import cv2
import numpy as np
import pytest

from faceapp.core.detect import Face, MTCNNDetector, nms
from faceapp.core.imageio import load_image
from faceapp.core.models import ModelPack, ModelPackError, packs_dir

PACK = "mtcnn-v1"
# portraits holding exactly one person (checked by eye)
PORTRAITS = ["img1.jpg", "img10.jpg", "img11.jpg", "img17.jpg", "img25.jpg", "img29.jpg"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector.from_pack(PACK, min_face=40, threads=2)


@pytest.fixture(scope="module")
def photo(photos):
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = load_image(photos / name)
        return cache[name]

    return get


def assert_plausible(face: Face, shape) -> None:
    h, w = shape[:2]
    box, lm = face.box, face.landmarks
    assert box.dtype == np.float32 and box.shape == (4,)
    assert lm.dtype == np.float32 and lm.shape == (5, 2)
    assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
    assert 0.0 <= face.score <= 1.0
    left_eye, right_eye, nose, mouth_left, mouth_right = lm
    # image-left / image-right for an upright face (ArcFace template order)
    assert left_eye[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert left_eye[0] < nose[0] < right_eye[0]
    # eyes above the nose above the mouth (image y grows downwards)
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # the points lie in (a slightly grown) face box
    bw, bh = box[2] - box[0], box[3] - box[1]
    assert np.all(lm[:, 0] > box[0] - 0.1 * bw) and np.all(lm[:, 0] < box[2] + 0.1 * bw)
    assert np.all(lm[:, 1] > box[1] - 0.1 * bh) and np.all(lm[:, 1] < box[3] + 0.1 * bh)
    # eye distance is a sane fraction of the box width
    assert 0.2 * bw < right_eye[0] - left_eye[0] < 0.8 * bw


@pytest.mark.parametrize("name", PORTRAITS)
def test_portrait_has_one_plausible_face(detector, photo, name):
    image = photo(name)
    faces = detector.detect(image)
    assert len(faces) == 1, [f.box for f in faces]
    face = faces[0]
    assert face.score > 0.9
    assert_plausible(face, image.shape)
    # a portrait's face is large
    assert face.box[2] - face.box[0] > 0.1 * image.shape[1]


def test_couple_has_two_faces(detector, photo):
    image = photo("couple.jpg")
    faces = detector.detect(image)
    assert len(faces) == 2
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    for face in faces:
        assert face.score > 0.9
        assert_plausible(face, image.shape)
    assert iou(faces[0].box, faces[1].box) == 0.0


def test_group_photo_finds_several_faces(detector, photo):
    image = photo("selfie-many-people.jpg")
    faces = detector.detect(image)
    assert len(faces) >= 4
    for i, a in enumerate(faces):
        for b in faces[i + 1:]:
            assert iou(a.box, b.box) < 0.5


def test_mirrored_photo_mirrors_the_detection(detector, photo):
    image = photo("img11.jpg")
    w = image.shape[1]
    face = detector.detect(image)[0]
    mirrored = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    assert len(mirrored) == 1
    m = mirrored[0]
    expected = np.array([w - face.box[2], face.box[1], w - face.box[0], face.box[3]])
    assert iou(m.box, expected) > 0.7   # MTCNN is not exactly mirror-symmetric
    # the subject's eyes swap roles: the mirrored left eye is the original right eye
    assert abs((w - m.landmarks[0, 0]) - face.landmarks[1, 0]) < 0.1 * (face.box[2] - face.box[0])


@pytest.mark.parametrize("variant", ["grey", "grey3d", "rgba", "uint16", "float"])
def test_other_pixel_formats_give_the_same_faces(detector, photo, variant):
    image = photo("couple.jpg")
    reference = detector.detect(image)
    if variant == "grey":
        other = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif variant == "grey3d":
        other = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif variant == "rgba":
        alpha = np.full(image.shape[:2] + (1,), 255, dtype=np.uint8)
        other = np.concatenate([image, alpha], axis=2)
    elif variant == "uint16":
        other = image.astype(np.uint16) * 257
    else:
        other = image.astype(np.float32) / 255.0
    faces = detector.detect(other)
    assert len(faces) == len(reference)
    for a, b in zip(sorted(reference, key=lambda f: f.box[0]), sorted(faces, key=lambda f: f.box[0])):
        limit = 0.8 if variant.startswith("grey") else 0.95
        assert iou(a.box, b.box) > limit
        assert_plausible(b, image.shape)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (5, 7, 3), (30, 30, 3), (1, 4000, 3)])
def test_tiny_images_give_nothing_quickly(detector, shape):
    started = time.perf_counter()
    assert detector.detect(np.full(shape, 128, dtype=np.uint8)) == []
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("kind", ["black", "white", "grey", "noise"])
def test_images_without_faces_give_nothing(detector, kind):
    if kind == "noise":
        image = np.random.default_rng(7).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    else:
        value = {"black": 0, "white": 255, "grey": 128}[kind]
        image = np.full((480, 640, 3), value, dtype=np.uint8)
    assert detector.detect(image) == []


def test_small_faces_need_a_small_min_face(photo):
    # img11's face is ~280 px wide; at 1/8 size it is ~35 px
    image = photo("img11.jpg")
    small = cv2.resize(image, (image.shape[1] // 8, image.shape[0] // 8), interpolation=cv2.INTER_AREA)
    assert MTCNNDetector.from_pack(PACK, min_face=80, threads=1).detect(small) == []
    faces = MTCNNDetector.from_pack(PACK, min_face=20, threads=1).detect(small)
    assert len(faces) == 1
    assert_plausible(faces[0], small.shape)


@pytest.mark.slow
def test_huge_image_is_searched_downscaled_and_mapped_back(detector, photo):
    image = photo("img11.jpg")   # 800x600
    reference = detector.detect(image)[0]
    big = cv2.resize(image, (image.shape[1] * 7, image.shape[0] * 7), interpolation=cv2.INTER_LINEAR)
    started = time.perf_counter()
    faces = detector.detect(big)
    assert time.perf_counter() - started < 10.0
    assert len(faces) == 1
    assert iou(faces[0].box, reference.box * 7) > 0.8
    assert np.abs(faces[0].landmarks - reference.landmarks * 7).max() < 0.1 * (faces[0].box[2] - faces[0].box[0])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["noise", "checker"])
def test_large_texture_is_bounded(detector, kind):
    # fine texture makes P-Net fire everywhere; the candidate caps keep this bounded
    if kind == "noise":
        image = np.random.default_rng(3).integers(0, 256, size=(2500, 2500), dtype=np.uint8)
    else:
        image = np.zeros((2500, 2500), dtype=np.uint8)
        image[::4, :] = 255
        image[:, ::4] = 255
    started = time.perf_counter()
    faces = detector.detect(image)
    assert time.perf_counter() - started < 30.0
    assert len(faces) <= 3


def test_threads_do_not_change_results(photo):
    image = photo("selfie-many-people.jpg")
    one = MTCNNDetector.from_pack(PACK, threads=1).detect(image)
    two = MTCNNDetector.from_pack(PACK, threads=2).detect(image)
    assert len(one) == len(two) > 0
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)


def test_nms_modes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 6, 6], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.95, 0.7], np.float32)
    # union: the small inner box overlaps the big ones little (IoU 0.16), so it stays
    assert nms(boxes, scores, 0.5, "union").tolist() == [2, 0, 3]
    # min: the small box lies inside box 0, so box 0 and 1 go
    assert nms(boxes, scores, 0.5, "min").tolist() == [2, 3]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def _copy_pack(tmp_path):
    source = ModelPack.load(PACK).path
    target = tmp_path / PACK
    shutil.copytree(source, target)
    return target


def test_damaged_onnx_file_is_refused(tmp_path):
    target = _copy_pack(tmp_path)
    onnx_path = target / "onet.onnx"
    data = bytearray(onnx_path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ModelPackError, match="damaged"):
        MTCNNDetector.from_pack(str(target))


def test_missing_onnx_file_is_refused(tmp_path):
    target = _copy_pack(tmp_path)
    (target / "rnet.onnx").unlink()
    with pytest.raises(ModelPackError, match="missing"):
        MTCNNDetector.from_pack(ModelPack.load(target))


def test_cascade_settings_come_from_the_manifest(tmp_path, photo):
    target = _copy_pack(tmp_path)
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    image = photo("img11.jpg")
    assert len(MTCNNDetector.from_pack(ModelPack.load(target)).detect(image)) == 1
    # an O-Net threshold no score can pass
    manifest["detector"]["thresholds"][2] = 1.0
    manifest_path.write_text(json.dumps(manifest))
    assert MTCNNDetector.from_pack(ModelPack.load(target)).detect(image) == []
    # and a pack that is not an MTCNN detector is refused
    manifest["detector"]["kind"] = "retinaface"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelPackError):
        MTCNNDetector.from_pack(ModelPack.load(target))


def test_pack_manifest_describes_the_cascade():
    pack = ModelPack.load(PACK)
    assert pack.path.parent == packs_dir()
    det = pack.manifest["detector"]
    assert pack.task == "detector" and det["kind"] == "mtcnn"
    assert det["landmarks"] == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert set(pack.manifest["files"]) == {"pnet", "rnet", "onet"}
    assert pack.manifest["licence"] == "MIT"
    assert "sha256" in pack.manifest["provenance"]["source"]
