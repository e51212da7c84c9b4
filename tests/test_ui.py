"""The desktop app, driven through its pages with pytest-qt (offscreen), on a real
gallery in tmp_path and sources built from the sample photos (linked, never copied).

Also: screenshots of every page (into $FACEAPP_SCREENSHOTS, else tmp_path) and the
longest GUI-thread stall during a bulk import."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QDate, QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QLabel  # noqa: E402

from faceapp.core.imageio import load_image  # noqa: E402
from faceapp.core.models import packs_dir  # noqa: E402
from faceapp.core.sources import CameraSource, ImageFolderSource  # noqa: E402
from faceapp.core.models import DEFAULT_EMBEDDER  # noqa: E402
from faceapp.core.recognize import FacePipeline  # noqa: E402
from faceapp.ui import dialogs  # noqa: E402
from faceapp.ui.jobs import Job  # noqa: E402
from faceapp.ui.live import KNOWN, UNKNOWN  # noqa: E402
from faceapp.ui.live import make_source  # noqa: E402
from faceapp.ui.main_window import MainWindow  # noqa: E402
from faceapp.ui.people_page import FACE_ID  # noqa: E402
from faceapp.ui.settings import AppSettings  # noqa: E402
from faceapp.ui.stall import StallMeter  # noqa: E402

# People in the sample photos (see master.csv)
ALICE = ["img1", "img2", "img4", "img5"]  # enrolled
ALICE_LATER = ["img6", "img7"]  # the same person, not enrolled: must be named
BOB = ["img13", "img14"]
ROBERT = ["img15"]  # Bob again, enrolled under another name: to be merged
CAROL = ["img20"]
STRANGER = "img22"  # never enrolled

WAIT = 20_000  # ms; generous for a loaded 2-core machine


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def private_settings(tmp_path_factory):
    """Nothing here may touch the user's real settings or data folder."""
    root = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(root))
    old = os.environ.get("FACEAPP_DATA_DIR")
    os.environ["FACEAPP_DATA_DIR"] = str(root / "data")
    yield
    if old is None:
        os.environ.pop("FACEAPP_DATA_DIR", None)
    else:
        os.environ["FACEAPP_DATA_DIR"] = old


@pytest.fixture(scope="module")
def pipeline():
    pipe = FacePipeline.create(threads=2)
    yield pipe
    pipe.detector.close()


@pytest.fixture
def open_window(qtbot, pipeline, tmp_path):
    """open_window(settings_file=None) -> a ready MainWindow on tmp_path/gallery.db."""

    def make(settings_file: Path | None = None) -> MainWindow:
        settings = AppSettings(settings_file or tmp_path / "settings.ini")
        if settings.qsettings.value("gallery/path") is None:
            settings.gallery_path = tmp_path / "gallery.db"
        window = MainWindow(settings, pipeline=pipeline)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.state.is_ready, timeout=WAIT)
        wait_idle(qtbot)
        return window

    return make


def wait_idle(qtbot, timeout: int = WAIT) -> None:
    """Until every background job has finished and its answer has been handled."""
    qtbot.waitUntil(lambda: not Job.running(), timeout=timeout)


def photo_paths(photos: Path, names) -> list[str]:
    return [str(photos / f"{n}.jpg") for n in names]


def link_folder(folder: Path, photos: Path, names, prefix: str = "") -> Path:
    """A folder of symbolic links to sample photos (the photos are not copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / f"{prefix}{i:02d}_{name}.jpg").symlink_to(photos / f"{name}.jpg")
    return folder


def letterbox(image: np.ndarray, size=(640, 480)) -> np.ndarray:
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    canvas = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def write_video(path: Path, photos: Path, names, frames_each: int = 4) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    assert writer.isOpened(), "this OpenCV cannot write MJPG .avi files"
    for name in names:
        frame = cv2.cvtColor(letterbox(load_image(photos / f"{name}.jpg")), cv2.COLOR_RGB2BGR)
        for _ in range(frames_each):
            writer.write(frame)
    writer.release()
    return path


def enroll_photos(qtbot, window: MainWindow, name: str, paths: list[str]):
    window.show_page(1)
    window.enroll.import_photos(name, paths)
    qtbot.waitUntil(lambda: not window.enroll.importing, timeout=WAIT)
    wait_idle(qtbot)
    return window.enroll.last_report


def import_people(qtbot, window: MainWindow, root: Path):
    window.show_page(1)
    window.enroll.import_folder(str(root))
    qtbot.waitUntil(lambda: not window.enroll.importing, timeout=WAIT)
    wait_idle(qtbot)
    return window.enroll.last_report


def people(window: MainWindow) -> dict[str, int]:
    return {p.name: p.face_count for p in window.state.gallery.people()}


def run_live(qtbot, window: MainWindow, spec: str) -> list:
    """Play a file or folder to its end on the Live page; every frame's overlays."""
    window.show_page(0)
    seen = []
    window.live.video.frame_ready.connect(lambda frame: seen.append(frame.overlays))
    window.live.folder_fps = None
    window.live.set_source(spec)
    window.live.start()
    qtbot.waitUntil(lambda: window.live.is_running, timeout=WAIT)
    qtbot.waitUntil(lambda: not window.live.is_running, timeout=WAIT)
    wait_idle(qtbot)
    return seen


# -- tests -----------------------------------------------------------------------------------

def test_enroll_then_identify_in_live_video_and_log_events(qtbot, open_window, photos,
                                                           tmp_path):
    window = open_window()
    report = enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE))
    assert report.people == {"Alice": len(ALICE)} and not report.skipped
    assert "Added 4 sample(s): Alice (4)" in window.enroll.summary.text()
    window.show_page(2)
    qtbot.waitUntil(lambda: window.people.model.rowCount() == 1, timeout=WAIT)
    assert window.people.name_label.text() == "Alice"

    video = write_video(tmp_path / "door.avi", photos, ALICE_LATER + [STRANGER])
    seen = run_live(qtbot, window, str(video))
    labels = {(o.label, o.kind) for overlays in seen for o in overlays}
    assert ("Alice", KNOWN) in labels
    assert ("Unknown", UNKNOWN) in labels
    assert window.live.current_frame is not None  # the last frame stays on screen
    assert "Alice" in window.live.names_seen

    # the log has Alice and an unknown face, with thumbnails
    window.go_to(window.events)
    qtbot.waitUntil(lambda: window.events.loaded and bool(window.events.rows), timeout=WAIT)
    who = {row.who for row in window.events.rows}
    assert {"Alice", None} <= who
    assert all(not row.thumbnail.isNull() for row in window.events.rows)
    alice_id = window.state.gallery.find_person("Alice").id
    window.events.set_person_filter(alice_id)
    wait_idle(qtbot)
    assert window.events.rows and {row.who for row in window.events.rows} == {"Alice"}
    # the event knows its video, frame and face: double-click shows that frame, boxed
    event = window.events.rows[0].event
    assert event.source.startswith(f"{video} #") and event.box is not None
    window.events.table.selectRow(0)
    window.events.open_selected()
    wait_idle(qtbot)
    picture = window.events.picture_dialog.findChild(QLabel).pixmap()
    assert not picture.isNull() and picture.width() > 100
    window.events.picture_dialog.close()
    window.activateWindow()
    window.events.table.setFocus()
    window.events.set_person_filter("unknown")
    wait_idle(qtbot)
    assert window.events.rows and {row.who for row in window.events.rows} == {None}
    from faceapp.ui.events_page import SOURCE, WHY

    why = window.events.table.item(0, WHY).text()  # in words, without scores
    assert why.startswith(("not close enough to anyone (nearest: Alice)",
                           "could be Alice or")), why
    assert window.events.table.item(0, SOURCE).text().startswith("door.avi at 0:0")
    assert window.events.table.item(0, SOURCE).toolTip().startswith(f"{video} #")

    # dates: nothing from tomorrow on, everything up to today
    window.events.set_person_filter(None)
    tomorrow = QDate.currentDate().addDays(1)
    window.events.from_date.setDate(tomorrow)
    window.events.use_from.setChecked(True)
    wait_idle(qtbot)
    assert window.events.rows == []
    window.events.use_from.setChecked(False)
    window.events.to_date.setDate(QDate.currentDate())
    window.events.use_to.setChecked(True)
    wait_idle(qtbot)
    assert {row.who for row in window.events.rows} == {"Alice", None}
    window.events.use_to.setChecked(False)

    # export everything (Ctrl+E asks where)
    window.events.set_person_filter(None)
    wait_idle(qtbot)
    out = tmp_path / "events.csv"
    qtbot_monkey = pytest.MonkeyPatch()
    qtbot_monkey.setattr(dialogs, "save_file", lambda *a, **k: str(out))
    try:
        qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(out.exists, timeout=WAIT)
    finally:
        qtbot_monkey.undo()
    rows = list(csv.DictReader(out.open()))
    assert {"Alice", "unknown"} <= {r["name"] for r in rows}
    assert len(rows) == len(window.events.rows)


