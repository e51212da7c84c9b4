"""The photo viewer and "draw a missed face": the engine's search inside a drawn box
(core/manual_face.py) on real photos, and the viewer in a real window (offscreen) on a
real gallery: a face the detector misses is boxed by mouse, named, saved as a sample,
and that sample then names another photo of the same person.

The test photo is made here (in tmp_path): an LFW portrait turned on its side, pasted
on the wall behind the couple of couple.jpg. The app's detection does not find it; the
search inside the box does (it tries the region turned, too)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from faceapp.core.enroll import EnrollError, Enroller, embed_samples  # noqa: E402
from faceapp.core.imageio import load_image  # noqa: E402
from faceapp.core.manual_face import (NoFaceInBox, find_face_in_box,  # noqa: E402
                                      prepare_drawn_face)
from faceapp.ui import dialogs  # noqa: E402
from faceapp.ui.live import ACCEPTED, KNOWN  # noqa: E402
from faceapp.ui.photo_viewer import open_photos  # noqa: E402
from faceapp.ui.unknowns_page import PHOTO  # noqa: E402
from tests.test_ui import (WAIT, enroll_photos, open_window, photo_paths,  # noqa: E402,F401
                           pipeline, private_settings, run_live, wait_idle)

PERSON = "Colin_Powell"
PASTED = (40, 60, 290, 310)  # where the portrait (250 x 250) goes in the photo
DRAWN = (85, 105, 245, 265)  # the box a person drags around its face
WALLS = [(690, 60, 880, 250), (1380, 380, 1600, 600)]  # plain wall; the sponsor's letters


def lfw(shared_data: Path, name: str, n: int) -> Path:
    return shared_data / "lfw" / "images" / name / f"{name}_{n:04d}.jpg"


def missed_face_photo(shared_data: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """couple.jpg with a portrait turned on its side on the wall (a JPEG in folder)."""
    photo = load_image(shared_data / "samples" / "photos" / "couple.jpg")
    face = load_image(lfw(shared_data, PERSON, 1))
    turn = cv2.getRotationMatrix2D((125, 125), 90, 1.0)
    x1, y1, x2, y2 = PASTED
    photo[y1:y2, x1:x2] = cv2.warpAffine(face, turn, (250, 250),
                                         borderMode=cv2.BORDER_REFLECT)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "wall.jpg"
    assert cv2.imwrite(str(path), photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path, load_image(path)


def overlaps(box, other) -> bool:
    return (min(box[2], other[2]) > max(box[0], other[0])
            and min(box[3], other[3]) > max(box[1], other[1]))


def inside(points: np.ndarray, box) -> bool:
    return bool(((points[:, 0] >= box[0]) & (points[:, 0] <= box[2])
                 & (points[:, 1] >= box[1]) & (points[:, 1] <= box[3])).all())


@pytest.fixture(scope="module")
def made(shared_data, tmp_path_factory):
    return missed_face_photo(shared_data, tmp_path_factory.mktemp("viewer"))


# -- the engine ------------------------------------------------------------------------------

def test_a_face_the_detector_misses_is_found_inside_its_box(pipeline, made, shared_data):
    _path, image = made
    # the app's detection (smallest face 40 px) misses the face on the wall ...
    assert pipeline.detector.min_face == 40
    found = pipeline.detect(image)
    assert len(found) >= 2  # the couple
    assert not any(overlaps(f.box, PASTED) for f in found)
    # ... the search inside the drawn box finds it, with its five points in the photo
    drawn = find_face_in_box(pipeline.detector, image, DRAWN)
    assert drawn.angle != 0  # found turned upright
    assert inside(drawn.face.landmarks, DRAWN)
    eyes = drawn.face.landmarks[:2]
    assert abs(eyes[0, 0] - eyes[1, 0]) < abs(eyes[0, 1] - eyes[1, 1])  # a face on its side
    # aligned and checked as enrolment does; it looks like the person's other photos
    sample = prepare_drawn_face(Enroller(pipeline, None), image, DRAWN, "wall.jpg")
    assert sample.quality.ok and sample.crop.shape == (256, 256, 3)
    vector = embed_samples(pipeline.embedder, [sample])[0]
    same = pipeline.analyze(load_image(lfw(shared_data, PERSON, 2)))[0].embedding
    other = pipeline.analyze(load_image(lfw(shared_data, "George_W_Bush", 1)))[0].embedding
    bar = pipeline.embedder.threshold(1e-3)
    assert float(vector @ same) > bar > float(vector @ other)


def test_a_face_too_small_to_enroll_is_refused_with_the_reason(pipeline, shared_data):
    """Found inside its box (scaled up), but as small as it is in the photo: refused as
    an enrolment photo would be, in the same words."""
    image = load_image(shared_data / "samples" / "photos" / "couple.jpg")
    small = cv2.resize(load_image(lfw(shared_data, PERSON, 3)), (60, 60),
                       interpolation=cv2.INTER_AREA)
    image[60:120, 40:100] = small
    box = (50, 70, 90, 110)
    drawn = find_face_in_box(pipeline.detector, image, box)
    assert inside(drawn.face.landmarks, box) and drawn.face.width < 30
    with pytest.raises(EnrollError, match="face too small"):
        prepare_drawn_face(Enroller(pipeline, None), image, box, "x")


def test_the_face_best_overlapping_the_box_is_taken(pipeline, photos):
    """Two faces side by side: a box around each gives that face, not the other."""
    image = load_image(photos / "couple.jpg")
    faces = sorted(pipeline.detect(image)[:2], key=lambda f: f.box[0])
    for face in faces:
        x1, y1, x2, y2 = (float(v) for v in face.box)
        pad = 0.15 * (x2 - x1)
        box = (x1 - pad, y1 - pad, x2 + pad, y2 + pad)
        drawn = find_face_in_box(pipeline.detector, image, box)
        assert inside(drawn.face.landmarks, face.box)
        assert np.abs(drawn.face.landmarks - face.landmarks).max() < 0.05 * (x2 - x1)


def test_a_box_around_no_face_gives_nothing_and_says_why(pipeline, made):
    _path, image = made
    enroller = Enroller(pipeline, None)
    for wall in WALLS:
        with pytest.raises(NoFaceInBox, match="no face was found inside the box"):
            find_face_in_box(pipeline.detector, image, wall)
        with pytest.raises(EnrollError, match="no face was found inside the box"):
            prepare_drawn_face(enroller, image, wall, "wall.jpg")
    with pytest.raises(NoFaceInBox, match="too small"):  # a click, not a box
        find_face_in_box(pipeline.detector, image, (100, 100, 103, 140))
    with pytest.raises(NoFaceInBox, match="too small"):  # off the photo
        find_face_in_box(pipeline.detector, image, (5000, 5000, 5200, 5200))
    # the box backwards (dragged up and left) is the same box
    drawn = find_face_in_box(pipeline.detector, image, (DRAWN[2], DRAWN[3], DRAWN[0], DRAWN[1]))
    assert inside(drawn.face.landmarks, DRAWN)


# -- the viewer ------------------------------------------------------------------------------

def drag(qtbot, viewer, box) -> None:
    """Press, move and release the left button across box (the photo's pixels)."""
    view = viewer.view
    start = view.from_photo(box[0], box[1]).toPoint()
    end = view.from_photo(box[2], box[3]).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, pos=(start + end) / 2)
    qtbot.mouseMove(view, pos=end)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)


