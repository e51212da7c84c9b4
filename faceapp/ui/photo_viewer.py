"""The photo viewer: one photo at a time, scaled to fit, with a box and a name on every
face the app finds (previous / next through a list of photos), where a person can
drag a box around a face the detector missed and name it: the face becomes a sample
of that person (core/manual_face.py), saved as enrolment saves.

Reading the photo, recognising its faces, finding the drawn face and saving it all
run as background jobs; the GUI thread only paints and asks."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QKeySequence, QPainter, QPen
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout,
                               QWidget)

from ..core.imageio import read_image
from ..core.sources import Frame
from . import dialogs
from .images import shrink, to_qimage
from .live import ACCEPTED, FaceOverlay, LiveFrame, RecognizeAnalyzer
from .state import AppState
from .video_view import VideoView
from .widgets import heading, muted, named

DISPLAY_SIDE = 1600  # the photo is shrunk to this for painting, in the job
MIN_DRAG = 8.0  # widget pixels: a shorter drag is a click
PROBLEM = "color: #b03a2e;"


class PhotoView(VideoView):
    """The photo and its face boxes; a drag with the left button draws a box and
    emits box_drawn with it in the photo's pixels."""

    box_drawn = Signal(object)  # (x1, y1, x2, y2) in the photo's pixels

    def __init__(self, parent=None):
        super().__init__("", parent)
        self.clickable = False
        self.drawing_enabled = True
        self.pending: tuple[float, float, float, float] | None = None  # being checked
        self._start: QPointF | None = None
        self._end: QPointF | None = None
        self.setMinimumSize(480, 320)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def to_photo(self, pos: QPointF) -> tuple[float, float] | None:
        """Widget position -> the photo's pixels (kept inside the photo)."""
        if self.frame is None:
            return None
        target = self._image_rect()
        k = self.frame.scale * target.width() / self.frame.image.width()
        x = min(max(pos.x(), target.left()), target.right())
        y = min(max(pos.y(), target.top()), target.bottom())
        return (x - target.left()) / k, (y - target.top()) / k

    def from_photo(self, x: float, y: float) -> QPointF:
        """The photo's pixels -> a widget position."""
        target = self._image_rect()
        k = self.frame.scale * target.width() / self.frame.image.width()
        return QPointF(target.left() + x * k, target.top() + y * k)

    def mousePressEvent(self, event) -> None:
        if (event.button() == Qt.MouseButton.LeftButton and self.frame is not None
                and self.drawing_enabled and self._image_rect().contains(event.position())):
            self._start = self._end = event.position()
            self.update()

    def mouseMoveEvent(self, event) -> None:
        if self._start is not None:
            self._end = event.position()
            self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._start is None or event.button() != Qt.MouseButton.LeftButton:
            return
        start, end = self._start, event.position()
        self._start = self._end = None
        self.update()
        if abs(end.x() - start.x()) < MIN_DRAG or abs(end.y() - start.y()) < MIN_DRAG:
            return
        a, b = self.to_photo(start), self.to_photo(end)
        if a is None or b is None:
            return
        self.box_drawn.emit((min(a[0], b[0]), min(a[1], b[1]),
                             max(a[0], b[0]), max(a[1], b[1])))

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        rect = None
        if self._start is not None and self._end is not None:
            rect = QRectF(self._start, self._end).normalized()
        elif self.pending is not None and self.frame is not None:
            x1, y1, x2, y2 = self.pending
            rect = QRectF(self.from_photo(x1, y1), self.from_photo(x2, y2))
        if rect is None:
            return
        painter = QPainter(self)
        painter.setPen(QPen(QColor("black"), 3))
        painter.drawRect(rect)
        pen = QPen(QColor("white"), 2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRect(rect)
        painter.end()


class PhotoViewer(QDialog):
    """One photo of `paths` at a time; Previous / Next go through the others."""

    def __init__(self, state: AppState, paths: list[str], index: int = 0, parent=None):
        super().__init__(parent)
        self.state = state
        self.paths = [str(p) for p in paths]
        self.index = min(max(index, 0), max(len(self.paths) - 1, 0))
        self.rgb = None  # the photo being shown, as read (for a drawn face)
        self.overlays: list[FaceOverlay] = []  # the faces recognised in it
        self.drawn: dict[str, list[FaceOverlay]] = {}  # faces added by hand, per photo
        self.recognised = False  # the faces of the photo shown are known
        self.checking = False  # a drawn face is being looked at or saved
        self.problem = ""  # why the last drawn face was not saved
        self._generation = 0

        self.setWindowTitle("Photo")
        self.title = heading("")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where = muted()
        self.view = named(PhotoView(), "The photo, with a box around each face found")
        self.view.box_drawn.connect(self.name_box)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.hint = muted("A face without a box? Drag a box around it with the mouse, then "
                          "say who it is: it becomes one of their samples.")
        self.previous_button = QPushButton("Previous")
        self.previous_button.setToolTip("Left arrow")
        self.previous_button.setShortcut(QKeySequence(Qt.Key.Key_Left))
        self.previous_button.clicked.connect(lambda: self.go(-1))
        self.next_button = QPushButton("Next")
        self.next_button.setToolTip("Right arrow")
        self.next_button.setShortcut(QKeySequence(Qt.Key.Key_Right))
        self.next_button.clicked.connect(lambda: self.go(1))
        self.desktop_button = QPushButton("Open with the desktop's viewer")
        self.desktop_button.clicked.connect(lambda: self.open_on_desktop())
        close = QPushButton("Close")
        close.clicked.connect(self.close)

        buttons = QHBoxLayout()
        buttons.addWidget(self.previous_button)
        buttons.addWidget(self.next_button)
        buttons.addStretch(1)
        buttons.addWidget(self.desktop_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.where)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.hint)
        layout.addLayout(buttons)
        self.resize(1000, 760)
        self.set_photos(self.paths, self.index)

    def set_photos(self, paths: list[str], index: int = 0) -> None:
        """Show these photos from the index-th on."""
        self.paths = [str(p) for p in paths]
        self.index = min(max(index, 0), max(len(self.paths) - 1, 0))
        several = len(self.paths) > 1
        self.previous_button.setVisible(several)
        self.next_button.setVisible(several)
        if self.paths:
            self.show_photo(self.index)

    @property
    def path(self) -> str:
        return self.paths[self.index]

    # -- one photo --------------------------------------------------------------------------
    def go(self, step: int) -> None:
        if len(self.paths) > 1:
            self.show_photo((self.index + step) % len(self.paths))

    def show_photo(self, index: int) -> None:
        """Read the photo (a job), show it, then find and name its faces (a job)."""
        self.index = index
        self._generation += 1
        generation, path = self._generation, self.path
        self.rgb, self.overlays, self.recognised = None, [], False
        self.view.pending = None
        self.view.set_frame(None)
        self.view.set_placeholder("Opening the photo…")
        self.title.setText(Path(path).name or path)
        self.where.setText(str(Path(path).parent) + (f" · photo {index + 1} of "
                                                     f"{len(self.paths)}" if len(self.paths) > 1
                                                     else ""))
        self.setWindowTitle(f"Photo: {Path(path).name}")
        self._say("")

        def read(job):
            rgb, scale = read_image(path)  # huge or hostile files: refused with a reason
            small, k = shrink(rgb, DISPLAY_SIDE)
            return rgb, scale, to_qimage(small), k

        self.state.run(read, lambda result: self._read(generation, path, *result),
                       what=f"Opening {Path(path).name}",
                       on_error=lambda text: self._unreadable(generation, text))

    def _unreadable(self, generation: int, text: str) -> None:
        if generation != self._generation:
            return
        self.view.set_placeholder(f"This photo cannot be shown: {text}")
        self._say("")

    def _read(self, generation: int, path: str, rgb, scale: float, image, k: float) -> None:
        if generation != self._generation:
            return
        self.rgb = rgb
        self._show_faces()
        self.view.set_frame(LiveFrame(image, k, rgb, self._all_overlays(), {}, 0.0, path, 0,
                                      path=path))
        if not self.state.is_ready:
            self._say("The face models are still loading: faces are not marked yet.")
            return
        self._say("Looking for faces…")
        state, options = self.state, self.state.options
        pipeline, gallery = state.pipeline, state.gallery

        def recognise(job):
            analyzer = RecognizeAnalyzer(pipeline, gallery, lambda: options, log_events=False)
            frame = Frame(rgb, 0, 0.0, path, path=path, scale=scale)
            overlays, _timings, _note = analyzer.analyze(frame, track=False)
            return overlays

        state.run(recognise, lambda overlays: self._recognised(generation, overlays),
                  what="Finding the faces in the photo",
                  on_error=lambda text: self._say(f"The faces could not be found: {text}",
                                                  problem=True)
                  if generation == self._generation else None)

    def _recognised(self, generation: int, overlays: list[FaceOverlay]) -> None:
        if generation != self._generation:
            return
        self.overlays, self.recognised = overlays, True
        self._show_faces()
        labels = [o.label for o in overlays]
        if not labels:
            self._say("No face was found in this photo.")
        else:
            counted = {label: labels.count(label) for label in labels}
            names = ", ".join(f"{label} ({n})" if n > 1 else label
                              for label, n in counted.items())
            self._say(f"{len(labels)} face{'s' if len(labels) != 1 else ''} found: {names}.")

    def _all_overlays(self) -> list[FaceOverlay]:
        return self.overlays + self.drawn.get(self.path, [])

    def _show_faces(self) -> None:
        frame = self.view.frame
        if frame is not None:
            frame.overlays = self._all_overlays()
            self.view.update()

    def _say(self, text: str, problem: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(PROBLEM if problem else "")

    def open_on_desktop(self) -> None:
        if self.paths:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.path))

    # -- a face the detector missed ------------------------------------------------------------
    def name_box(self, box) -> None:
        """A box was drawn: ask who it is, then find the face in it and save it (jobs)."""
        state = self.state
        if self.rgb is None or self.checking:
            return
        if not state.is_ready:
            self._say("The face models are still loading: try again in a moment.", True)
            return
        if state.gallery.read_only:
            self._say("This gallery is open read-only: faces cannot be added to it.", True)
            return
        self.checking = True
        self._update_buttons()
        self.view.pending = tuple(box)
        self.view.update()
        gallery = state.gallery
        generation = self._generation
        state.run(lambda job: sorted(gallery.person_names().values(), key=str.casefold),
                  lambda names: self._ask_name(generation, box, names),
                  what="Reading the names",
                  on_error=lambda text: self._not_saved(generation, text))

    def _ask_name(self, generation: int, box, names: list[str]) -> None:
        if generation != self._generation:
            self._done_checking()
            return
        name = dialogs.ask_person(self, "Who is this?",
                                  "Choose the person this face belongs to, or type the name "
                                  "of someone new.", names)
        if not name:
            self._done_checking()
            self._say("Nothing was saved.")
            return
        self._say(f"Looking for {name}'s face in the box…")
        state, rgb, source = self.state, self.rgb, self.path
        gallery, enroller = state.gallery, state.enroller

        def check(job):
            from ..core.manual_face import prepare_drawn_face

            existing = gallery.find_person(name)
            person = existing.id if existing else name
            sample = prepare_drawn_face(enroller, rgb, box, source)
            return person, sample, enroller.review(person, [sample])

        state.run(check, lambda result: self._checked(generation, name, *result),
                  what="Looking at the face", on_error=lambda text: self._not_saved(
                      generation, text))

    def _checked(self, generation: int, name: str, person, sample, advice) -> None:
        if generation != self._generation:
            self._done_checking()
            return
        if advice:
            person = self._ask_advice(name, advice)
            if person is None:
                self._done_checking()
                self._say("Nothing was saved.")
                return
        state, path = self.state, self.path
        gallery, enroller = state.gallery, state.enroller

        def save(job):
            person_id, face_ids = enroller.save(person, [sample])
            return gallery.person(person_id).name, bool(face_ids)

        def saved(result) -> None:
            saved_name, added = result
            self._done_checking()
            if not added:
                self._say(f"This face is already one of {saved_name}'s samples.")
                return
            self.drawn.setdefault(path, []).append(FaceOverlay(
                box=tuple(float(v) for v in sample.face.box), label=saved_name,
                kind=ACCEPTED, hint="added by hand"))
            if path == self.path:
                self._show_faces()
                self._say(f"This face was added to {saved_name}'s samples.")
            state.message.emit(f"A face from {Path(path).name} was added to {saved_name}")
            state.gallery_changed.emit()

        state.run(save, saved, what="Saving the face",
                  on_error=lambda text: self._not_saved(generation, text))

    def _ask_advice(self, name: str, advice) -> str | int | None:
        """Where the face goes (a name, or an enrolled person's id); None: not saved."""
        if advice.looks_like is not None:
            person_id, other, _score = advice.looks_like
            choice = dialogs.ask_choice(
                self, "Someone already enrolled?",
                f"This face looks like {other}, who is already enrolled. Add it to {other} "
                f"instead of enrolling {name} as a new person?",
                [f"Add to {other}", f"Create {name}", "Cancel"])
            return {0: person_id, 1: name}.get(choice)
        text = (f"This face does not look like the {name} already enrolled: is it someone "
                "else?")
        return name if dialogs.confirm(self, "Check this face", text, "Save anyway") else None

    def _not_saved(self, generation: int, text: str) -> None:
        self._done_checking()
        if generation != self._generation:
            return
        self.problem = text
        self._say(f"Nothing was saved: {text}.", problem=True)

    def _done_checking(self) -> None:
        self.checking = False
        self.view.pending = None
        self.view.update()
        self._update_buttons()

    def _update_buttons(self) -> None:
        for button in (self.previous_button, self.next_button):
            button.setEnabled(not self.checking)

    def closeEvent(self, event) -> None:
        """The photo is let go of (it may be large); answers still on their way are
        dropped."""
        self._generation += 1
        self.rgb, self.overlays = None, []
        self.view.set_frame(None)
        super().closeEvent(event)


def open_photos(parent: QWidget, state: AppState, paths: list[str], index: int = 0,
                viewer: PhotoViewer | None = None) -> PhotoViewer:
    """Show photos in the viewer (not modal: the window goes on working); a page
    passes the viewer it opened before, which shows them instead of a new one."""
    if viewer is None or viewer.checking:
        viewer = PhotoViewer(state, paths, index, parent)
    else:
        viewer.set_photos(paths, index)
    viewer.show()
    viewer.raise_()
    viewer.activateWindow()
    return viewer