def test_enroll_a_face_clicked_in_the_live_view(qtbot, open_window, photos, tmp_path):
    window = open_window()
    folder = link_folder(tmp_path / "one", photos, [CAROL[0]])
    seen = run_live(qtbot, window, str(folder))
    face = seen[-1][0]
    assert face.kind == UNKNOWN  # nobody is enrolled yet
    window.live.enroll_face(window.live.current_frame, face, "Carol")
    wait_idle(qtbot)
    assert people(window) == {"Carol": 1}
    seen = run_live(qtbot, window, str(folder))
    assert seen[-1][0].label == "Carol" and seen[-1][0].kind == KNOWN


def test_people_merge_rename_remove_delete(qtbot, open_window, photos, tmp_path,
                                           monkeypatch):
    window = open_window()
    root = tmp_path / "people"
    link_folder(root / "Bob", photos, BOB)
    link_folder(root / "Robert", photos, ROBERT)
    link_folder(root / "Carol", photos, CAROL + ["couple"])  # couple: two faces, skipped
    report = import_people(qtbot, window, root)
    assert report.people == {"Bob": 2, "Carol": 1, "Robert": 1}
    assert len(report.skipped) == 1 and "couple" in report.skipped[0][0]
    # the report by person folder: Carol's folder gave her, and left the couple out
    assert window.enroll.skipped.topLevelItemCount() == 1
    carol = window.enroll.skipped.topLevelItem(0)
    assert carol.text(0) == "Carol" and "1 photo added for Carol; 1 left out" in carol.text(1)
    assert carol.child(0).text(0).endswith("couple.jpg") and "faces" in carol.child(0).text(1)

    page = window.people
    window.show_page(2)
    qtbot.waitUntil(lambda: page.model.rowCount() == 3, timeout=WAIT)
    ids = {p.name: p.id for p in window.state.gallery.people()}

    # search filters the grid
    page.search.setText("rob")
    assert page.proxy.rowCount() == 1
    page.search.clear()
    assert page.proxy.rowCount() == 3

    # merge Robert into Bob: Robert's photos are Bob's, so Bob is proposed first
    offered = []
    monkeypatch.setattr(dialogs, "choose",
                        lambda parent, title, label, items, **k: offered.append(items) or "Bob")
    monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: True)
    page.select_person(ids["Robert"])
    assert page.name_label.text() == "Robert"
    page.merge_button.click()
    wait_idle(qtbot)
    assert offered == [["Bob", "Carol"]]
    assert people(window) == {"Bob": 3, "Carol": 1}
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=WAIT)
    assert page.selected_id == ids["Bob"]

    # rename with F2
    monkeypatch.setattr(dialogs, "ask_text", lambda parent, title, label, text="": "Roberto")
    page.grid.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_F2)
    wait_idle(qtbot)
    assert people(window) == {"Roberto": 3, "Carol": 1}
    assert page.name_label.text() == "Roberto"

    # a name that is taken is refused with a message, nothing changes
    monkeypatch.setattr(dialogs, "ask_text", lambda parent, title, label, text="": "carol")
    page.rename_selected()
    wait_idle(qtbot)
    assert "already" in window.banner.text()
    assert people(window) == {"Roberto": 3, "Carol": 1}

    # remove one sample
    qtbot.waitUntil(lambda: page.samples.count() == 3, timeout=WAIT)
    page.samples.item(0).setSelected(True)
    page.remove_button.click()
    wait_idle(qtbot)
    assert people(window) == {"Roberto": 2, "Carol": 1}
    assert window.banner.text() == ""  # the rename's error went away with this success
    window.state.error.emit("something failed")
    assert window.banner.text() == "something failed"
    window.show_page(1)
    assert window.banner.text() == ""  # and errors do not follow the user to other pages
    window.show_page(2)

    # delete Carol; declining the confirmation changes nothing
    page.select_person(ids["Carol"])
    carol_event = window.state.gallery.add_event(ids["Carol"], 0.95, "door.jpg")
    monkeypatch.setattr(dialogs, "confirm_with_option", lambda *a, **k: (False, True))
    page.delete_button.click()
    wait_idle(qtbot)
    assert "Carol" in people(window)
    # deleting offers to delete their events too, ticked by default
    offered = []
    monkeypatch.setattr(dialogs, "confirm_with_option",
                        lambda *a, **k: offered.append((a[4], k.get("checked", True)))
                        or (True, True))
    page.delete_button.click()
    wait_idle(qtbot)
    assert people(window) == {"Roberto": 2}
    assert offered and "events" in offered[0][0] and offered[0][1] is True
    assert carol_event not in {e.id for e in window.state.gallery.events()}
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT)


def test_guided_capture_takes_three_poses(qtbot, open_window, photos, tmp_path):
    window = open_window()
    # a "camera" that looks straight, then to one side, then to the other
    folder = link_folder(tmp_path / "cam", photos, ["img1"] * 3 + ["img4"] * 3 + ["img11"] * 3)
    window.show_page(1)
    window.enroll.capture_options = {"side_min": 0.07, "hold_frames": 2}
    window.enroll.start_capture("Dana", str(folder))
    qtbot.waitUntil(lambda: "Dana" in people(window), timeout=WAIT)
    assert people(window) == {"Dana": 3}
    assert window.enroll.capture_progress.done
    assert all(label.text().startswith("✔") for label in window.enroll.step_labels)