def wait_viewer(qtbot, viewer) -> None:
    qtbot.waitUntil(lambda: viewer.recognised, timeout=WAIT)
    wait_idle(qtbot)


def screenshot(widget, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("FACEAPP_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert widget.grab().save(str(path))
    return path


def test_draw_a_missed_face_name_it_and_it_names_another_photo(qtbot, open_window, made,
                                                               photos, shared_data,
                                                               monkeypatch, tmp_path):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ["img1", "img2"]))
    path, _image = made
    viewer = open_photos(window, window.state, [str(path)])
    viewer.resize(1280, 800)
    wait_viewer(qtbot, viewer)
    assert len(viewer.overlays) >= 2  # the couple, boxed
    assert not any(overlaps(o.box, PASTED) for o in viewer.overlays)  # the wall face: missed
    assert "2 faces found" in viewer.status.text()

    asked = []

    def answer(parent, title, text, names):
        asked.append(names)
        return "Colin Powell"

    monkeypatch.setattr(dialogs, "ask_person", answer)
    drag(qtbot, viewer, DRAWN)
    qtbot.waitUntil(lambda: not viewer.checking, timeout=WAIT)
    wait_idle(qtbot)
    assert asked == [["Alice"]]  # the people enrolled, to choose from
    powell = window.state.gallery.find_person("Colin Powell")
    assert powell is not None and powell.face_count == 1
    assert [f.source for f in window.state.gallery.faces(powell.id)] == [str(path)]
    assert "added to Colin Powell" in viewer.status.text()
    drawn = [o for o in viewer._all_overlays() if o.kind == ACCEPTED]
    assert [o.label for o in drawn] == ["Colin Powell"] and overlaps(drawn[0].box, DRAWN)
    shot = screenshot(viewer, tmp_path, "photo-viewer.png")
    assert shot.stat().st_size > 10_000

    # the new sample names another photo of him, in the same viewer
    other = lfw(shared_data, PERSON, 2)
    viewer.set_photos([str(path), str(other)], 1)
    wait_viewer(qtbot, viewer)
    assert [(o.label, o.kind) for o in viewer.overlays] == [("Colin Powell", KNOWN)]
    viewer.go(1)  # back to the first: the face drawn is still shown with its name
    wait_viewer(qtbot, viewer)
    assert any(o.label == "Colin Powell" for o in viewer._all_overlays())
    viewer.close()


