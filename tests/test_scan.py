"""`scan` of 12-megapixel photos: searched on a 1/2 decode, yet every face of 80 px or
more is found where it is, with the identity the full-resolution path gives it.
Synthetic 4000x3000 JPEGs with LFW faces pasted at known sizes (bench/bench_scan.py
makes them and measures the speed; LFW: research data, read in place)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceapp.core import scan as scan_module
from faceapp.core.align import align_face
from faceapp.core.enroll import Enroller
from faceapp.core.gallery import Gallery
from faceapp.core.imageio import read_image
from faceapp.core.quality import assess
from faceapp.core.recognize import FacePipeline, Recognizer
from faceapp.core.scan import PhotoScanner

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_scan", REPO / "bench" / "bench_scan.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def pipeline():
    return FacePipeline.create()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_data, pipeline):
    """Three photos of 3-4 faces (80-480 px), and a fourth whose one face is soft but
    grainy: sharp enough at full size, too blurred for recognition at 1/2."""
    bench.LFW = shared_data / "lfw" / "images"
    root = tmp_path_factory.mktemp("archive")
    truth = bench.make_photos(root, 3, seed=3, faces_per_photo=(3, 4))
    rng = np.random.default_rng(7)
    soft = bench.lfw_face(pipeline.detector, bench.LFW / "James_Parker")
    canvas = bench.background(rng)
    placed = bench.paste(canvas, soft, 90.0, 2000, 1400)
    x1, y1, x2, y2 = placed["extent"]
    region = cv2.GaussianBlur(canvas[y1:y2, x1:x2], (0, 0), 5.0).astype(np.float32)
    region += np.random.default_rng(0).normal(0, 5, region.shape)  # high-ISO grain
    canvas[y1:y2, x1:x2] = np.clip(region, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (root / "photos" / "grainy.jpg").write_bytes(data.tobytes())
    placed["photo"] = "grainy.jpg"
    truth.append({"photo": "grainy.jpg", "faces": [placed]})
    people = json.loads((root / "truth.json").read_text())["people"]
    return root / "photos", truth, people


def test_scan_finds_every_face_of_80_px_where_it_is_with_the_full_resolution_identity(
        tmp_path, archive, pipeline, monkeypatch):
    folder, truth, people = archive
    with Gallery(tmp_path / "gallery.db") as gallery:
        enroller = Enroller(pipeline, gallery)
        for person in people[::2]:  # every other pasted person is enrolled
            report = enroller.enroll_photos(bench.name_of(person["name"]), [person["enroll"]])
            assert report.added == 1, report.skipped
        names = {p.id: p.name for p in gallery.people()}

        decoded = {}  # photo -> the scales it was decoded at
        real_decode = scan_module.decode_image_scaled

        def spy(data, name="image", reduce=1):
            image, scale = real_decode(data, name, reduce=reduce)
            decoded.setdefault(Path(name).name, []).append(scale)
            return image, scale

        monkeypatch.setattr(scan_module, "decode_image_scaled", spy)
        recognizer = Recognizer(pipeline, gallery, log_events=False)
        seen = {}  # photo -> the faces the recognizer decided, as the scan gave them
        process = recognizer.process

        def noting(image, source="", track=True, path=None, faces=None):
            result = process(image, source=source, track=track, path=path, faces=faces)
            seen[Path(path).name] = result.faces
            return result

        recognizer.process = noting
        report = PhotoScanner(recognizer).scan(folder)
        assert report.files == 4 and not report.skipped
        # a 12-megapixel photo is searched on its 1/2 decode; only the grainy one,
        # whose face the reduced pixels alone would drop as blurred, is read again in full
        assert {name: scales for name, scales in decoded.items()} == {
            **{p["photo"]: [2.0] for p in truth[:3]}, "grainy.jpg": [2.0, 1.0]}

        reference = Recognizer(pipeline, gallery, log_events=False)
        stored = bench.sightings(tmp_path / "gallery.db")
        for photo in truth:
            full, scale = read_image(folder / photo["photo"])
            assert scale == 1.0
            expected = reference.process(full, track=False).faces
            for face in photo["faces"]:
                size = face["size"]
                want = max(expected, key=lambda f: bench.iou(f.face.box, face["box"]))
                got = max(seen[photo["photo"]], key=lambda f: bench.iou(f.face.box, face["box"]))
                # found by both, where it was pasted (boxes in the file's pixels)
                assert bench.iou(want.face.box, face["box"]) > 0.7, (photo["photo"], face)
                assert bench.corner_error(got.face.box, face["box"]) < 0.1 * size + 2, \
                    (photo["photo"], size, got.face.box, face["box"])
                assert np.abs(got.face.landmarks - np.array(face["landmarks"])).max() \
                    < 0.06 * size + 2
                # the same decision, from nearly the same embedding
                assert got.decision.person_id == want.decision.person_id, (photo, face)
                assert got.quality.ok == want.quality.ok
                if want.quality.ok:
                    assert float(got.embedding @ want.embedding) > 0.97
                    if got.decision.known:
                        assert names[got.decision.person_id] == bench.name_of(face["name"])
                    # stored as a sighting, of the person or of an unknown face
                    row = max(stored[photo["photo"]],
                              key=lambda s: bench.iou(s["box"], face["box"]))
                    assert bench.iou(row["box"], face["box"]) > 0.7
                    assert row["name"] == (names[got.decision.person_id]
                                           if got.decision.known else None)

        # the premise of the grainy photo: on the 1/2 decode alone its face fails
        # recognition's quality check as blurred, at full size it passes
        grainy = seen["grainy.jpg"][0]
        small, _ = real_decode((folder / "grainy.jpg").read_bytes(), reduce=2)
        crop = align_face(small, grainy.face.landmarks / 2, pipeline.embedder.template)
        blurred = assess(grainy.face, crop, recognizer.quality_policy)
        assert not blurred.ok and blurred.measures["sharpness"] < \
            recognizer.quality_policy.min_sharpness
        assert grainy.quality.ok


def test_photos_under_12_megapixels_are_searched_as_before(tmp_path, photos, pipeline,
                                                          monkeypatch):
    """Below LARGE_PHOTO nothing changes: a full decode, faces down to the detector's
    minimum, the same faces as the pipeline finds on its own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "many.jpg").symlink_to(photos / "selfie-many-people.jpg")
    full, scale = read_image(folder / "many.jpg")
    assert scale == 1.0 and max(full.shape[:2]) < scan_module.LARGE_PHOTO
    expected = pipeline.detect(full)
    assert any(f.width < scan_module.SMALLEST_FACE for f in expected)  # small faces kept
    scales = []
    real_decode = scan_module.decode_image_scaled

    def spy(*args, **kwargs):
        image, scale = real_decode(*args, **kwargs)
        scales.append(scale)
        return image, scale

    monkeypatch.setattr(scan_module, "decode_image_scaled", spy)
    with Gallery(tmp_path / "gallery.db") as gallery:
        recognizer = Recognizer(pipeline, gallery, log_events=False)
        seen = []
        process = recognizer.process
        recognizer.process = lambda image, **kw: seen.append(process(image, **kw)) or seen[-1]
        assert PhotoScanner(recognizer).scan(folder).files == 1
    assert scales == [1.0]
    got = sorted(f.face.box.tolist() for f in seen[0].faces)
    assert got == sorted(f.box.tolist() for f in expected)
