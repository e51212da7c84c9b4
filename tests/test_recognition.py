"""The engine end to end on real photos: enrollment, quality, 1:N search, tracking."""

import csv

import cv2
import numpy as np
import pytest

from faceapp.core.align import align_faces
from faceapp.core.enroll import EnrollError, Enroller, pick_subject
from faceapp.core.gallery import Gallery
from faceapp.core.imageio import load_image
from faceapp.core.index import FaceIndex, segment_sums
from faceapp.core.models import available_packs
from faceapp.core.quality import ENROLLMENT, assess, head_pose
from faceapp.core.recognize import FacePipeline, Recognizer

# Identities from master.csv's "Yes" pairs (deepface's test photos).
PERSON_A = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg", "img7.jpg",
            "img10.jpg", "img11.jpg"]
PERSON_B = ["img13.jpg", "img14.jpg", "img15.jpg"]
OTHERS = ["img16.jpg", "img18.jpg", "img20.jpg", "img22.jpg", "img24.jpg", "img8.jpg"]


@pytest.fixture(scope="module")
def pipeline():
    return FacePipeline.create()


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "gallery.db") as g:
        yield g


@pytest.fixture
def enrolled(pipeline, gallery, photos):
    enroller = Enroller(pipeline, gallery)
    report_a = enroller.enroll_photos("Alice", [photos / n for n in PERSON_A[:2]])
    report_b = enroller.enroll_photos("Bob", [photos / PERSON_B[0]])
    assert report_a.added == 2 and report_b.added == 1, (report_a.skipped, report_b.skipped)
    return gallery


