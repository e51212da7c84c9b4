"""The Live page: pick a source, start/stop, watch faces being named; click a face to
enroll it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QMenu, QPushButton,
                               QSizePolicy, QSlider, QStyle, QToolButton, QVBoxLayout, QWidget)

from ..core.sources import VideoFileSource, list_cameras, open_source
from . import dialogs
from .live import KNOWN, UNKNOWN, LiveFrame, RecognizeAnalyzer, VideoSession, make_source
from .state import AppState
from .video_view import VideoView
from .widgets import muted, named

CAMERA_ITEM = re.compile(r"^Camera (\d+)$")
PLACEHOLDER = ("No video.\n\nChoose a camera, a video file, a folder of photos or a stream "
               "address above, then press Start (Space).")


def clock(seconds: float | None) -> str:
    """Media time as a person reads it: 1:05, 1:02:03."""
    total = int(seconds or 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def is_video_file(spec: str) -> bool:
    try:
        return isinstance(open_source(spec), VideoFileSource)
    except Exception:
        return False


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
    stats_detail = ""  # the time each stage of the last frame took (a tooltip)
    frames_shown = 0  # since the window opened (the soak test and --live's summary)
    first_frame_at: float | None = None  # time.monotonic() of the first one
    alerts = None  # the window's AlertCenter (alerts_page.py): the watch list's alerts

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.video = VideoSession(self)
        self.video.frame_ready.connect(self._show)
        self.video.failed.connect(self._failed)
        self.video.ended.connect(self._ended)
        self.video.running_changed.connect(self._running_changed)
        self.current_frame: LiveFrame | None = None
        self.frozen = False  # a face's menu is open: the frame on screen stays
        self.playing_video = False  # the running source is a video file (pause, seek)
        self._resume: tuple[str, float] | None = None  # a stopped video: (spec, seconds)
        self._running_spec = ""
        self.names_seen: set[str] = set()
        self._events_note = 0.0
        self._cameras_looked_for = False

        self.source_box = named(QComboBox(), "Source")
        self.source_box.setEditable(True)
        self.source_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.source_box.lineEdit().setPlaceholderText(
            "Camera number, video file, folder of photos or rtsp:// address")
        self.source_box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.source_box.setMinimumContentsLength(12)
        self.source_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        # the last source used, else the default camera chosen in Settings
        self.source_box.setEditText(state.settings.last_source or
                                    f"Camera {state.settings.camera_index}")
        self.source_box.lineEdit().returnPressed.connect(self.start)

        style = self.style()
        video_button = named(QPushButton("Video file…"), "Choose a video file")
        video_button.clicked.connect(self.choose_video)
        folder_button = named(QPushButton("Photo folder…"), "Choose a folder of photos")
        folder_button.clicked.connect(self.choose_folder)
        cameras_button = named(QToolButton(), "Look for cameras again")
        cameras_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        cameras_button.setToolTip("Look for cameras again")
        cameras_button.clicked.connect(lambda: self.find_cameras(asked=True))
        self.start_button = named(QPushButton(), "Start or stop the video")
        self.start_button.setMinimumWidth(96)
        self.start_button.clicked.connect(self.toggle)

        # a video file: pause, and a position to go to
        self.pause_button = named(QToolButton(), "Pause or play the video file")
        self.pause_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.position = named(QSlider(Qt.Orientation.Horizontal), "Position in the video")
        self.position.setRange(0, 0)
        self.position.setToolTip("Drag (or use the arrow keys) to go to another moment "
                                 "of the video")
        self.position.setPageStep(10_000)
        self.position.setSingleStep(5_000)
        self.position.sliderReleased.connect(self._seek_to_slider)
        self.position.actionTriggered.connect(self._slider_action)
        self.time_label = QLabel("")
        self.seek_row = QWidget()
        seek_layout = QHBoxLayout(self.seek_row)
        seek_layout.setContentsMargins(0, 0, 0, 0)
        seek_layout.addWidget(self.pause_button)
        seek_layout.addWidget(self.position, 1)
        seek_layout.addWidget(self.time_label)
        self.seek_row.hide()

        source_label = QLabel("&Source:")
        source_label.setBuddy(self.source_box)
        row = QHBoxLayout()
        row.addWidget(source_label)
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
        self.faces_label.setWordWrap(True)
        self.show_scores = named(QCheckBox("Show scores"), "Show the match scores")
        self.show_scores.setToolTip("Beside each name: the score the decision used, and the "
                                    "score it had to reach (see Settings)")
        self.show_scores.toggled.connect(self._scores_toggled)
        tip = muted("Green: a person in the gallery. Orange: unknown. Grey: too unclear to "
                    "tell. Click a face to enroll it.")
        bottom = QHBoxLayout()
        bottom.addWidget(tip, 1)
        bottom.addWidget(self.show_scores, 0, Qt.AlignmentFlag.AlignTop)

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.seek_row)
        layout.addWidget(self.faces_label)
        layout.addLayout(bottom)

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

    def play_pause(self) -> None:
        """Space: pause or play a video file; start or stop anything else."""
        if self.is_running and self.playing_video:
            self.toggle_pause()
        else:
            self.toggle()

    @property
    def paused(self) -> bool:
        return self.video.paused

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool) -> None:
        if not (self.is_running and self.playing_video):
            return
        self.video.pause(paused)
        self._update_buttons()
        self.state.message.emit("Paused: Space plays on" if paused else "Playing")

    def seek(self, seconds: float) -> None:
        """Go to this moment of the video file being played (paused or not)."""
        if self.is_running and self.playing_video:
            self.video.seek(seconds)

    def _seek_to_slider(self) -> None:
        self.seek(self.position.sliderPosition() / 1000.0)

    def _slider_action(self, _action) -> None:
        if not self.position.isSliderDown():  # keys and clicks on the groove
            self.seek(self.position.sliderPosition() / 1000.0)

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
        self.frozen = False
        self.view.set_frame(None)
        self.view.set_placeholder(f"Opening {spec}…")
        self.faces_label.setText("")
        self.playing_video = is_video_file(spec)
        # a video stopped part-way goes on from there (its end: from the start)
        start_at = self._resume[1] if self._resume and self._resume[0] == spec else None
        self._resume = None
        self._running_spec = spec
        self.position.setRange(0, 0)
        self.time_label.setText("")
        alerts = self.alerts.watcher_for(spec) if self.alerts is not None else None
        self.video.start(lambda: make_source(spec, folder_fps=folder_fps, loop=loop,
                                             camera_size=camera_size),
                         lambda: RecognizeAnalyzer(pipeline, gallery, lambda: state.options,
                                                   alerts=alerts),
                         start_at=start_at)
        if not has_password(spec):
            state.settings.last_source = spec
        state.message.emit(f"Started {spec}")

    def stop(self) -> None:
        if self.is_running and self.playing_video and self.current_frame is not None \
                and self.current_frame.position is not None:
            self._resume = (self._running_spec, self.current_frame.position)
        self.video.stop()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.video.shutdown(timeout_ms)

    def _video_claimed(self, owner) -> None:
        if owner is not self:
            self.stop()

    # -- from the worker ---------------------------------------------------------------------
    def _show(self, frame: LiveFrame) -> None:
        if self.frozen:  # a face's menu is open over this frame: keep it
            return
        if frame.position is not None:
            self._show_position(frame)
        if not self.frames_shown:
            self.first_frame_at = time.monotonic()
        self.frames_shown += 1
        self.current_frame = frame
        self.view.set_frame(frame)
        self.names_seen.update(o.label for o in frame.overlays if o.kind == KNOWN)
        self.faces_label.setText(self._faces_text(frame))
        stages = " · ".join(f"{stage} {ms:.0f} ms" for stage, ms in frame.timings_ms.items())
        note = f" · {frame.extra}" if isinstance(frame.extra, str) else ""
        self.stats_detail = f"{frame.fps:.1f} fps · {stages}"
        self.stats_changed.emit(f"{frame.fps:.1f} frames a second{note}")
        now = time.monotonic()
        if frame.overlays and now - self._events_note > 2.0:
            self._events_note = now
            self.state.events_changed.emit()  # the recognizer may have logged some

    def _show_position(self, frame: LiveFrame) -> None:
        duration = frame.duration or 0.0
        if not self.position.isSliderDown():
            self.position.blockSignals(True)
            self.position.setRange(0, int(duration * 1000))
            self.position.setValue(int(frame.position * 1000))
            self.position.blockSignals(False)
        self.time_label.setText(f"{clock(frame.position)} / {clock(duration)}"
                                if duration else clock(frame.position))

    def _scores_toggled(self, on: bool) -> None:
        self.view.show_scores = on
        self.view.update()
        if self.current_frame is not None:
            self.faces_label.setText(self._faces_text(self.current_frame))

    def _faces_text(self, frame: LiveFrame) -> str:
        if not frame.overlays:
            return f"<b>{frame.source}</b>: no face in view"
        parts = []
        for o in frame.overlays:
            colour = {KNOWN: "#1e8449", UNKNOWN: "#d35400"}.get(o.kind, "#707070")
            score = ""
            if self.show_scores.isChecked() and o.score is not None:
                score = f" {o.score:.2f}" + (f" / {o.bar:.2f}" if o.bar is not None else "")
            why = f" ({o.hint})" if o.kind == UNKNOWN and o.hint else ""
            parts.append(f"<span style='color:{colour}'><b>{o.label}</b>{score}</span>{why}")
        return f"<b>{frame.source}</b>: " + ", ".join(parts)

    def _failed(self, text: str) -> None:
        self.view.set_placeholder(f"{text}\n\nCheck the source, then press Start (Space).")
        self.state.error.emit(text)

    def _ended(self, text: str) -> None:
        self._resume = None  # the next Start plays it from the beginning
        self.state.events_changed.emit()
        self.state.message.emit(f"{text}; the last frame stays on screen")

    def _running_changed(self, running: bool) -> None:
        if not running:
            self.stats_changed.emit("")
        self._update_buttons()

    def _update_buttons(self) -> None:
        style = self.style()
        video = self.is_running and self.playing_video
        self.seek_row.setVisible(video)
        if video and self.paused:
            self.pause_button.setText("Play")
            self.pause_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        else:
            self.pause_button.setText("Pause")
            self.pause_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPause))
        self.pause_button.setToolTip("Pause or play the video file (Space)")
        if self.is_running:
            self.start_button.setText("Stop")
            self.start_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop))
        else:
            self.start_button.setText("Start")
            self.start_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.start_button.setEnabled(self.state.is_ready or self.is_running)
        self.start_button.setToolTip("Start or stop the video (Space; a video file: Space "
                                     "pauses)")
        self.running_changed.emit(self.is_running)

    # -- enrolling from the video --------------------------------------------------------------
    def _face_clicked(self, overlay, position) -> None:
        """A menu for the face clicked; the frame stays still while it (and the questions
        after it) are open, so the face does not walk away from under it."""
        frame = self.current_frame
        if frame is None or overlay.face is None or not self.state.is_ready:
            return
        was_paused = self.paused
        self.frozen = True
        self.video.pause(True)  # a video file waits; a camera's new frames are not shown
        try:
            self._face_menu(frame, overlay, position)
        finally:
            self.frozen = False
            if not was_paused:
                self.video.pause(False)

    def _face_menu(self, frame: LiveFrame, overlay, position) -> None:
        self.face_menu = menu = QMenu(self)
        same = None
        if overlay.kind == KNOWN:
            same = menu.addAction(f"Add this face to {overlay.label}")
        new = menu.addAction("Enroll as a new person…")
        existing = menu.addAction("Add to an existing person…")
        chosen = dialogs.popup(menu, position)
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