def test_settings_survive_a_restart(qtbot, open_window, tmp_path):
    settings_file = tmp_path / "restart.ini"
    window = open_window(settings_file)
    page = window.settings_page
    # one scale, in people's words: how many strangers may be named
    assert [page.level.itemText(i) for i in range(page.level.count())] == [
        "About 1 in 1,000 strangers (strict)", "About 1 in 100 strangers (balanced)",
        "About 1 in 20 strangers (lenient)", "Another rate…"]
    page.level.setCurrentIndex(page.level.findData("strict"))
    strict = window.state.rule()
    assert strict.fpir == 0.001 and "about 1 in 1,000 strangers" in page.threshold_note.text()
    assert "goes unnamed" in page.threshold_note.text()
    assert not page.custom.isVisibleTo(page)
    assert not page.threshold_details.isVisibleTo(page)  # the figures: on request
    page.show_details.setChecked(True)
    assert f"{strict.threshold:.3f}" in page.threshold_details.text()
    page.show_details.setChecked(False)
    page.level.setCurrentIndex(page.level.findData("custom"))
    assert page.custom.isVisibleTo(page)
    page.custom.setValue(300)
    custom = window.state.rule()
    # a custom rate sits on the same scale: between strict and balanced, never a trap
    assert custom.fpir == pytest.approx(1 / 300)
    assert strict.threshold > custom.threshold
    assert "about 1 in 300 strangers" in page.threshold_note.text()
    page.custom.setValue(50)
    assert window.state.rule().threshold < custom.threshold  # more strangers: a lower bar
    page.custom.setValue(300)
    page.level.setCurrentIndex(page.level.findData("strict"))
    assert window.state.rule().threshold == pytest.approx(strict.threshold)
    page.min_face.setValue(64)
    assert window.state.pipeline.detector.min_face == 64
    page.keep_thumbnails.setChecked(False)
    assert window.state.options.keep_thumbnails is False
    window.close()

    again = open_window(settings_file)
    page = again.settings_page
    assert page.level.currentData() == "strict"
    assert page.custom.value() == 300
    assert page.min_face.value() == 64
    assert not page.keep_thumbnails.isChecked()
    assert again.state.rule().threshold == pytest.approx(strict.threshold)
    assert again.state.gallery_path == tmp_path / "gallery.db"
    again.state.set_min_face(40)  # the pipeline is shared with the other tests


def test_camera_defaults_reach_the_live_page_and_the_capture(qtbot, open_window, tmp_path,
                                                            monkeypatch):
    settings_file = tmp_path / "camera.ini"
    window = open_window(settings_file)
    page = window.settings_page
    assert window.live.current_spec() == "0" and window.enroll.capture_source.text() == "0"
    assert "always kept" in page.samples_note.text()
    page.camera_index.setValue(2)
    page.camera_resolution.setCurrentIndex(page.camera_resolution.findData("1280x720"))
    assert window.live.current_spec() == "2" and window.enroll.capture_source.text() == "2"

    # what the pages would open (the sources are made, never opened: no camera here)
    made = []
    for video in (window.live.video, window.enroll.video):
        monkeypatch.setattr(video, "start", lambda make, analyser, **k: made.append(make()))
    window.live.start()
    window.enroll.start_capture("Dana")
    assert [(type(s), s.index, s.requested[:2]) for s in made] == \
        [(CameraSource, 2, (1280, 720))] * 2
    assert isinstance(make_source(str(tmp_path), camera_size=(1280, 720)), ImageFolderSource)
    # "Refresh cameras" on a machine without one: the box stops offering Camera 2
    monkeypatch.setattr("faceapp.ui.live_page.list_cameras", lambda: [])
    window.live.find_cameras(asked=True)
    wait_idle(qtbot)
    assert window.live.current_spec() == ""
    assert "No camera found" in window.live.source_box.lineEdit().placeholderText()
    window.close()

    again = open_window(settings_file)
    assert again.settings_page.camera_index.value() == 2
    assert again.settings_page.camera_resolution.currentData() == "1280x720"
    assert again.enroll.capture_source.text() == "2"


def models_with_a_copy(root: Path, name: str) -> Path:
    """A models folder with the bundled packs and a second embedder pack: the bundled
    one under another name (its files linked, not copied)."""
    bundled = packs_dir()
    root.mkdir()
    for pack in bundled.iterdir():
        (root / pack.name).symlink_to(pack)
    manifest = json.loads((bundled / "dlib-resnet-v1" / "manifest.json").read_text())
    manifest["name"] = name
    (root / name).mkdir()
    (root / name / "manifest.json").write_text(json.dumps(manifest))
    for entry in manifest["files"].values():
        if (bundled / "dlib-resnet-v1" / entry["path"]).exists():
            (root / name / entry["path"]).symlink_to(bundled / "dlib-resnet-v1" / entry["path"])
    return root


def test_switching_the_model_pack_reembeds_and_recognises_with_it(
        qtbot, open_window, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEAPP_MODELS_DIR", str(models_with_a_copy(tmp_path / "models",
                                                                    "dlib-copy")))
    settings_file = tmp_path / "model.ini"
    window = open_window(settings_file)
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE))
    enroll_photos(qtbot, window, "Bob", photo_paths(photos, BOB))
    page, state, gallery = window.settings_page, window.state, window.state.gallery
    texts = [page.model.itemText(i) for i in range(page.model.count())]
    # models by what they are for; the figures in the tooltip
    assert "dlib-copy" in texts  # a pack someone added: its own name
    assert texts[page.model.currentIndex()] == "Standard – recommended: accurate and quick"
    assert "Accurate – the reference model, about half as fast" in texts
    tips = [page.model.itemData(i, Qt.ItemDataRole.ToolTipRole)
            for i in range(page.model.count())]
    assert any("LFW pair accuracy 98.97%" in tip for tip in tips)
    # the student names almost nobody: shipped for experiments, not offered (issue 20)
    assert not any(text.startswith("Experimental") for text in texts)
    assert page.model.currentData()[0] == DEFAULT_EMBEDDER
    copy = next(i for i in range(page.model.count())
                if tuple(page.model.itemData(i)) == ("dlib-copy", "int8"))

    # cancelled at once: the old model stays in use, the choice goes back
    page.model.setCurrentIndex(copy)
    assert page.bulk_row.isVisibleTo(page) and page.bulk_cancel.isEnabled()
    page.bulk_cancel.click()
    wait_idle(qtbot)
    assert "cancelled" in page.bulk_label.text()
    assert state.pipeline.embedder.model_id == f"{DEFAULT_EMBEDDER}:int8"
    assert page.model.currentData()[0] == DEFAULT_EMBEDDER

    page.model.setCurrentIndex(copy)
    wait_idle(qtbot)
    assert state.pipeline.embedder.model_id == "dlib-copy:int8"
    assert gallery.faces_missing_embeddings("dlib-copy:int8") == []
    assert gallery.models()["dlib-copy:int8"] == len(ALICE) + len(BOB)
    assert "Now recognising with the dlib-copy model" in page.bulk_label.text()
    seen = run_live(qtbot, window, str(link_folder(tmp_path / "later", photos, ALICE_LATER)))
    assert [o.label for overlays in seen for o in overlays] == ["Alice"] * len(ALICE_LATER)
    assert AppSettings(settings_file).embedder_pack == "dlib-copy"

    # the next start loads the chosen pack
    window.close()
    again = MainWindow(AppSettings(settings_file))
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.state.is_ready, timeout=WAIT)
    assert again.state.pipeline.embedder.model_id == "dlib-copy:int8"
    assert again.settings_page.model.currentIndex() == copy
    wait_idle(qtbot)