def letterbox(image, size=(640, 480)):
    """The photo scaled to fit a video frame, without distorting it."""
    scale = min(size[0] / image.shape[1], size[1] / image.shape[0])
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    y, x = (size[1] - resized.shape[0]) // 2, (size[0] - resized.shape[1]) // 2
    frame[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return frame


def labelled_pair_scores(pipeline, photos):
    """Cosine of each of the sample set's 300 labelled pairs (master.csv), with whether
    it is the same person, each photo's subject embedded by the pipeline."""
    rows = list(csv.DictReader(open(photos / "master.csv")))
    vectors = {}
    for name in sorted({r["file_x"] for r in rows} | {r["file_y"] for r in rows}):
        faces = pipeline.analyze(load_image(photos / name))
        assert pick_subject([f.face for f in faces]) is not None, name
        vectors[name] = max(faces, key=lambda f: f.face.width).embedding
    scores = np.array([float(vectors[r["file_x"]] @ vectors[r["file_y"]]) for r in rows])
    return scores, np.array([r["Decision"] == "Yes" for r in rows])


def test_master_csv_pairs_are_verified(pipeline, photos):
    """The 300 labelled pairs of the sample set, at the balanced operating point."""
    scores, same = labelled_pair_scores(pipeline, photos)
    assert np.mean((scores >= pipeline.embedder.threshold(1e-3)) == same) >= 0.95


@pytest.mark.parametrize(
    "pack", [p.name for p in available_packs("embedder", include_unlisted=True)])
def test_every_shipped_embedder_separates_the_labelled_pairs(pack, photos):
    """Each embedder the app offers, through the app's own pipeline: same-person pairs
    score above different-person pairs (AUC), and its own strict operating point
    (FAR 1e-3, from its manifest) lets no more than 1% of the impostor pairs through."""
    pipeline = FacePipeline.create(embedder_pack=pack)
    scores, same = labelled_pair_scores(pipeline, photos)
    auc = np.mean(scores[same][:, None] > scores[~same][None, :])
    assert auc >= 0.95, auc  # the shipped student measures 0.977, the teacher more
    impostors_accepted = np.mean(scores[~same] >= pipeline.embedder.threshold(1e-3))
    assert impostors_accepted <= 0.01, impostors_accepted


def test_identifies_enrolled_people_and_rejects_others(pipeline, enrolled, photos):
    recognizer = Recognizer(pipeline, enrolled, "balanced", log_events=False)
    names = {p.id: p.name for p in enrolled.people()}
    for file, expected in ([(n, "Alice") for n in PERSON_A[2:]]
                           + [(n, "Bob") for n in PERSON_B[1:]]
                           + [(n, None) for n in OTHERS]):
        result = recognizer.process(load_image(photos / file), track=False)
        subject = max(result.faces, key=lambda f: f.face.width)
        got = names.get(subject.decision.person_id)
        assert got == expected, (file, subject.decision)


def test_tracking_keeps_identity_and_skips_embedding(pipeline, enrolled, photos):
    recognizer = Recognizer(pipeline, enrolled, "balanced", reembed_every=5)
    frame_a = letterbox(load_image(photos / PERSON_A[3]))
    frame_b = letterbox(load_image(photos / PERSON_B[1]))
    tracks, fresh = set(), 0
    for _ in range(12):
        result = recognizer.process(frame_a, source="test video")
        assert len(result.faces) == 1
        face = result.faces[0]
        tracks.add(face.track_id)
        fresh += face.fresh
        assert enrolled.person(face.decision.person_id).name == "Alice"
    assert len(tracks) == 1
    assert 3 <= fresh <= 6  # settled after 3 looks, then every 5th frame
    for _ in range(4):
        result = recognizer.process(frame_b, source="test video")
    assert result.faces[0].track_id not in tracks  # a different face is a new track
    assert enrolled.person(result.faces[0].decision.person_id).name == "Bob"
    events = enrolled.events()
    assert sorted(e.name for e in events) == ["Alice", "Bob"]  # one event per track
    assert all(enrolled.event_thumbnail(e.id) for e in events)


@pytest.mark.parametrize("scene_cuts", [True, False], ids=["cut", "face-check-only"])
def test_a_track_never_keeps_a_name_when_the_face_under_it_changes(
        pipeline, gallery, shared_data, monkeypatch, scene_cuts):
    """Cuts between two people at the same place in the frame: the second person is
    never shown with the first one's name, not even for one frame."""
    import faceapp.core.recognize as recognize
    if not scene_cuts:  # the per-face appearance check alone must be enough
        monkeypatch.setattr(recognize, "SCENE_CUT", -1.0)
    lfw = shared_data / "lfw" / "images"
    powell = sorted((lfw / "Colin_Powell").iterdir())
    rumsfeld = sorted((lfw / "Donald_Rumsfeld").iterdir())
    report = Enroller(pipeline, gallery).enroll_photos("Colin Powell", powell[:3])
    assert report.added == 3, report.skipped
    recognizer = Recognizer(pipeline, gallery, "balanced", log_events=False)
    powell_id = gallery.find_person("Colin Powell").id
    shots = [(powell[5], True), (rumsfeld[0], False), (powell[6], True), (rumsfeld[1], False),
             (rumsfeld[2], False), (powell[7], True)]
    for path, is_powell in shots:
        frame = letterbox(load_image(path))
        for n in range(6):
            faces = recognizer.process(frame, source="cuts").faces
            subject = min(faces, key=lambda f: abs((f.face.box[0] + f.face.box[2]) / 2 - 320))
            if not is_powell:
                assert subject.decision.person_id != powell_id, (path.name, n, subject)
            elif n >= 1:
                assert subject.decision.person_id == powell_id, (path.name, n, subject)


def test_index_scores_people_by_their_mean_template():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((500, 16)).astype(np.float32)
    people = rng.integers(0, 40, 500)
    index = FaceIndex(16)
    index.replace(np.arange(500), people, matrix)
    assert index.person_count == len(np.unique(people)) and len(index) == 500
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    templates = {p: unit[people == p].mean(0) for p in np.unique(people)}
    templates = {p: t / np.linalg.norm(t) for p, t in templates.items()}
    for query in unit[:20] + 0.1 * rng.standard_normal((20, 16)).astype(np.float32):
        query /= np.linalg.norm(query)
        best = {p: float(t @ query) for p, t in templates.items()}
        expected = sorted(best, key=best.get, reverse=True)[:3]
        found = index.search(query, k=3)[0]
        assert [m.person_id for m in found] == expected
        assert found[0].score == pytest.approx(best[expected[0]], abs=1e-5)
        # each match names the person's own sample nearest the query
        mine = np.flatnonzero(people == expected[0])
        assert found[0].face_id == mine[np.argmax(unit[mine] @ query)]
    assert FaceIndex(16).search(unit[0]) == [[]]


@pytest.mark.parametrize("block", [1, 7, 256])
def test_segment_sums_add_each_persons_rows_across_blocks(block):
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((900, 6)).astype(np.float32)
    # one person of one row, people straddling blocks, a person of 600 rows
    bounds = np.array([0, 1, 9, 10, 300, 900])
    expected = np.stack([rows[a:b].sum(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    np.testing.assert_allclose(segment_sums(rows, bounds, block=block), expected, atol=1e-4)
    assert segment_sums(rows[:0], np.array([0])).shape == (0, 6)


def test_index_int8_coarse_pass_finds_the_exact_best_people():
    # Large galleries are scored in int8 first; the answer must still be the exact one.
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((6000, 128)).astype(np.float32)
    people = rng.integers(0, 3000, 6000)
    coarse = FaceIndex(128, coarse_from=1000)
    coarse.replace(np.arange(6000), people, matrix.copy())
    assert coarse._coarse is not None and coarse._coarse.dtype == np.int8
    exact = FaceIndex(128, coarse_from=10**9)
    exact.replace(np.arange(6000), people, matrix.copy())
    assert exact._coarse is None
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    queries = unit[:40] + 0.6 * rng.standard_normal((40, 128)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for fast, slow in zip(coarse.search(queries, k=3), exact.search(queries, k=3)):
        assert [m.person_id for m in fast] == [m.person_id for m in slow]
        assert [m.face_id for m in fast] == [m.face_id for m in slow]
        assert [m.score for m in fast] == pytest.approx([m.score for m in slow], abs=1e-6)


def test_index_int8_graph_is_valid_onnx():
    import onnx  # the test install has it (train extra); the app does not need it
    from faceapp.core.index import _int8_scores_model
    model = onnx.load_from_string(_int8_scores_model())
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["MatMulInteger"]
    assert [i.name for i in model.graph.input] == ["templates", "queries"]


def test_quality_reasons(pipeline, photos):
    image = load_image(photos / "img1.jpg")
    face = pick_subject(pipeline.detector.detect(image))
    crop = pipeline.analyze(image)[0].crop
    assert assess(face, crop, ENROLLMENT).ok
    blurred = cv2.GaussianBlur(crop, (0, 0), 4)
    assert any("blurred" in r for r in assess(face, blurred, ENROLLMENT).reasons)
    dark = (crop * 0.15).astype(np.uint8)
    assert any("dark" in r for r in assess(face, dark, ENROLLMENT).reasons)
    bright = np.clip(crop.astype(int) + 170, 0, 255).astype(np.uint8)
    assert any("overexposed" in r for r in assess(face, bright, ENROLLMENT).reasons)
    small = cv2.resize(image, None, fx=0.08, fy=0.08, interpolation=cv2.INTER_AREA)
    tiny_faces = FacePipeline(pipeline.detector.__class__.from_pack(min_face=12),
                              pipeline.embedder).analyze(small)
    assert tiny_faces, "the shrunken face should still be detected"
    assert any("too small" in r
               for r in assess(tiny_faces[0].face, tiny_faces[0].crop, ENROLLMENT).reasons)


def test_head_pose_signs():
    frontal = np.array([[40, 50], [72, 50], [56, 68.4], [44, 84], [68, 84]], float)
    yaw, pitch = head_pose(frontal)
    assert abs(yaw) < 0.01 and abs(pitch) < 0.01
    turned = frontal.copy()
    turned[2, 0] += 14
    assert head_pose(turned)[0] > 0.35
    looking_down = frontal.copy()
    looking_down[2, 1] += 10
    assert head_pose(looking_down)[1] > 0.35


def test_enrollment_refuses_bad_photos_with_reasons(pipeline, gallery, photos, tmp_path):
    enroller = Enroller(pipeline, gallery)
    (tmp_path / "broken.jpg").write_bytes((photos / "img1.jpg").read_bytes()[:300])
    (tmp_path / "notes.jpg").write_text("not a photo")
    blank = np.full((300, 300, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "wall.png"), blank)
    report = enroller.enroll_photos("Carol", [tmp_path / "broken.jpg", tmp_path / "notes.jpg",
                                              tmp_path / "wall.png", photos / "couple.jpg"])
    reasons = dict(report.skipped)
    assert report.added == 0 and gallery.people() == []
    assert "no face found" in reasons[str(tmp_path / "wall.png")]
    assert "faces of similar size" in reasons[str(photos / "couple.jpg")]
    assert "not a readable image" in reasons[str(tmp_path / "notes.jpg")]
    with pytest.raises(EnrollError):
        enroller.prepare(blank, "blank")


def test_folder_import_reports_and_goes_on(pipeline, gallery, photos, tmp_path):
    root = tmp_path / "people"
    for name, files in (("Alice", PERSON_A[:3]), ("Bob", PERSON_B[:2])):
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file).write_bytes((photos / file).read_bytes())
    (root / "Bob" / "truncated.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "Empty").mkdir()
    (root / "loose.jpg").write_bytes((photos / "img20.jpg").read_bytes())
    progress = []
    report = Enroller(pipeline, gallery).import_folder(root, lambda d, t, _: progress.append((d, t)))
    assert report.people == {"Alice": 3, "Bob": 2}
    assert {p.name: p.face_count for p in gallery.people()} == {"Alice": 3, "Bob": 2}
    skipped = {path.split("/")[-1]: reason for path, reason in report.skipped}
    assert set(skipped) == {"truncated.jpg", "Empty", "loose.jpg"}
    assert progress[-1] == (6, 6)


def test_folder_names_become_names_as_people_write_them(pipeline, gallery, photos, tmp_path):
    root = tmp_path / "people"
    (root / "Ada_M__Lovelace").mkdir(parents=True)
    (root / "Ada_M__Lovelace" / "a.jpg").write_bytes((photos / PERSON_A[0]).read_bytes())
    enroller = Enroller(pipeline, gallery)
    report = enroller.import_folder(root)
    assert report.people == {"Ada M Lovelace": 1}
    assert report.folders == {"Ada M Lovelace": "Ada_M__Lovelace"}  # the report keeps it
    # a person stored under the folder's spelling by an older import is found again
    gallery.rename_person(gallery.find_person("Ada M Lovelace").id, "Ada_M__Lovelace")
    (root / "Ada_M__Lovelace" / "b.jpg").write_bytes((photos / PERSON_A[1]).read_bytes())
    assert enroller.import_folder(root).people == {"Ada_M__Lovelace": 1}
    assert [(p.name, p.face_count) for p in gallery.people()] == [("Ada_M__Lovelace", 2)]


def test_switching_models_reembeds_from_stored_crops(pipeline, enrolled):
    model_id = pipeline.embedder.model_id
    _, _, before = enrolled.embeddings(model_id)
    enrolled.drop_embeddings(model_id)
    assert len(enrolled.faces_missing_embeddings(model_id)) == 3
    count = Enroller(pipeline, enrolled).reembed()
    _, _, after = enrolled.embeddings(model_id)
    assert count == 3 and enrolled.faces_missing_embeddings(model_id) == []
    np.testing.assert_allclose(np.sort(after @ after.T, axis=None),
                               np.sort(before @ before.T, axis=None), atol=1e-5)


def test_a_pack_can_fuse_only_the_templates_and_still_name_people(gallery, photos):
    """dlib-taper-150-v1 fuses each gallery sample with its mirror once, at enrolment,
    and searches faces in one pass: the stored templates are the fused ones, the
    searched faces are not, the 1:N calibration is the one measured for that mix,
    and enrolled people are named."""
    pipeline = FacePipeline.create(embedder_pack="dlib-taper-150-v1")
    embedder = pipeline.embedder
    assert (embedder.flip, embedder.template_flip) == (False, True)
    assert embedder.setting == "int8+flip-templates"
    enroller = Enroller(pipeline, gallery)
    assert enroller.enroll_photos("Alice", [photos / PERSON_A[0]]).added == 1
    assert enroller.enroll_photos("Bob", [photos / PERSON_B[0]]).added == 1
    alice_id = gallery.find_person("Alice").id
    sample = gallery.face_sample(gallery.faces(alice_id)[0].id)
    crop = align_faces(sample.crop, [sample.landmarks], embedder.template)
    raw = embedder.raw(crop) + embedder.raw(crop[:, :, ::-1])
    _, person_ids, stored = gallery.embeddings(embedder.model_id)
    alice = stored[person_ids == alice_id][0]
    np.testing.assert_allclose(alice, raw[0] / np.linalg.norm(raw[0]), atol=1e-5)
    assert float(alice @ embedder.embed(crop)[0]) < 0.9999  # a search is one pass
    recognizer = Recognizer(pipeline, gallery, "balanced", log_events=False)
    names = {p.id: p.name for p in gallery.people()}
    for file, expected in [(PERSON_A[2], "Alice"), (PERSON_B[1], "Bob"), (OTHERS[0], None)]:
        result = recognizer.process(load_image(photos / file), track=False)
        subject = max(result.faces, key=lambda f: f.face.width)
        assert names.get(subject.decision.person_id) == expected, (file, subject.decision)


def test_flip_fusion_is_mirror_invariant(photos):
    pipeline = FacePipeline.create(embedder_pack="dlib-resnet-v1")
    embedder = pipeline.embedder
    assert embedder.flip  # the teacher pack's manifest asks for it (it measured better)
    crops = np.stack([a.crop for a in pipeline.analyze(load_image(photos / "couple.jpg"))])
    fused = embedder.embed(crops)
    raw = embedder.raw(crops) + embedder.raw(crops[:, :, ::-1])
    np.testing.assert_allclose(fused, raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               atol=1e-5)
    np.testing.assert_allclose(embedder.embed(crops[:, :, ::-1]), fused, atol=1e-5)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
