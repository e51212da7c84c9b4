"""The Live page: pick a source, start/stop, watch faces being named; click a face to
enroll it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QMenu, QPushButton,
                               QSizePolicy, QStyle, QToolButton, QVBoxLayout, QWidget)

from ..core.sources import list_cameras
from . import dialogs
from .live import KNOWN, UNKNOWN, LiveFrame, RecognizeAnalyzer, VideoSession, make_source
from .state import AppState
from .video_view import VideoView
from .widgets import muted

CAMERA_ITEM = re.compile(r"^Camera (\d+)$")
PLACEHOLDER = ("No video.\n\nChoose a camera, a video file, a folder of photos or a stream "
               "address above, then press Start (Space).")


def has_password(spec: str) -> bool:
    try:
        return bool(urlsplit(spec).password)
    except ValueError:
        return False


class LivePage(QWidget):
    stats_changed = Signal(str)  # frame rate and stage timings, for the status bar
    running_changed = Signal(bool)

    folder_fps: float | None = 1.0  # photos of a folder are shown one a second
    loop_videos = False
    frames_shown = 0  # since the window opened (the soak test and --live's summary)
    first_frame_at: float | None = None  # time.monotonic() of the first one

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.video = VideoSession(self)
        self.video.frame_ready.connect(self._show)
        self.video.failed.connect(self._failed)
        self.video.ended.connect(self._ended)
        self.video.running_changed.connect(self._running_changed)
        self.current_frame: LiveFrame | None = None
        self.names_seen: set[str] = set()
        self._events_note = 0.0
        self._cameras_looked_for = False

        self.source_box = QComboBox()
        self.source_box.setEditable(True)
        self.source_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.source_box.lineEdit().setPlaceholderText(
            "Camera number, video file, folder of photos or rtsp:// address")
        self.source_box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.source_box.setMinimumContentsLength(30)
        # the last source used, else the default camera chosen in Settings
        self.source_box.setEditText(state.settings.last_source or
                                    f"Camera {state.settings.camera_index}")
        self.source_box.lineEdit().returnPressed.connect(self.start)

        style = self.style()
        video_button = QPushButton("Video file…")
        video_button.clicked.connect(self.choose_video)
        folder_button = QPushButton("Photo folder…")
        folder_button.clicked.connect(self.choose_folder)
        cameras_button = QToolButton()
        cameras_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        cameras_button.setToolTip("Look for cameras again")
        cameras_button.clicked.connect(lambda: self.find_cameras(asked=True))
        self.start_button = QPushButton()
        self.start_button.setMinimumWidth(110)
        self.start_button.clicked.connect(self.toggle)

        row = QHBoxLayout()
        row.addWidget(QLabel("Source:"))
        row.addWidget(self.source_box, 1)
        row.addWidget(cameras_button)
        row.addWidget(video_button)
        row.addWidget(folder_button)
        row.addSpacing(12)
        row.addWidget(self.start_button)

        self.view = VideoView(PLACEHOLDER)
        self.view.face_clicked.connect(self._face_clicked)
        self.faces_label = QLabel("")
        self.faces_label.setTextFormat(Qt.TextFormat.RichText)
        tip = muted("Green: a person in the gallery. Orange: unknown. Grey: too unclear to "
                    "tell. Click a face to enroll it.")

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.faces_label)
        layout.addWidget(tip)

        state.video_claimed.connect(self._video_claimed)
        state.ready_changed.connect(self._update_buttons)
        state.options_changed.connect(self._camera_changed)
        self._default_camera = state.settings.camera_index
        self._update_buttons()

    def _camera_changed(self) -> None:
        """Follow the default camera of Settings unless another source was chosen."""
        camera = self.state.settings.camera_index
        if self.source_box.currentText().strip() in ("", f"Camera {self._default_camera}"):
            self.source_box.setEditText(f"Camera {camera}")
        self._default_camera = camera

    # -- sources -----------------------------------------------------------------------------
    def current_spec(self) -> str:
        text = self.source_box.currentText().strip()
        match = CAMERA_ITEM.match(text)
        return match.group(1) if match else text

    def set_source(self, spec: str) -> None:
        self.source_box.setEditText(spec)

    def choose_video(self) -> None:
        path = dialogs.open_file(self, "Play a video file", dialogs.VIDEO_FILTER)
        if path:
            self.set_source(path)

    def choose_folder(self) -> None:
        path = dialogs.open_folder(self, "Go through a folder of photos")
        if path:
            self.set_source(path)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._cameras_looked_for:  # once, in the background, when first shown
            self._cameras_looked_for = True
            self.find_cameras()

    def find_cameras(self, asked: bool = False) -> None:
        """Look for cameras in the background. asked: the person clicked "Refresh
        cameras", so the box follows what was found (else a configured default stays)."""
        def found(indexes: list[int]) -> None:
            typed = self.source_box.currentText()
            self.source_box.clear()
            self.source_box.addItems([f"Camera {i}" for i in indexes])
            if asked and typed.startswith("Camera ") and \
                    typed not in (f"Camera {i}" for i in indexes):
                # the box must not offer a camera that is not there
                typed = f"Camera {indexes[0]}" if indexes else ""
                self.source_box.lineEdit().setPlaceholderText(
                    "No camera found: a video file, a folder of photos or a stream address"
                    if not indexes else self.source_box.lineEdit().placeholderText())
            self.source_box.setEditText(typed)
            self.state.message.emit(f"{len(indexes)} camera(s) found" if indexes
                                    else "No camera found")

        self.state.run(lambda job: list_cameras(), found, what="Looking for cameras")

    # -- start / stop ------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.video.is_running

    def toggle(self) -> None:
        if self.is_running:
            self.stop()
        else:
            self.start()

    def start(self) -> None:
        spec = self.current_spec()
        if not self.state.is_ready:
            self.state.error.emit("The gallery and the face models are not loaded yet.")
            return
        if not spec:
            self.state.error.emit("Choose a source first: a camera, a video file, a folder "
                                  "of photos or a stream address.")
            return
        self.state.video_claimed.emit(self)
        state, folder_fps, loop = self.state, self.folder_fps, self.loop_videos
        pipeline, gallery = state.pipeline, state.gallery
        camera_size = state.settings.camera_size()
        self.names_seen.clear()
        self.current_frame = None
        self.view.set_frame(None)
        self.view.set_placeholder(f"Opening {spec}…")
        self.faces_label.setText("")
        self.video.start(lambda: make_source(spec, folder_fps=folder_fps, loop=loop,
                                             camera_size=camera_size),
                         lambda: RecognizeAnalyzer(pipeline, gallery, lambda: state.options))
        if not has_password(spec):
            state.settings.last_source = spec
        state.message.emit(f"Started {spec}")

    def stop(self) -> None:
        self.video.stop()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.video.shutdown(timeout_ms)

    def _video_claimed(self, owner) -> None:
        if owner is not self:
            self.stop()

    # -- from the worker ---------------------------------------------------------------------
    def _show(self, frame: LiveFrame) -> None:
        if not self.frames_shown:
            self.first_frame_at = time.monotonic()
        self.frames_shown += 1
        self.current_frame = frame
        self.view.set_frame(frame)
        self.names_seen.update(o.label for o in frame.overlays if o.kind == KNOWN)
        self.faces_label.setText(self._faces_text(frame))
        stages = " · ".join(f"{stage} {ms:.0f} ms" for stage, ms in frame.timings_ms.items())
        note = f" · {frame.extra}" if isinstance(frame.extra, str) else ""
        self.stats_changed.emit(f"{frame.fps:.1f} fps · {stages}{note}")
        now = time.monotonic()
        if frame.overlays and now - self._events_note > 2.0:
            self._events_note = now
            self.state.events_changed.emit()  # the recognizer may have logged some

    @staticmethod
    def _faces_text(frame: LiveFrame) -> str:
        if not frame.overlays:
            return f"<b>{frame.source}</b>: no face in view"
        parts = []
        for o in frame.overlays:
            colour = {KNOWN: "#1e8449", UNKNOWN: "#d35400"}.get(o.kind, "#707070")
            score = f" {o.score:.2f}" if o.score is not None else ""
            parts.append(f"<span style='color:{colour}'><b>{o.label}</b>{score}</span>")
        return f"<b>{frame.source}</b>: " + ", ".join(parts)

    def _failed(self, text: str) -> None:
        self.view.set_placeholder(f"{text}\n\nCheck the source, then press Start (Space).")
        self.state.error.emit(text)

    def _ended(self, text: str) -> None:
        self.state.events_changed.emit()
        self.state.message.emit(f"{text}; the last frame stays on screen")

    def _running_changed(self, running: bool) -> None:
        if not running:
            self.stats_changed.emit("")
        self._update_buttons()

    def _update_buttons(self) -> None:
        style = self.style()
        if self.is_running:
            self.start_button.setText("Stop")
            self.start_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop))
        else:
            self.start_button.setText("Start")
            self.start_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.start_button.setEnabled(self.state.is_ready or self.is_running)
        self.start_button.setToolTip("Start or stop the video (Space)")
        self.running_changed.emit(self.is_running)

    # -- enrolling from the video --------------------------------------------------------------
    def _face_clicked(self, overlay, position) -> None:
        frame = self.current_frame
        if frame is None or overlay.face is None or not self.state.is_ready:
            return
        menu = QMenu(self)
        same = None
        if overlay.kind == KNOWN:
            same = menu.addAction(f"Add this face to {overlay.label}")
        new = menu.addAction("Enroll as a new person…")
        existing = menu.addAction("Add to an existing person…")
        chosen = menu.exec(position)
        if chosen is None:
            return
        if chosen is same:
            self.enroll_face(frame, overlay, overlay.person_id)
        elif chosen is new:
            name = dialogs.ask_text(self, "Enroll a new person", "Name:")
            if name:
                self.enroll_face(frame, overlay, name)
        elif chosen is existing:
            names = [p.name for p in self.state.gallery.people()]
            if not names:
                self.state.error.emit("The gallery has nobody yet: enroll a new person.")
                return
            name = dialogs.choose(self, "Add to a person", "Person:", names)
            if name:
                self.enroll_face(frame, overlay, name)

    def enroll_face(self, frame: LiveFrame, overlay, person: str | int) -> None:
        """Check this face's quality and store it for person (a name, new or not, or an id)."""
        state, image, face, source = self.state, frame.rgb, overlay.face, frame.source

        def work(job):
            enroller = state.enroller
            sample = enroller.prepare(image, source, face=face)
            person_id, _ = enroller.save(person, [sample])
            return state.gallery.person(person_id).name

        def done(name: str) -> None:
            state.message.emit(f"Added this face to {name}")
            state.gallery_changed.emit()

        state.run(work, done, what="This face cannot be enrolled")