def test_a_gallery_enrolled_with_another_model_opens_with_that_model(qtbot, photos, tmp_path):
    """No model chosen in Settings: the app recognises with the model the gallery's
    templates were made with (here the teacher, as before the student became the
    default), not the default it has none for."""
    from faceapp.core.enroll import Enroller
    from faceapp.core.gallery import Gallery

    teacher = FacePipeline.create(embedder_pack="dlib-resnet-v1", threads=2)
    assert DEFAULT_EMBEDDER != "dlib-resnet-v1"
    with Gallery(tmp_path / "old.db") as gallery:
        for name, files in (("Alice", ALICE), ("Bob", BOB)):
            Enroller(teacher, gallery).enroll_photos(name, photo_paths(photos, files))
    settings = AppSettings(tmp_path / "old.ini")
    settings.gallery_path = tmp_path / "old.db"
    assert not settings.embedder_chosen
    window = MainWindow(settings)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.is_ready, timeout=WAIT)
    wait_idle(qtbot)
    assert window.state.pipeline.embedder.model_id == "dlib-resnet-v1:int8"
    assert window.settings_page.model.currentData()[0] == "dlib-resnet-v1"
    seen = run_live(qtbot, window, str(link_folder(tmp_path / "later", photos, ALICE_LATER)))
    assert [o.label for overlays in seen for o in overlays] == ["Alice"] * len(ALICE_LATER)
    assert not AppSettings(tmp_path / "old.ini").embedder_chosen  # nothing chosen for them


def test_this_was_not_flags_the_matching_sample_and_people_can_unflag_it(
        qtbot, open_window, photos, tmp_path, monkeypatch):
    window = open_window()
    # Carol's photo was added to Alice's first one by mistake: Alice's template is then
    # half Carol's, and Carol is named Alice. (With all four of Alice's photos the mean
    # template stays Alice's: one wrong sample among many no longer names anybody.)
    enrolled = ALICE[:1]
    asked = []  # the Enroll page says the two photos differ before saving them
    monkeypatch.setattr(dialogs, "confirm",
                        lambda parent, title, text, *a, **k: asked.append(text) or True)
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, enrolled + CAROL))
    assert len(asked) == 1 and f"{CAROL[0]}.jpg does not look like the other" in asked[0]
    gallery = window.state.gallery
    alice = gallery.find_person("Alice").id
    wrong = next(f.id for f in gallery.faces(alice) if CAROL[0] in f.source)
    carol = link_folder(tmp_path / "carol", photos, CAROL)
    assert [o.label for o in run_live(qtbot, window, str(carol))[-1]] == ["Alice"]

    page = window.events
    window.go_to(window.events)
    qtbot.waitUntil(lambda: page.loaded and len(page.rows) == 1, timeout=WAIT)
    assert not page.not_button.isEnabled()  # nothing selected
    page.table.selectRow(0)
    assert page.not_button.isEnabled() and page.not_button.text() == "This was not Alice…"
    monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: False)
    page.table.setFocus()
    qtbot.keyClick(page.table, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot)
    assert not any(f.flagged for f in gallery.faces(alice))
    monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: True)
    qtbot.keyClick(page.table, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot)
    assert [f.id for f in gallery.faces(alice) if f.flagged] == [wrong]
    unknown = run_live(qtbot, window, str(carol))[-1]
    assert [o.label for o in unknown] == ["Unknown"]
    assert unknown[0].hint == "not close enough to anyone (nearest: Alice)"  # and why
    later = link_folder(tmp_path / "later", photos, ALICE_LATER)
    assert {o.label for o in run_live(qtbot, window, str(later))[-1]} == {"Alice"}

    # People: the flagged sample is marked, and can be used again
    people_page = window.people
    window.show_page(2)
    qtbot.waitUntil(lambda: people_page.samples.count() == len(enrolled) + 1, timeout=WAIT)
    items = [people_page.samples.item(i) for i in range(people_page.samples.count())]
    flagged = [item for item in items if "Flagged as wrong" in item.toolTip()]
    assert [item.data(FACE_ID) for item in flagged] == [wrong]
    assert not people_page.unflag_button.isEnabled()
    flagged[0].setSelected(True)
    assert people_page.unflag_button.isEnabled()
    people_page.unflag_button.click()
    wait_idle(qtbot)
    assert not any(f.flagged for f in gallery.faces(alice))
    qtbot.waitUntil(lambda: people_page.samples.count() == len(enrolled) + 1, timeout=WAIT)
    assert not any("Flagged" in people_page.samples.item(i).toolTip()
                   for i in range(people_page.samples.count()))


def test_gallery_export_import_and_switch(qtbot, open_window, photos, tmp_path, monkeypatch):
    window = open_window()
    enroll_photos(qtbot, window, "Bob", photo_paths(photos, BOB))
    page = window.settings_page
    archive = tmp_path / "backup.faceapp"
    page.export_gallery(str(archive), passphrase="correct horse", ask=False)
    wait_idle(qtbot)
    assert archive.exists() and "encrypted" in page.bulk_label.text()

    # a new, empty gallery (Settings > Change...)
    page.choose_gallery(str(tmp_path / "second.db"))
    wait_idle(qtbot)
    assert window.state.gallery_path == tmp_path / "second.db"
    assert people(window) == {}
    # the import asks for the passphrase of an encrypted export
    monkeypatch.setattr(dialogs, "open_file", lambda *a, **k: str(archive))
    monkeypatch.setattr(dialogs, "ask_password", lambda *a, **k: "wrong")
    page.import_gallery()
    wait_idle(qtbot)
    assert "passphrase" in window.banner.text() and people(window) == {}
    monkeypatch.setattr(dialogs, "ask_password", lambda *a, **k: "correct horse")
    page.import_gallery()
    wait_idle(qtbot)
    assert people(window) == {"Bob": 2}
    model = window.state.pipeline.embedder.model_id
    assert window.state.gallery.models() == {model: 2}  # computed here from the crops
    # importing again: Bob is already here, and the app asks what to do
    asked = []
    monkeypatch.setattr(dialogs, "choose", lambda parent, title, label, items, **k:
                        asked.append(label) or next(i for i in items if "rename" in i))
    page.import_gallery()
    wait_idle(qtbot)
    qtbot.waitUntil(lambda: bool(asked), timeout=WAIT)  # asked once the first try is back
    wait_idle(qtbot)
    assert "already in the gallery (Bob)" in asked[0]
    assert people(window) == {"Bob": 2, "Bob (2)": 2}
    window.show_page(2)
    qtbot.waitUntil(lambda: window.people.model.rowCount() == 2, timeout=WAIT)