def test_a_box_around_a_wall_saves_nothing_and_says_why(qtbot, open_window, made,
                                                        monkeypatch, tmp_path):
    window = open_window()
    path, _image = made
    viewer = open_photos(window, window.state, [str(path)])
    viewer.resize(1280, 800)
    wait_viewer(qtbot, viewer)
    monkeypatch.setattr(dialogs, "ask_person", lambda *a: "Wall Person")
    drag(qtbot, viewer, WALLS[0])
    qtbot.waitUntil(lambda: not viewer.checking, timeout=WAIT)
    wait_idle(qtbot)
    assert window.state.gallery.people() == []
    assert "no face was found inside the box" in viewer.problem
    assert viewer.status.text().startswith("Nothing was saved: no face was found")
    screenshot(viewer, tmp_path, "photo-viewer-no-face.png")
    # asked, then cancelled: nothing either, and nobody is asked about a click
    monkeypatch.setattr(dialogs, "ask_person", lambda *a: None)
    drag(qtbot, viewer, DRAWN)
    qtbot.waitUntil(lambda: not viewer.checking, timeout=WAIT)
    assert viewer.status.text() == "Nothing was saved."
    monkeypatch.setattr(dialogs, "ask_person", lambda *a: pytest.fail("asked after a click"))
    view = viewer.view
    spot = view.from_photo(700, 300).toPoint()
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=spot)
    wait_idle(qtbot)
    assert window.state.gallery.people() == []
    viewer.close()


def test_a_drawn_face_like_someone_enrolled_is_asked_about(qtbot, open_window, made,
                                                           shared_data, monkeypatch):
    """Named as someone new, the face looks like a person already enrolled: the same
    question as enrolment asks, and the answer is where it goes."""
    window = open_window()
    enroll_photos(qtbot, window, "Colin Powell",
                  [str(lfw(shared_data, PERSON, n)) for n in (3, 4)])
    path, _image = made
    viewer = open_photos(window, window.state, [str(path)])
    wait_viewer(qtbot, viewer)
    monkeypatch.setattr(dialogs, "ask_person", lambda *a: "General Powell")
    questions = []
    monkeypatch.setattr(dialogs, "ask_choice",
                        lambda parent, title, text, buttons: questions.append(buttons) or 0)
    drag(qtbot, viewer, DRAWN)
    qtbot.waitUntil(lambda: not viewer.checking, timeout=WAIT)
    wait_idle(qtbot)
    assert questions == [["Add to Colin Powell", "Create General Powell", "Cancel"]]
    assert {p.name: p.face_count for p in window.state.gallery.people()} == {"Colin Powell": 3}
    viewer.close()


