"""The Enroll page: import photos (of one person, or a folder with one sub-folder per
person) with progress and cancel, and a guided capture from a camera."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QFormLayout, QFrame, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea,
                               QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from ..core.enroll import ImportReport
from . import dialogs
from .capture import STEPS, CaptureAnalyzer, CaptureProgress
from .jobs import Job
from .live import LiveFrame, VideoSession, make_source
from .state import AppState
from .video_view import VideoView
from .widgets import WrapDelegate, muted


@dataclass
class ReportGroup:
    """What one person folder (or the photos of one person) gave."""
    title: str  # the folder's name, or the person's
    outcome: str  # "3 photos added for Colin Powell", "nobody added: ..."
    added: int
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # name, reason, path


def report_groups(report: ImportReport, root: str | None = None,
                  subfolders: list[str] | None = None, person: str | None = None
                  ) -> list[ReportGroup]:
    """The report by person folder (a folder import from `root`, whose sub-folders
    are `subfolders`) or for one person (`person`): every folder that gave nobody
    has a group that says so."""
    groups: dict[str, ReportGroup] = {}
    top = Path(root) if root else None

    def group(key: str) -> ReportGroup:
        if key not in groups:
            groups[key] = ReportGroup(key, "", 0)
        return groups[key]

    folder_of = {folder: name for name, folder in report.folders.items()}
    for folder in subfolders or []:
        group(folder)
    for name, folder in report.folders.items():
        group(folder)
    loose = "Beside the person folders"
    for path, reason in report.skipped:
        p = Path(path)
        if top is None:
            group(person or "Photos").problems.append((p.name, reason, path))
            continue
        try:
            parts = p.relative_to(top).parts
        except ValueError:
            parts = ()
        if not parts:  # the root itself
            group(top.name or str(top)).problems.append(("", reason, path))
        elif len(parts) == 1 and (parts[0] in groups or p.is_dir()):
            group(parts[0]).problems.append(("", reason, path))
        elif len(parts) == 1:
            group(loose).problems.append((parts[0], reason, path))
        else:
            group(parts[0]).problems.append((parts[-1], reason, path))
    for key, g in groups.items():
        name = folder_of.get(key) if top is not None else (person or None)
        added = report.people.get(name, 0) if name else 0
        g.added = added
        if added:
            g.outcome = (f"{added} photo{'s' if added != 1 else ''} added for {name}")
            if g.problems:
                g.outcome += f"; {len(g.problems)} left out"
        elif key == loose:
            g.outcome = f"{len(g.problems)} file(s) left out: not in a person's folder"
        elif top is not None and key == (top.name or str(top)) and key not in (subfolders or []):
            g.outcome = g.problems[0][1] if g.problems else "nothing found"
            if len(g.problems) == 1:
                g.problems = []
        elif report.cancelled:
            g.outcome = "not imported: the import was cancelled"
        else:
            reasons = {r for _n, r, _p in g.problems}
            why = reasons.pop() if len(reasons) == 1 else "no photo could be used"
            if top is not None:
                g.outcome = f"nobody added from this folder: {why}"
                if len(g.problems) == 1 and not g.problems[0][0]:
                    g.problems = []
            else:
                g.outcome = f"nothing added: {why}"
    order = sorted(groups.values(), key=lambda g: (g.added > 0, g.title.casefold()))
    return order


def report_text(report: ImportReport) -> str:
    lines = []
    if report.people:
        people = ", ".join(f"{name} ({n})" for name, n in report.people.items())
        lines.append(f"Added {report.added} sample(s): {people}.")
    elif not report.cancelled:
        lines.append("Nothing was added.")
    if report.cancelled:
        lines.append("Cancelled. People finished before the cancel were saved; the rest "
                     "was not. Importing the same folder again adds only what is missing.")
    if report.skipped:
        lines.append(f"{len(report.skipped)} photo(s) or folder(s) left out, see below.")
    return " ".join(lines)


def tag_report_groups(report) -> list[ReportGroup]:
    """A tag import's report (face_tags.TagImportReport): one group per name, with the
    tags of it that were left out; then the warnings; then files left out."""
    groups = []
    named = set()
    for name in sorted(set(report.people) | set(report.by_name), key=str.casefold):
        problems = [(Path(photo).name, why, photo) for photo, why in report.by_name.get(name, [])]
        named.update((photo, f"the face tagged {name!r}: {why}")
                     for photo, why in report.by_name.get(name, []))
        added = report.people.get(name, 0)
        if added:
            outcome = f"{added} face{'s' if added != 1 else ''} added for {name}"
            if problems:
                outcome += f"; {len(problems)} left out"
        else:
            reasons = {why for _n, why, _p in problems}
            outcome = "nothing added: " + (reasons.pop() if len(reasons) == 1
                                           else "no tagged face could be used")
        groups.append(ReportGroup(name, outcome, added, problems))
    if report.warnings:
        groups.append(ReportGroup("Check these", f"{len(report.warnings)} warning(s); the "
                                  "faces were saved under their tags' names", 0,
                                  [("warning", w, "") for w in report.warnings]))
    others = [(Path(item).name or item, why, item) for item, why in report.skipped
              if (item, why) not in named]
    if others:
        groups.append(ReportGroup("Files left out", f"{len(others)} file(s) could not be "
                                  "used", 0, others))
    return groups


class EnrollPage(QWidget):
    folder_fps: float | None = None  # a photo folder as capture source: as fast as it goes
    capture_options: dict = {}  # CaptureAnalyzer keyword arguments (tests tune them)

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.import_job: Job | None = None
        self.last_report: ImportReport | None = None
        self.capture_name = ""
        self.capture_progress: CaptureProgress | None = None

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_import())
        splitter.addWidget(self._build_capture())
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([480, 720])
        splitter.setChildrenCollapsible(False)
        # a small window (or a large font) scrolls the page rather than squeezing it
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(splitter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        self.video = VideoSession(self)
        self.video.frame_ready.connect(self._capture_frame)
        self.video.failed.connect(self._capture_failed)
        self.video.ended.connect(self._capture_ended)
        self.video.running_changed.connect(self._update_buttons)
        state.video_claimed.connect(self._video_claimed)
        state.ready_changed.connect(self._update_buttons)
        state.options_changed.connect(self._camera_changed)
        self._update_buttons()

    def _camera_changed(self) -> None:
        """Follow the default camera of Settings unless another source was typed."""
        camera = str(self.state.settings.camera_index)
        if self.capture_source.text().strip() in ("", self._default_camera):
            self.capture_source.setText(camera)
        self._default_camera = camera

    # -- layout -----------------------------------------------------------------------------
    def _build_import(self) -> QWidget:
        box = QGroupBox("Import photos")
        box.setMinimumWidth(300)
        self.name_edit = QLineEdit()
        self.name_edit.setAccessibleName("Name of the person in the photos")
        self.name_edit.setPlaceholderText("Name of the person in the photos")
        self.photos_button = QPushButton("Choose photos of this person…")
        self.photos_button.setToolTip("Ctrl+I")
        self.photos_button.clicked.connect(lambda: self.import_photos())
        self.folder_button = QPushButton("Import a folder of people…")
        self.folder_button.setToolTip("Ctrl+Shift+I")
        self.folder_button.clicked.connect(lambda: self.import_folder())
        self.tags_button = QPushButton("Photos already tagged in another program…")
        self.tags_button.setToolTip("Face tags made in digiKam, Lightroom, Picasa, darktable "
                                    "or Windows Photos (in the photos or their .xmp sidecars)")
        self.tags_button.clicked.connect(lambda: self.import_tagged())

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")  # nothing to count until work starts ("0 / 100" lied)
        self.progress.setValue(0)
        self.item_label = muted()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_import)
        self.summary = QLabel("Each photo is checked: one clear, sharp, frontal face of "
                              "a usable size. Photos that fail are listed here with the "
                              "reason.")
        self.summary.setWordWrap(True)
        self.skipped = QTreeWidget()
        self.skipped.setAccessibleName("Import report")
        self.skipped.setHeaderLabels(["Folder or photo", "What happened"])
        self.skipped.setAlternatingRowColors(True)
        self.skipped.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.skipped.header().setStretchLastSection(True)
        self.skipped.setColumnWidth(0, 150)
        self.skipped.setItemDelegate(WrapDelegate(self.skipped))  # reasons shown whole
        self.skipped.setUniformRowHeights(False)
        self.skipped.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.skipped.setMinimumHeight(140)

        form = QFormLayout()
        form.addRow("Name:", self.name_edit)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)

        layout = QVBoxLayout(box)
        layout.addWidget(muted("Several photos of one person give the most reliable "
                               "recognition."))
        layout.addLayout(form)
        layout.addWidget(self.photos_button)
        layout.addSpacing(8)
        layout.addWidget(muted("Or a whole folder: one sub-folder per person, named after "
                               "them (Alice/1.jpg, Alice/2.jpg, Bob/…)."))
        layout.addWidget(self.folder_button)
        layout.addSpacing(8)
        layout.addWidget(muted("Or photos whose faces are already named in another photo "
                               "program: each named face is enrolled under its name."))
        layout.addWidget(self.tags_button)
        layout.addSpacing(8)
        layout.addLayout(progress_row)
        layout.addWidget(self.item_label)
        layout.addWidget(self.summary)
        layout.addWidget(self.skipped, 1)
        return box

    def _build_capture(self) -> QWidget:
        box = QGroupBox("Guided capture from a camera")
        self.capture_name_edit = QLineEdit()
        self.capture_name_edit.setAccessibleName("Name of the person in front of the camera")
        self.capture_name_edit.setPlaceholderText("Name of the person in front of the camera")
        self._default_camera = str(self.state.settings.camera_index)
        self.capture_source = QLineEdit(self._default_camera)
        self.capture_source.setAccessibleName("Camera for the capture")
        self.capture_source.setToolTip("Camera number (the default camera is chosen in "
                                       "Settings), or a video file or folder to practise with")
        self.capture_button = QPushButton("Start capture")
        self.capture_button.clicked.connect(self.toggle_capture)
        form = QFormLayout()
        form.addRow("Name:", self.capture_name_edit)
        form.addRow("Camera:", self.capture_source)

        self.step_labels = []
        steps = QHBoxLayout()
        for _step in STEPS:
            label = QLabel()
            label.setWordWrap(True)
            self.step_labels.append(label)
            steps.addWidget(label, 1)
        self.capture_view = VideoView("Each shot is taken by itself once the face is clear "
                                      "and the pose is right.")
        self.capture_view.clickable = False
        self.capture_view.setMinimumSize(320, 240)
        self.capture_hint = QLabel("")
        font = self.capture_hint.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.capture_hint.setFont(font)
        self.capture_hint.setWordWrap(True)

        layout = QVBoxLayout(box)
        layout.addLayout(form)
        layout.addWidget(self.capture_button)
        layout.addLayout(steps)
        layout.addWidget(self.capture_view, 1)
        layout.addWidget(self.capture_hint)
        self._show_steps(0)
        return box

    def _update_buttons(self, *_) -> None:
        ready = self.state.is_ready
        importing = self.import_job is not None
        self.photos_button.setEnabled(ready and not importing)
        self.folder_button.setEnabled(ready and not importing)
        self.tags_button.setEnabled(ready and not importing)
        self.cancel_button.setEnabled(importing)
        self.capture_button.setText("Cancel capture" if self.video.is_running
                                    else "Start capture")
        self.capture_button.setEnabled(ready or self.video.is_running)

    # -- photo import ---------------------------------------------------------------------
    @property
    def importing(self) -> bool:
        return self.import_job is not None

    def import_photos(self, name: str | None = None, paths: list[str] | None = None) -> None:
        name = (name if name is not None else self.name_edit.text()).strip()
        if not name:
            name = dialogs.ask_text(self, "Import photos", "Name of the person in the photos:")
            if not name:
                return
            self.name_edit.setText(name)
        if not self._confirm_new_name(name):
            return
        if paths is None:
            paths = dialogs.open_files(self, f"Photos of {name}")
        if not paths:
            return
        enroller = self.state.enroller

        def check(job):
            samples, report = enroller.prepare_photos(paths, progress=job.report,
                                                      cancelled=job.cancelled)
            advice = enroller.review(name, samples) if not report.cancelled else None
            return samples, report, advice

        self._start_import(check, f"Checking {len(paths)} photo(s) of {name}",
                           on_done=lambda result: self._checked(name, *result))

    def _checked(self, name: str, samples, report: ImportReport, advice) -> None:
        """Photos checked: say what looks wrong, then save where the person says."""
        if report.cancelled or not samples:
            self._import_done(report)
            return
        person = name
        if advice:
            person = self.ask_advice(name, advice)
            if person is None:
                report.cancelled = True
                self._import_done(report)
                return
        enroller = self.state.enroller
        def save(job):
            saved = enroller.save_reporting(person, samples, report)
            saved.groups = report_groups(saved, person=next(iter(saved.people), name))
            return saved

        self._start_import(save, f"Saving {len(samples)} photo(s) of "
                           f"{person if isinstance(person, str) else name}", follows=True)

    def ask_advice(self, name: str, advice) -> str | int | None:
        """Where the photos go (a name, or an enrolled person's id); None: not saved."""
        text = "\n\n".join(advice.messages(name))
        if advice.looks_like is not None:
            person_id, other, _score = advice.looks_like
            choice = dialogs.ask_choice(self, "Someone already enrolled?", text,
                                        [f"Add to {other}", f"Create {name}", "Cancel"])
            return {0: person_id, 1: name}.get(choice)
        return name if dialogs.confirm(self, "Check these photos", text, "Save anyway") \
            else None

    def _confirm_new_name(self, name: str) -> bool:
        """A new name that looks like someone already here ("Аlice" with a Cyrillic А
        beside "Alice") is asked about before a second person is made."""
        gallery = self.state.gallery
        try:
            if gallery is None or gallery.find_person(name) is not None:
                return True
            alike = gallery.confusable_names(name)
        except ValueError:
            return True  # an invalid name: the enrolment says why
        if not alike:
            return True
        return dialogs.confirm(
            self, "A name that looks the same",
            f"{name!r} looks like {', '.join(map(repr, alike))}, already in the gallery, but "
            "is written with other characters. Create a different person?", "Create")

    def import_folder(self, root: str | None = None) -> None:
        if root is None:
            root = dialogs.open_folder(self, "Folder with one sub-folder per person")
        if not root:
            return
        enroller = self.state.enroller

        def work(job):
            report = enroller.import_folder(root, progress=job.report,
                                            cancelled=job.cancelled)
            try:
                folders = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
            except OSError:
                folders = []
            report.groups = report_groups(report, root, folders)
            return report

        self._start_import(work, f"Importing {Path(root).name}")

    def import_tagged(self, root: str | None = None) -> None:
        """Enroll the named faces of a folder's photos (subfolders too), read from the
        tags other photo programs wrote; in the background, with the same report."""
        from ..core.face_tags import ExifTool, TagError, import_tags

        try:
            exiftool = ExifTool()  # said before a folder is chosen
        except TagError as exc:
            self.state.error.emit(str(exc))
            return
        if root is None:
            root = dialogs.open_folder(self, "Folder of photos tagged in another program")
        if not root:
            return
        enroller = self.state.enroller

        def work(job):
            report = import_tags(enroller, [root], progress=job.report,
                                 cancelled=job.cancelled, exiftool=exiftool)
            report.groups = tag_report_groups(report)
            return report

        def done(report) -> None:
            self._import_done(report)
            found = (f"{report.tagged} of {report.photos} photo(s) have named face tags. "
                     if report.tagged else "No named face tags were found in these photos. ")
            self.summary.setText(found + report_text(report))

        self._start_import(work, f"Reading the face tags of {Path(root).name}", on_done=done)

    def _start_import(self, work, title: str, on_done=None, follows: bool = False) -> None:
        """follows: the next step of the import running now (it is ending)."""
        if not self.state.is_ready or (self.importing and not follows):
            return
        self.last_report = None
        self.skipped.clear()
        self.summary.setText(title + "…")
        self.progress.setFormat("")
        self.progress.setRange(0, 0)  # busy until the first progress report
        job = Job(work, title)
        job.progress.connect(self._import_progress)
        job.succeeded.connect(on_done or self._import_done)
        job.failed.connect(self._import_failed)
        job.finished.connect(lambda: self._import_finished(job))
        self.import_job = job
        self._update_buttons()
        job.start(self.state.pool)

    def cancel_import(self) -> None:
        if self.import_job is not None:
            self.import_job.cancel()
            self.item_label.setText("Cancelling after the current photo…")

    def _import_progress(self, done: int, total: int, item: str) -> None:
        self.progress.setFormat("%v / %m" if total else "")
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.item_label.setText(Path(item).name if item else "")

    def _import_done(self, report: ImportReport) -> None:
        self.last_report = report
        self.summary.setText(report_text(report))
        groups = getattr(report, "groups", None) or report_groups(report, person=next(
            iter(report.people), None) or self.name_edit.text().strip() or None)
        nobody = QBrush(QColor("#b03a2e"))
        for group in groups:
            if group.added and not group.problems:
                continue  # nothing to look at: the summary names them
            top = QTreeWidgetItem([group.title, group.outcome])
            top.setToolTip(0, group.title)
            top.setToolTip(1, group.outcome)
            if not group.added:
                top.setForeground(1, nobody)
            for name, reason, path in group.problems:
                if not name:
                    continue
                child = QTreeWidgetItem([name, reason])
                child.setToolTip(0, path)
                child.setToolTip(1, reason)
                top.addChild(child)
            self.skipped.addTopLevelItem(top)
            top.setExpanded(True)
        if report.people:
            self.state.gallery_changed.emit()
            self.state.message.emit(report_text(report))

    def _import_failed(self, text: str) -> None:
        self.summary.setText(f"The import stopped: {text}")
        self.state.error.emit(f"The import stopped: {text}")
        self.state.gallery_changed.emit()  # people finished before the error were saved

    def _import_finished(self, job: Job) -> None:
        if job is not self.import_job:
            return  # an earlier step of an import that goes on
        self.import_job = None
        if self.progress.maximum() == 0:  # never reported: no bar left spinning
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")
        self.item_label.setText("")
        self._update_buttons()

    # -- guided capture ------------------------------------------------------------------------
    def toggle_capture(self) -> None:
        if self.video.is_running:
            self.stop_capture()
            self.capture_hint.setText("Capture cancelled; nothing was saved.")
        else:
            self.start_capture()

    def start_capture(self, name: str | None = None, spec: str | None = None) -> None:
        name = (name if name is not None else self.capture_name_edit.text()).strip()
        spec = (spec if spec is not None else self.capture_source.text()).strip()
        if not name:
            self.state.error.emit("Type the name of the person in front of the camera first.")
            return
        if not self.state.is_ready or not spec:
            return
        self.state.video_claimed.emit(self)
        self.capture_name = name
        self.capture_progress = None
        enroller, options, fps = self.state.enroller, dict(self.capture_options), self.folder_fps
        camera_size = self.state.settings.camera_size()
        self.video.start(lambda: make_source(spec, folder_fps=fps, camera_size=camera_size),
                         lambda: CaptureAnalyzer(enroller, **options))
        self._show_steps(0)
        self.capture_hint.setText(STEPS[0].title)

    def stop_capture(self) -> None:
        self.video.stop()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.video.shutdown(timeout_ms)
        if self.import_job is not None:
            self.import_job.cancel()

    def _video_claimed(self, owner) -> None:
        if owner is not self:
            self.video.stop()

    def _show_steps(self, current: int) -> None:
        for i, (label, step) in enumerate(zip(self.step_labels, STEPS)):
            if i < current:
                label.setText(f"✔ {i + 1}. {step.title}")
                label.setStyleSheet("color: #1e8449;")
            elif i == current:
                label.setText(f"➜ {i + 1}. {step.title}")
                label.setStyleSheet("font-weight: bold;")
            else:
                label.setText(f"{i + 1}. {step.title}")
                label.setStyleSheet("color: palette(placeholder-text);")

    def _capture_frame(self, frame: LiveFrame) -> None:
        self.capture_view.set_frame(frame)
        progress: CaptureProgress = frame.extra
        if progress is None:
            return
        self.capture_progress = progress
        self._show_steps(progress.step)
        self.capture_hint.setText(progress.hint)
        if progress.done:
            self.video.stop()
            self._save_capture(progress)

    def _save_capture(self, progress: CaptureProgress) -> None:
        name, samples, state = self.capture_name, progress.accepted, self.state
        enroller = state.enroller
        self.capture_hint.setText(f"Saving {len(samples)} shots of {name}…")

        def done(result) -> None:
            self.capture_hint.setText(f"{name} is enrolled with {len(samples)} new samples.")
            state.message.emit(f"Enrolled {name} from the camera")
            state.gallery_changed.emit()

        state.run(lambda job: enroller.save(name, samples), done, what="Saving the capture")

    def _capture_failed(self, text: str) -> None:
        self.capture_hint.setText("The capture stopped; nothing was saved.")
        self.state.error.emit(text)

    def _capture_ended(self, text: str) -> None:
        if self.capture_progress is None or not self.capture_progress.done:
            self.capture_hint.setText("The video ended before every shot was taken; "
                                      "nothing was saved.")