def test_missing_camera_bad_file_and_bad_gallery_show_messages(qtbot, open_window,
                                                               tmp_path):
    window = open_window()
    window.show_page(0)
    window.live.set_source("7")
    qtbot.keyClick(window.live.view, Qt.Key.Key_Space)  # Space starts the video
    qtbot.waitUntil(lambda: "Camera 7" in window.banner.text(), timeout=WAIT)
    qtbot.waitUntil(lambda: not window.live.is_running, timeout=WAIT)

    window.live.set_source(str(tmp_path / "missing.mp4"))
    window.live.start()
    qtbot.waitUntil(lambda: "missing.mp4" in window.banner.text(), timeout=WAIT)
    assert not window.live.is_running

    window.show_page(1)
    window.enroll.start_capture("Eve", "7")
    qtbot.waitUntil(lambda: "capture stopped" in window.enroll.capture_hint.text(),
                    timeout=WAIT)

    # a file that is not a gallery: a message, and the current gallery stays in use
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    window.settings_page.choose_gallery(str(junk))
    wait_idle(qtbot)
    assert "junk.db" in window.banner.text()
    assert window.state.gallery_path == tmp_path / "gallery.db"
    assert window.state.is_ready and window.isVisible()


def test_damaged_gallery_at_startup_opens_the_window_with_a_message(qtbot, tmp_path):
    """The real start-up path (models loaded in the background) with a bad gallery."""
    junk = tmp_path / "broken.db"
    original = os.urandom(4096)
    junk.write_bytes(original)
    settings = AppSettings(tmp_path / "settings.ini")
    settings.gallery_path = junk
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "gallery cannot be opened" in window.banner.text(), timeout=WAIT)
    qtbot.waitUntil(lambda: window.state.pipeline is not None, timeout=WAIT)
    assert not window.state.is_ready
    assert not window.live.start_button.isEnabled()
    assert junk.read_bytes() == original  # left as it was
    # choosing another gallery in Settings makes everything usable (once the search
    # for cameras, started when the Live page showed, is done)
    wait_idle(qtbot)
    window.settings_page.choose_gallery(str(tmp_path / "good.db"))
    qtbot.waitUntil(lambda: window.state.is_ready, timeout=WAIT)
    assert window.live.start_button.isEnabled()


def test_damaged_models_show_a_message_and_the_gallery_still_works(qtbot, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("FACEAPP_MODELS_DIR", str(tmp_path / "no-models"))
    settings = AppSettings(tmp_path / "settings.ini")
    settings.gallery_path = tmp_path / "gallery.db"
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "face models cannot be loaded" in window.banner.text(),
                    timeout=WAIT)
    wait_idle(qtbot)
    assert window.state.has_gallery and not window.state.is_ready
    assert not window.enroll.photos_button.isEnabled()
    window.go_to(window.events)
    wait_idle(qtbot)
    assert window.events.loaded


def test_gui_thread_stays_responsive_during_a_bulk_import(qtbot, open_window, photos,
                                                          tmp_path):
    """A 10 ms timer on the GUI thread; the longest gap between its ticks while a
    folder of 32 photos is imported is the longest stall a person would feel."""
    window = open_window()
    names = sorted(p.stem for p in photos.glob("img*.jpg"))[:32]
    root = tmp_path / "many"
    for i in range(0, len(names), 4):
        link_folder(root / f"person{i // 4:02d}", photos, names[i:i + 4])

    meter = StallMeter()
    meter.start()
    started = time.perf_counter()
    report = import_people(qtbot, window, root)
    seconds = time.perf_counter() - started
    meter.stop()
    gaps, longest = meter.gaps, meter.longest
    print(f"\nbulk import of {len(names)} photos in {seconds:.1f} s: longest GUI stall "
          f"{longest} ms over {len(gaps)} ticks (median {sorted(gaps)[len(gaps) // 2]} ms)")
    assert report.added > 20
    assert longest < 250


def test_no_arguments_open_the_app_and_commands_still_reach_the_cli(monkeypatch):
    import faceapp.__main__ as entry
    import faceapp.cli
    import faceapp.ui.app

    calls = []
    monkeypatch.setattr(faceapp.ui.app, "run", lambda args: calls.append(("ui", args)) or 0)
    monkeypatch.setattr(faceapp.cli, "main", lambda args: calls.append(("cli", args)) or 0)
    assert entry.main([]) == 0
    assert entry.main(["--gallery", "x.db"]) == 0
    assert entry.main(["people", "list"]) == 0
    assert calls == [("ui", []), ("ui", ["--gallery", "x.db"]), ("cli", ["people", "list"])]


def test_screenshots_of_every_page(qtbot, open_window, photos, tmp_path):
    """Saves one PNG per page into $FACEAPP_SCREENSHOTS (or tmp_path) to look at."""
    out = Path(os.environ.get("FACEAPP_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    window = open_window()
    window.resize(1280, 820)
    root = tmp_path / "people"
    link_folder(root / "Alice", photos, ALICE)
    link_folder(root / "Bob", photos, BOB + ROBERT)
    link_folder(root / "Carol", photos, CAROL + ["couple"])
    import_people(qtbot, window, root)

    # a frame with a known face and a stranger side by side
    left = letterbox(load_image(photos / "img6.jpg"), (480, 600))
    right = letterbox(load_image(photos / f"{STRANGER}.jpg"), (480, 600))
    scene = tmp_path / "scene"
    scene.mkdir()
    cv2.imwrite(str(scene / "scene.jpg"), cv2.cvtColor(np.hstack([left, right]),
                                                       cv2.COLOR_RGB2BGR))
    run_live(qtbot, window, str(scene))
    window.perf_label.setText("7.9 fps · detect 61 ms · align+quality 2 ms · embed 24 ms")

    # a guided capture that got the first shot and waits for a turned head
    cam = link_folder(tmp_path / "cam", photos, ["img1"] * 4)
    window.show_page(1)
    window.enroll.start_capture("Dana", str(cam))
    qtbot.waitUntil(lambda: window.enroll.video.is_running, timeout=WAIT)
    qtbot.waitUntil(lambda: not window.enroll.video.is_running, timeout=WAIT)
    assert window.enroll.capture_progress.step == 1

    window.show_page(2)
    qtbot.waitUntil(lambda: window.people.samples.count() > 0, timeout=WAIT)
    window.go_to(window.events)
    qtbot.waitUntil(lambda: window.events.loaded, timeout=WAIT)
    wait_idle(qtbot)
    named = [r for r, row in enumerate(window.events.rows) if row.who]
    window.events.table.selectRow(named[0])  # shows "This was not <name>…"
    for i, (title, _page, _icon) in enumerate(window.pages):
        window.show_page(i)
        qtbot.wait(50)
        path = out / f"{i + 1}-{title.lower()}.png"
        assert window.grab().save(str(path))
        assert path.stat().st_size > 10_000
    window.live.set_source("7")
    window.show_page(0)
    window.live.start()
    qtbot.waitUntil(lambda: bool(window.banner.text()), timeout=WAIT)
    window.grab().save(str(out / "6-error-banner.png"))


def test_import_progress_says_nothing_before_work_and_an_empty_folder_says_why(
        qtbot, open_window, tmp_path):
    window = open_window()
    page = window.enroll
    assert page.progress.text() == ""  # not "0 / 100" before anything started
    empty = tmp_path / "nobody"
    empty.mkdir()
    report = import_people(qtbot, window, empty)
    assert not report.people and page.progress.text() == ""
    assert page.skipped.topLevelItemCount() == 1
    assert "one sub-folder per person" in page.skipped.topLevelItem(0).text(1)
    assert ".jpg" in page.skipped.topLevelItem(0).toolTip(1)


def test_an_empty_gallery_opens_on_a_first_run_note(qtbot, open_window, photos):
    window = open_window()
    assert window.stack.currentWidget() is window.enroll
    assert window.banner.text().startswith("Welcome to faceapp. Nobody is enrolled yet")
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE[:1]))
    assert window.banner.text() == ""  # gone with the first success
    window.close()
    again = open_window()  # the same gallery, now with Alice: straight to Live
    assert again.stack.currentWidget() is again.live and again.banner.text() == ""