def test_the_viewer_opens_from_people_events_and_unknown_people(qtbot, open_window, made,
                                                                photos, tmp_path):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ["img1", "img2"]))
    path, _image = made
    folder = tmp_path / "album"
    folder.mkdir()
    (folder / "a_alice.jpg").symlink_to(photos / "img4.jpg")
    (folder / "b_wall.jpg").symlink_to(path)

    # Live over the folder: events with the photo as their source, strangers kept
    run_live(qtbot, window, str(folder))
    window.go_to(window.events)
    qtbot.waitUntil(lambda: window.events.loaded and bool(window.events.rows), timeout=WAIT)
    assert not window.events.photo_button.isEnabled()  # nothing selected
    window.events.table.selectRow(0)
    assert window.events.photo_button.isEnabled()
    window.resize(1280, 800)
    screenshot(window, tmp_path, "events-show-photo.png")
    row = window.events.selected_row()
    window.events.photo_button.click()
    viewer = window.events.viewer
    assert viewer.isVisible() and viewer.paths == [row.event.source]
    assert Path(row.event.source).parent == folder
    wait_viewer(qtbot, viewer)
    viewer.close()

    # Unknown people (after a scan of the folder): a face's photo
    unknowns = window.unknowns
    window.go_to(unknowns)
    unknowns.scan_folder(str(folder))
    wait_idle(qtbot)
    qtbot.waitUntil(lambda: bool(unknowns.cards), timeout=WAIT)
    unknowns.set_show_once(True)
    unknowns.select_cluster(unknowns.listed_ids()[0])
    qtbot.waitUntil(lambda: unknowns.faces.count() > 0, timeout=WAIT)
    assert not unknowns.photo_button.isEnabled()  # no face selected
    item = unknowns.faces.item(0)
    assert item.data(PHOTO) and Path(item.data(PHOTO)).name == "b_wall.jpg"
    item.setSelected(True)
    assert unknowns.photo_button.isEnabled()
    screenshot(window, tmp_path, "unknowns-show-photo.png")
    unknowns.photo_button.click()
    viewer = unknowns.viewer
    assert viewer.isVisible() and viewer.path == item.data(PHOTO)
    wait_viewer(qtbot, viewer)
    viewer.close()

    # People > Photos of…: scanned photos; a double-click opens the app's viewer
    window.go_to(window.people)
    wait_idle(qtbot)
    alice = window.state.gallery.find_person("Alice").id
    window.people.select_person(alice)
    window.people.show_photos_of()
    wait_idle(qtbot)
    files = window.people.photos_dialog.files
    assert [Path(files.item(i).text()).name for i in range(files.count())] == \
        ["a_alice.jpg", "b_wall.jpg"]
    files.itemDoubleClicked.emit(files.item(1))
    viewer = window.people.viewer
    assert viewer.isVisible() and Path(viewer.path).name == "b_wall.jpg"
    assert viewer.next_button.isVisible() and viewer.previous_button.isVisible()
    wait_viewer(qtbot, viewer)
    viewer.previous_button.click()  # through the list of her photos
    assert Path(viewer.path).name == "a_alice.jpg"
    wait_viewer(qtbot, viewer)
    assert [o.label for o in viewer.overlays] == ["Alice"]
    texts = [a.text() for a in files.actions()]
    assert "Open with the desktop's viewer" in texts  # kept, as the second choice
    viewer.close()
    window.people.photos_dialog.close()