def test_file_dialogs_open_where_the_last_one_ended(open_window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    window = open_window()
    starts = []
    folder = tmp_path / "photos"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, title, start="": starts.append(start) or str(folder))
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda parent, title, start, kinds: (
        starts.append(start) or [str(folder / "a.jpg")], kinds))
    assert dialogs.open_folder(window, "Folder") == str(folder)
    assert dialogs.open_files(window, "Photos") == [str(folder / "a.jpg")]
    assert starts == ["", str(folder)]
    assert window.state.settings.last_folder == str(folder)  # kept for the next run


def test_a_confusable_new_name_is_asked_about(qtbot, open_window, photos, monkeypatch):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE[:1]))
    asked = []
    monkeypatch.setattr(dialogs, "confirm", lambda parent, title, text, *a: asked.append(text)
                        or False)
    monkeypatch.setattr(dialogs, "open_files", lambda *a, **k: photo_paths(photos, ALICE[1:2]))
    window.enroll.import_photos("\u0410lice")  # a Cyrillic А: declined, nothing is made
    wait_idle(qtbot)
    assert len(asked) == 1 and "looks like 'Alice'" in asked[0]
    assert people(window) == {"Alice": 1}


def test_unknown_people_page_groups_live_strangers_and_names_them(qtbot, open_window,
                                                                  shared_data, tmp_path):
    """Two LFW people never enrolled pass in front of the camera (a folder played on
    Live); the Unknown people page shows a group per person; naming one enrolls it."""
    window = open_window()
    lfw = shared_data / "lfw" / "images"
    folder = tmp_path / "door"
    folder.mkdir()
    for name in ("Bob_Hope", "Ann_Veneman"):
        for photo in sorted((lfw / name).iterdir())[:4]:
            (folder / photo.name).symlink_to(photo)
    run_live(qtbot, window, str(folder))
    page = window.unknowns
    window.go_to(page)
    page.refresh()
    qtbot.waitUntil(lambda: page.clusters.count() >= 2, timeout=WAIT)
    wait_idle(qtbot)
    sizes = [c.cluster.size for c in page.cards.values()]
    # a group per person; an odd photo of one (or a face behind them) may stand apart
    largest = sorted(sizes, reverse=True)
    assert len(largest) >= 2 and largest[1] >= 3 and sum(sizes) <= 9, sizes
    biggest = max(page.cards.values(), key=lambda c: c.cluster.size).cluster
    page.select_cluster(biggest.id)
    qtbot.waitUntil(lambda: page.faces.count() == biggest.size, timeout=WAIT)
    who = {Path(p).stem.rsplit("_", 1)[0] for p in biggest.paths}
    assert len(who) == 1  # one person per group
    # split off one face, then put a name on the rest
    page.faces.item(0).setSelected(True)
    assert page.split_button.isEnabled()
    page.split_selected()
    wait_idle(qtbot)
    qtbot.waitUntil(lambda: page.selected_id is not None and page.faces.count() == 1,
                    timeout=WAIT)
    page.select_cluster(biggest.id)
    qtbot.waitUntil(lambda: page.faces.count() == biggest.size - 1, timeout=WAIT)
    page.name_selected("Visitor")
    wait_idle(qtbot)
    qtbot.waitUntil(lambda: "Visitor" in people(window), timeout=WAIT)
    assert people(window)["Visitor"] == biggest.size - 1
    qtbot.waitUntil(lambda: biggest.id not in page.cards, timeout=WAIT)


def test_enrolling_someone_already_there_offers_to_add_to_them(qtbot, open_window, photos,
                                                              monkeypatch):
    window = open_window()
    enroll_photos(qtbot, window, "Bob", photo_paths(photos, BOB))
    asked = []

    def answer(parent, title, text, buttons):
        asked.append((text, buttons))
        return 0  # "Add to Bob"

    monkeypatch.setattr(dialogs, "ask_choice", answer)
    report = enroll_photos(qtbot, window, "Robert", photo_paths(photos, ROBERT))
    assert len(asked) == 1 and "look like Bob" in asked[0][0]
    assert asked[0][1] == ["Add to Bob", "Create Robert", "Cancel"]
    assert people(window) == {"Bob": len(BOB) + len(ROBERT)} and report.added == 1
    # cancelling saves nothing
    monkeypatch.setattr(dialogs, "ask_choice", lambda *a: 2)
    report = enroll_photos(qtbot, window, "Roberto", photo_paths(photos, BOB[1:]))
    assert report.cancelled and people(window) == {"Bob": len(BOB) + len(ROBERT)}


def test_a_person_page_adds_photos_sorts_samples_and_keeps_the_chosen_portrait(
        qtbot, open_window, photos, monkeypatch):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE[:2]))
    page = window.people
    window.show_page(2)
    qtbot.waitUntil(lambda: page.selected_id is not None and page.samples.count() == 2,
                    timeout=WAIT)
    gallery = window.state.gallery
    alice = gallery.find_person("Alice").id
    qualities = {f.id: f.quality for f in gallery.faces(alice)}
    shown = [page.samples.item(i).data(FACE_ID) for i in range(page.samples.count())]
    assert shown == sorted(qualities, key=lambda f: -qualities[f])
    # more photos of her: saved without a question; Carol's photo is pointed out first
    asked = []
    monkeypatch.setattr(dialogs, "confirm",
                        lambda parent, title, text, *a, **k: asked.append(text) or False)
    page.add_photos(photo_paths(photos, CAROL))
    wait_idle(qtbot)
    assert len(asked) == 1 and "do not look like the Alice" in asked[0]
    assert people(window) == {"Alice": 2}
    page.add_photos(photo_paths(photos, ALICE[2:3]))
    wait_idle(qtbot)
    assert len(asked) == 1 and people(window) == {"Alice": 3}
    # the portrait is the chosen sample, not the best one, from now on
    qtbot.waitUntil(lambda: page.samples.count() == 3, timeout=WAIT)
    worst = page.samples.item(2)
    chosen = worst.data(FACE_ID)
    assert gallery.portrait(alice) != chosen  # the best sample, until one is chosen
    page.samples.clearSelection()
    worst.setSelected(True)
    assert page.portrait_button.isEnabled()
    page.use_as_portrait()
    wait_idle(qtbot)
    assert gallery.portrait(alice) == chosen


def test_scanning_a_photo_folder_from_the_app_finds_people_and_strangers(
        qtbot, open_window, photos, shared_data, tmp_path):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE))
    archive = tmp_path / "archive"
    link_folder(archive / "2021", photos, ALICE_LATER)
    lfw = shared_data / "lfw" / "images" / "Bob_Hope"
    (archive / "2022").mkdir()
    for photo in sorted(lfw.iterdir())[:4]:  # one of them unlike the others
        (archive / "2022" / photo.name).symlink_to(photo)
    page = window.unknowns
    window.go_to(page)
    page.scan_folder(str(archive))
    wait_idle(qtbot)
    qtbot.waitUntil(lambda: page.last_scan is not None, timeout=WAIT)
    assert page.last_scan.files == 6 and page.last_scan.known >= 2
    assert "6 photo(s) scanned" in page.scan_progress.text()
    qtbot.waitUntil(lambda: any(c.cluster.size >= 3 for c in page.cards.values()),
                    timeout=WAIT)
    # the People page lists the photos Alice was found in
    window.show_page(2)
    people_page = window.people
    qtbot.waitUntil(lambda: people_page.selected_id is not None, timeout=WAIT)
    people_page.show_photos_of()
    wait_idle(qtbot)
    listed = {people_page.photos_dialog.files.item(i).text()
              for i in range(people_page.photos_dialog.files.count())}
    assert listed == {str(p) for p in (archive / "2021").iterdir()}
    people_page.photos_dialog.close()


def test_a_shared_gallery_on_a_server_from_settings(qtbot, open_window, photos, pg_server,
                                                    tmp_path, monkeypatch):
    """Settings > Shared gallery on a server: the window uses the server's gallery,
    its events carry this station's name, and the Events page filters by station."""
    from faceapp.core.gallery import connect

    name = pg_server.create_database(f"ui_{os.urandom(4).hex()}")
    try:
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"127.0.0.1:{pg_server.port}:*:{pg_server.admin_user}:"
                          f"{pg_server.admin_password}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
        url = f"postgresql://{pg_server.admin_user}@127.0.0.1:{pg_server.port}/{name}"
        with connect(url, station="front-door") as other:  # another station's event
            other.add_event(None, 0.2, "door camera")
        window = open_window()
        page = window.settings_page
        page.use_server(pg_server.url(name))  # a password in it is refused, named
        assert "password" in window.banner.text()
        page.station_name.setText("back office")
        page.rename_station()
        page.use_server(url)
        wait_idle(qtbot)
        assert window.state.gallery_path == url and window.state.gallery.remote
        assert page.gallery_path.text() == url
        enroll_photos(qtbot, window, "Bob", photo_paths(photos, BOB))
        with connect(url) as seen_elsewhere:
            assert [(p.name, p.face_count) for p in seen_elsewhere.people()] == [("Bob", 2)]
        window.state.gallery.add_event(None, 0.3, "desk camera")
        window.go_to(window.events)
        events = window.events
        qtbot.waitUntil(lambda: events.station.count() == 3, timeout=WAIT)
        assert [events.station.itemText(i) for i in range(3)] == \
            ["All stations", "back office", "front-door"]
        events.station.setCurrentIndex(events.station.findData("front-door"))
        from faceapp.ui.events_page import STATION

        qtbot.waitUntil(lambda: events.table.rowCount() == 1
                        and events.table.item(0, STATION).text() == "front-door"
                        and not events.table.isColumnHidden(STATION), timeout=WAIT)
        assert window.state.settings.gallery_path == url  # kept for the next start
    finally:
        if "window" in locals():
            window.close()  # the app lets go of the server's database first
            wait_idle(qtbot)
        pg_server.drop_database(name)


# -- what a person who is not an engineer meets ------------------------------------------------

def test_lowering_unknown_face_retention_asks_with_the_number_deleted(
        qtbot, open_window, shared_data, tmp_path, monkeypatch):
    window = open_window()
    lfw = shared_data / "lfw" / "images"
    folder = tmp_path / "door"
    folder.mkdir()
    for photo in sorted((lfw / "Bob_Hope").iterdir())[:3]:
        (folder / photo.name).symlink_to(photo)
    run_live(qtbot, window, str(folder))
    unknowns = window.state.unknowns()
    kept = unknowns.count()
    assert kept >= 3
    page = window.settings_page
    window.go_to(page)
    asked = []
    monkeypatch.setattr(dialogs, "confirm",
                        lambda parent, title, text, *a: asked.append(text) or False)
    page.retention.setValue(0)
    page.retention.editingFinished.emit()
    wait_idle(qtbot)
    assert asked and asked[0].startswith(f"{kept} unknown faces will be deleted now")
    assert unknowns.count() == kept and page.retention.value() == 30  # declined: kept
    monkeypatch.setattr(dialogs, "confirm", lambda *a: True)
    page.retention.setValue(0)
    page.retention.editingFinished.emit()
    wait_idle(qtbot)
    assert unknowns.count() == 0
    # a longer period deletes nothing: not asked
    monkeypatch.setattr(dialogs, "confirm", lambda *a: pytest.fail("asked"))
    page.retention.setValue(60)
    page.retention.editingFinished.emit()
    wait_idle(qtbot)


def test_this_was_not_on_a_last_sample_warns_that_they_will_not_be_recognised(
        qtbot, open_window, photos, tmp_path, monkeypatch):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE[:1]))
    run_live(qtbot, window, str(link_folder(tmp_path / "later", photos, ALICE_LATER[:1])))
    page = window.events
    window.go_to(page)
    qtbot.waitUntil(lambda: page.loaded and len(page.rows) == 1, timeout=WAIT)
    page.table.selectRow(0)
    asked = []
    monkeypatch.setattr(dialogs, "confirm",
                        lambda parent, title, text, action: asked.append((text, action))
                        or False)
    page.not_this_person()
    wait_idle(qtbot)
    assert len(asked) == 1 and "last usable sample" in asked[0][0]
    assert "no longer recognised" in asked[0][0] and asked[0][1] == "Stop recognising Alice"
    gallery = window.state.gallery
    assert not any(f.flagged for f in gallery.faces(gallery.find_person("Alice").id))


def test_a_long_name_on_this_was_not_is_elided_not_clipped(qtbot, open_window, photos,
                                                           tmp_path):
    window = open_window()
    name = "Alexandrina Wilhelmina Bartholomew-Featherstonehaugh"
    enroll_photos(qtbot, window, name, photo_paths(photos, ALICE[:2]))
    run_live(qtbot, window, str(link_folder(tmp_path / "later", photos, ALICE_LATER[:1])))
    page = window.events
    window.go_to(page)
    qtbot.waitUntil(lambda: page.loaded and len(page.rows) == 1, timeout=WAIT)
    page.table.selectRow(0)
    button = page.not_button
    qtbot.wait(50)  # laid out again
    assert button.text().startswith("This was not Alex") and name not in button.text()
    assert name in button.toolTip() and button.width() >= button.sizeHint().width()
    assert page.table.isColumnHidden(6) and page.table.isColumnHidden(5)  # score, station
    page.details.setChecked(True)
    assert not page.table.isColumnHidden(6)


def test_a_video_file_pauses_seeks_and_goes_on_where_it_stopped(qtbot, open_window, photos,
                                                                 tmp_path):
    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE[:2]))
    video = write_video(tmp_path / "hall.avi", photos, ALICE_LATER * 10 + [STRANGER] * 10,
                        frames_each=5)  # 15 s at 10 frames a second
    page = window.live
    window.show_page(0)
    shown = []
    page.video.frame_ready.connect(lambda frame: shown.append(frame.position))
    page.set_source(str(video))
    page.start()
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=WAIT)
    assert page.playing_video and page.seek_row.isVisible()
    assert page.position.maximum() == 15_000
    # Space pauses a video file (it does not stop it)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert page.is_running and page.paused and page.pause_button.text() == "Play"
    qtbot.wait(300)
    held = len(shown)
    qtbot.wait(500)
    assert len(shown) == held  # nothing new while paused
    # seek while paused: that moment's frame is shown
    page.seek(12.0)
    qtbot.waitUntil(lambda: len(shown) > held, timeout=WAIT)
    assert shown[-1] == pytest.approx(12.0, abs=0.15)
    assert page.time_label.text() == "0:12 / 0:15"
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not page.paused
    qtbot.waitUntil(lambda: shown[-1] > 12.3, timeout=WAIT)
    # Stop, then Start: on from where it stopped, not from 0:00
    page.stop()
    stopped_at = page.current_frame.position
    wait_idle(qtbot)
    shown.clear()
    page.start()
    qtbot.waitUntil(lambda: bool(shown), timeout=WAIT)
    assert shown[0] == pytest.approx(stopped_at, abs=0.2) and shown[0] > 12.0
    page.stop()
    wait_idle(qtbot)


def test_the_frame_stays_while_a_faces_menu_is_open(qtbot, open_window, photos, tmp_path,
                                                    monkeypatch):
    window = open_window()
    video = write_video(tmp_path / "hall.avi", photos, ALICE_LATER * 20, frames_each=5)
    page = window.live
    window.show_page(0)
    shown = []
    page.video.frame_ready.connect(lambda frame: shown.append(frame.index))
    page.set_source(str(video))
    page.start()
    qtbot.waitUntil(lambda: bool(page.current_frame and page.current_frame.overlays),
                    timeout=WAIT)
    frame = page.current_frame
    during = []

    def menu_open(menu, position):  # the menu is up for a second
        qtbot.wait(1000)
        during.append((page.current_frame is frame, len(shown)))
        return None

    monkeypatch.setattr(dialogs, "popup", menu_open)
    before = len(shown)
    page._face_clicked(frame.overlays[0], window.mapToGlobal(window.rect().center()))
    assert during == [(True, during[0][1])] and during[0][1] <= before + 1
    assert not page.paused  # it plays on once the menu is closed
    qtbot.waitUntil(lambda: len(shown) > during[0][1] + 2, timeout=WAIT)
    page.stop()
    wait_idle(qtbot)


def test_unknown_people_fold_faces_seen_once_and_ignore_can_be_undone(
        qtbot, open_window, shared_data, tmp_path):
    window = open_window()
    lfw = shared_data / "lfw" / "images"
    folder = tmp_path / "door"
    folder.mkdir()
    for name, count in (("Bob_Hope", 4), ("Ann_Veneman", 1), ("Serena_Williams", 1)):
        for photo in sorted((lfw / name).iterdir())[:count]:
            (folder / photo.name).symlink_to(photo)
    run_live(qtbot, window, str(folder))
    page = window.unknowns
    window.go_to(page)
    page.refresh()
    wait_idle(qtbot)
    once = [c.cluster.id for c in page.cards.values() if c.cluster.size == 1]
    groups = [c.cluster.id for c in page.cards.values() if c.cluster.size > 1]
    assert len(once) >= 2 and groups
    assert set(page.listed_ids()) == set(groups)  # one-face groups are folded
    assert "seen only once" in page.count_label.text()
    fold = next(page.clusters.item(r) for r in range(page.clusters.count())
                if page.clusters.item(r).data(Qt.ItemDataRole.UserRole + 1) == -1)
    assert fold.text() == f"Seen once: {len(once)} faces"
    page.clusters.itemClicked.emit(fold)
    assert set(page.listed_ids()) == set(groups) | set(once)
    # short places: the file name, the whole path on hover
    page.select_cluster(groups[0])
    assert "/" not in page.where.text() and str(folder) in page.where.toolTip()
    # Ignore says so and can be undone
    page.ignore_selected()
    wait_idle(qtbot)
    assert groups[0] not in page.cards and page.undo_bar.isVisible()
    assert "no longer listed" in page.undo_label.text()
    page.undo_button.click()
    wait_idle(qtbot)
    assert groups[0] in page.cards and not page.undo_bar.isVisible()


def test_the_import_report_says_what_each_person_folder_gave(qtbot, open_window, photos,
                                                             tmp_path):
    window = open_window()
    root = tmp_path / "people"
    link_folder(root / "Alice", photos, ALICE[:2])
    broken = root / "Broken_Person"
    broken.mkdir()
    (broken / "notes.jpg").write_text("not a photo")
    (root / "Empty_Folder").mkdir()
    import_people(qtbot, window, root)
    tree = window.enroll.skipped
    rows = {tree.topLevelItem(i).text(0): tree.topLevelItem(i)
            for i in range(tree.topLevelItemCount())}
    assert set(rows) == {"Broken_Person", "Empty_Folder"}  # Alice's gave her: not listed
    assert rows["Broken_Person"].text(1).startswith("nobody added from this folder")
    assert rows["Broken_Person"].child(0).text(0) == "notes.jpg"
    assert rows["Broken_Person"].child(0).toolTip(0) == str(broken / "notes.jpg")
    assert rows["Empty_Folder"].text(1) == ("nobody added from this folder: no photos in "
                                            "this folder")
    # whole reasons: the rows are as tall as their wrapped text
    reason = rows["Broken_Person"].child(0)
    delegate = tree.itemDelegate()
    assert delegate is not None and tree.visualItemRect(reason).height() >= 14


def test_quit_after_counts_this_runs_events_only(qtbot, open_window, photos, tmp_path):
    from datetime import datetime

    from faceapp.ui.app import run_events

    window = open_window()
    enroll_photos(qtbot, window, "Alice", photo_paths(photos, ALICE[:2]))
    later = link_folder(tmp_path / "later", photos, ALICE_LATER)
    run_live(qtbot, window, str(later))
    before = window.state.gallery.event_count()
    assert before >= 2
    qtbot.wait(1100)  # events are kept to the second
    started = datetime.now().replace(microsecond=0)
    run_live(qtbot, window, str(later))
    assert run_events(window, started) == window.state.gallery.event_count() - before


def test_help_menu_and_shortcuts(open_window):
    window = open_window()
    texts = [a.text() for a in window.help_menu.actions() if a.text()]
    assert texts == ["Getting started", "Keyboard shortcuts", "About faceapp"]
    about = window.about_text()
    assert "CC0-1.0" in about and "MIT" in about and "faceapp 0.1.0" in about
