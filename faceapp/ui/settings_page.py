"""The Settings page: face model, recognition threshold, smallest face, default camera,
the gallery (a file, or a server shared by stations, and this station's name), event
thumbnails, and the gallery's export / import / re-embedding. Every change is kept at
once (QSettings)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QFrame, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from ..core.archive import ENC_MAGIC, NameClash, export_gallery, import_gallery
from ..core.filenames import display_name, special_file
from ..core.enroll import Enroller
from ..core.gallery import has_password, is_server_location
from ..core.models import available_packs
from . import dialogs
from .jobs import Job
from .settings import CAMERA_SIZES, CUSTOM_RANGE, MIN_FACE_RANGE, THRESHOLD_LEVELS
from .state import AppState
from .widgets import muted, named
from .words import level_text, model_details, model_text, model_title, point_details, \
    point_meaning

RESOLUTION_TEXT = {"default": "The camera's own", "640x480": "640 × 480",
                   "1280x720": "1280 × 720 (HD)", "1920x1080": "1920 × 1080 (Full HD)"}


def embedder_choices() -> list[tuple[str, str, str, str]]:
    """(pack, variant, text, tooltip) for each embedder pack variant on disk: the text
    says what the model is for, the tooltip has its figures."""
    choices = []
    for pack in available_packs("embedder"):
        default = pack.manifest.get("default_variant")
        for variant in sorted(pack.manifest["files"], key=lambda v: v != default):
            if not pack.has_file(variant):
                continue
            tip = pack.manifest.get("description", "")
            tip = f"{model_details(pack)}\n{tip}" if tip else model_details(pack)
            choices.append((pack.name, variant, model_text(pack.name, variant, default), tip))
    return choices


def unknowns_older_than(unknowns, days: int) -> int:
    """How many kept unknown faces a retention of `days` would delete now (a job)."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    count = 0
    for cluster in unknowns.list(include_ignored=True):
        if cluster.first_seen is not None and cluster.first_seen < cutoff:
            count += sum(1 for face in unknowns.faces(cluster.id) if face.seen < cutoff)
    return count


def details(label: QLabel) -> QLabel:
    """A line of the engineer's figures, shown only with "Show details"."""
    label.setProperty("details", True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


class SettingsPage(QWidget):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.bulk_job: Job | None = None
        settings = state.settings

        # recognition
        self.model = named(QComboBox(), "Face model")
        for pack, variant, text, tip in embedder_choices():
            self.model.addItem(text, (pack, variant))
            self.model.setItemData(self.model.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.model_details = details(muted())
        self.level = named(QComboBox(), "How many strangers may be named")
        for level in THRESHOLD_LEVELS:
            self.level.addItem(level_text(level), level)
        self.level.setCurrentIndex(THRESHOLD_LEVELS.index(settings.threshold_level))
        self.level.setToolTip("A stranger is someone not enrolled. The fewer strangers may "
                              "be named, the more sure the app must be before it names "
                              "anyone, so enrolled people are missed more often.")
        self.custom = named(QSpinBox(), "Another rate: about 1 stranger in")
        self.custom.setRange(*CUSTOM_RANGE)
        self.custom.setStepType(QSpinBox.StepType.AdaptiveDecimalStepType)
        self.custom.setPrefix("about 1 in ")
        self.custom.setSuffix(" strangers")
        self.custom.setGroupSeparatorShown(True)
        self.custom.setValue(settings.custom_one_in)
        self.custom.setToolTip("Your own rate on the same scale: 1 in 1,000 is strict, "
                               "1 in 20 lenient")
        self.threshold_note = muted()
        self.threshold_details = details(muted())
        self.show_details = QCheckBox("Show the figures behind these settings")
        self.show_details.setAccessibleName("Show the figures behind these settings")
        self.show_details.toggled.connect(self._show_details)
        self.min_face = named(QSpinBox(), "Smallest face")
        self.min_face.setRange(*MIN_FACE_RANGE)
        self.min_face.setSuffix(" pixels")
        self.min_face.setValue(settings.min_face)
        self.min_face.setToolTip("Faces smaller than this (in the picture's pixels) are not "
                                 "looked for; larger values make finding faces faster")
        self.keep_thumbnails = QCheckBox("Keep a small picture of each face in the event log")
        self.keep_thumbnails.setAccessibleName("Keep a small picture of each face in the "
                                               "event log")
        self.keep_thumbnails.setChecked(settings.keep_thumbnails)
        # Samples cannot be made optional: the gallery's templates belong to one model,
        # and the stored face pictures are what a new model's templates are made from.
        self.samples_note = muted(
            "The photos people were enrolled from (one face picture each) are always kept: "
            "a new face model is prepared from them. Remove them on the People page.")
        # unknown faces are biometric data too: kept for a period the user sets
        self.retention = named(QSpinBox(), "Keep unknown faces for")
        self.retention.setRange(0, 3650)
        self.retention.setSuffix(" days")
        self.retention.setSpecialValueText("not kept")
        self.retention.setToolTip("Faces nobody was recognised as are kept this long, grouped "
                                  "by person on the Unknown people page; older ones are "
                                  "deleted (0: none are kept)")
        self.retention.setEnabled(False)  # until the gallery is open
        self._retention_days: int | None = None  # what the gallery keeps to now
        retention_row = QHBoxLayout()
        retention_row.addWidget(self.retention)
        retention_row.addStretch(1)
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.level)
        threshold_row.addWidget(self.custom)
        threshold_row.addStretch(1)
        min_face_row = QHBoxLayout()
        min_face_row.addWidget(self.min_face)
        min_face_row.addStretch(1)
        recognition = QGroupBox("Recognition")
        form = _form(recognition)
        form.addRow(_buddy("&Face model:", self.model), _stack(
            self.model, muted("Changing the model prepares it from the stored photos first "
                              "(progress below, can be cancelled); until then the current "
                              "model stays in use."), self.model_details))
        form.addRow(_buddy("&Strangers named:", self.level), _stack(
            threshold_row, self.threshold_note, self.threshold_details, self.show_details))
        form.addRow(_buddy("S&mallest face:", self.min_face), min_face_row)
        form.addRow("Event log:", self.keep_thumbnails)
        form.addRow(_buddy("&Unknown faces:", self.retention), retention_row)
        form.addRow(self.samples_note)

        # camera defaults
        self.camera_index = named(QSpinBox(), "Default camera")
        self.camera_index.setRange(0, 9)
        self.camera_index.setPrefix("Camera ")
        self.camera_index.setValue(settings.camera_index)
        self.camera_index.setToolTip("Used by the Live page and the guided capture")
        self.camera_resolution = named(QComboBox(), "Camera picture size")
        for key in CAMERA_SIZES:
            self.camera_resolution.addItem(RESOLUTION_TEXT[key], key)
        self.camera_resolution.setCurrentIndex(
            self.camera_resolution.findData(settings.camera_resolution))
        self.camera_resolution.setToolTip("What the camera is asked for; some cameras pick "
                                          "the nearest size they support")
        camera = QGroupBox("Camera")
        camera_form = _form(camera)
        camera_row = QHBoxLayout()
        camera_row.addWidget(self.camera_index)
        camera_row.addWidget(QLabel("at"))
        camera_row.addWidget(self.camera_resolution)
        camera_row.addStretch(1)
        camera_form.addRow(_buddy("Default &camera:", self.camera_index), camera_row)
        camera_form.addRow(muted("Used by the Live page and the guided capture when "
                                     "a camera is the source."))

        # gallery file
        self.gallery_path = named(QLineEdit(str(state.gallery_path)), "Gallery in use")
        self.gallery_path.setReadOnly(True)
        change = named(QPushButton("Change…"), "Change the gallery file")
        change.setToolTip("Open another gallery file, or create a new one")
        change.clicked.connect(lambda: self.choose_gallery())
        path_row = QHBoxLayout()
        path_row.addWidget(self.gallery_path, 1)
        path_row.addWidget(change)
        storage = QGroupBox("Gallery")
        storage_form = _form(storage)
        storage_form.addRow(_buddy("In &use:", self.gallery_path), path_row)
        storage_form.addRow(muted("Faces are personal data: a gallery file is readable "
                                      "by your user account only, and nothing leaves this "
                                      "computer."))
        # several stations (doors, desks) on one gallery server
        current = state.gallery_path if is_server_location(state.gallery_path) else ""
        self.server_url = named(QLineEdit(current), "Shared gallery server address")
        self.server_url.setPlaceholderText("postgresql://station@server/faceapp"
                                           "?sslmode=verify-full")
        use_server = named(QPushButton("Use server"), "Use the gallery server")
        use_server.setToolTip("Open the gallery on this PostgreSQL server")
        use_server.clicked.connect(lambda: self.use_server())
        server_row = QHBoxLayout()
        server_row.addWidget(self.server_url, 1)
        server_row.addWidget(use_server)
        storage_form.addRow(_buddy("Shared &server:", self.server_url), server_row)
        self.station_name = named(QLineEdit(state.settings.station), "This station's name")
        self.station_name.setToolTip("This computer's name on the events it records")
        self.station_name.editingFinished.connect(self.rename_station)
        storage_form.addRow(_buddy("This s&tation:", self.station_name), self.station_name)
        storage_form.addRow(muted("Stations on one server share the people and the event "
                                      "log. The password is read from ~/.pgpass or a libpq "
                                      "service file, never kept in these settings; use "
                                      "sslmode=verify-full across a network."))

        # bulk work
        self.export_button = named(QPushButton("Export gallery…"), "Export the gallery")
        self.export_button.clicked.connect(lambda: self.export_gallery())
        self.import_button = named(QPushButton("Import gallery…"), "Import a gallery export")
        self.import_button.clicked.connect(lambda: self.import_gallery())
        self.reembed_button = named(QPushButton("Prepare missing samples"),
                                    "Prepare the samples the face model has not seen")
        self.reembed_button.setToolTip("Let the face model in use read the samples it has "
                                       "not read yet (after a model change or an import)")
        self.reembed_button.clicked.connect(self.reembed)
        self.bulk_progress = QProgressBar()
        self.bulk_progress.setAccessibleName("Progress")
        self.bulk_progress.setRange(0, 1)
        self.bulk_progress.setValue(0)
        self.bulk_cancel = named(QPushButton("Cancel"), "Cancel the running task")
        self.bulk_cancel.clicked.connect(self.cancel_bulk)
        self.bulk_label = muted()
        buttons = QHBoxLayout()
        for button in (self.export_button, self.import_button, self.reembed_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.bulk_row = QWidget()
        progress_row = QHBoxLayout(self.bulk_row)
        progress_row.setContentsMargins(0, 0, 0, 0)
        progress_row.addWidget(self.bulk_progress, 1)
        progress_row.addWidget(self.bulk_cancel)
        self.bulk_row.hide()  # shown while a job runs
        backup = QGroupBox("Backup and transfer")
        backup_layout = QVBoxLayout(backup)
        backup_layout.addWidget(muted("An export holds every person and their photos in "
                                      "one file, optionally encrypted with a passphrase. "
                                      "Importing adds to this gallery (people with the same "
                                      "name are merged)."))
        backup_layout.addLayout(buttons)
        backup_layout.addWidget(self.bulk_row)
        backup_layout.addWidget(self.bulk_label)

        self.settings_file = muted(f"Settings are kept in {settings.file}")
        self.settings_file.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column = QWidget()  # a readable width, not the whole window
        column.setMaximumWidth(900)
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 8, 0)
        column_layout.addWidget(recognition)
        column_layout.addWidget(camera)
        column_layout.addWidget(storage)
        column_layout.addWidget(backup)
        column_layout.addWidget(self.settings_file)
        column_layout.addStretch(1)
        inner = QWidget()
        inner_layout = QHBoxLayout(inner)
        inner_layout.setContentsMargins(0, 0, 0, 0)
        inner_layout.addWidget(column, 1)
        inner_layout.addStretch(0)
        # a long page: it scrolls rather than squeezing its text at small sizes
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(inner)
        self.scroll.setAccessibleName("Settings")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll)

        self.level.currentIndexChanged.connect(self._threshold_changed)
        self.custom.valueChanged.connect(self._threshold_changed)
        self.min_face.valueChanged.connect(state.set_min_face)
        self.keep_thumbnails.toggled.connect(state.set_keep_thumbnails)
        self.retention.editingFinished.connect(self._retention_changed)
        state.ready_changed.connect(self._show_retention)
        self.camera_index.valueChanged.connect(self._camera_changed)
        self.camera_resolution.currentIndexChanged.connect(self._camera_changed)
        self.model.currentIndexChanged.connect(self._model_chosen)
        state.options_changed.connect(self._show_threshold)
        state.gallery_changed.connect(self._show_threshold)  # the threshold follows its size
        state.ready_changed.connect(self._show_threshold)
        state.ready_changed.connect(self._update_buttons)
        state.ready_changed.connect(self._show_model)
        self._show_threshold()
        self._show_model()
        self._update_buttons()

    def _show_details(self, on: bool) -> None:
        for label in (self.model_details, self.threshold_details):
            label.setVisible(on)

    def _show_retention(self) -> None:
        from ..core.gallery import retention_days

        if not self.state.has_gallery:
            return
        self._retention_days = retention_days(self.state.gallery)
        self.retention.blockSignals(True)
        self.retention.setValue(self._retention_days)
        self.retention.blockSignals(False)
        self.retention.setEnabled(not self.state.gallery.read_only)

    def _retention_changed(self, ask: bool = True) -> None:
        """Store the period in the gallery (every program that opens it keeps to it)
        and delete what is now past it; a shorter period that deletes faces kept now
        is asked about first, with how many."""
        gallery, days, before = self.state.gallery, self.retention.value(), \
            self._retention_days
        if gallery is None or before is None or days == before:
            return
        unknowns = self.state.unknowns()
        if days < before and unknowns is not None and ask:
            self.retention.setEnabled(False)  # until the question is answered
            self.state.run(lambda job: unknowns_older_than(unknowns, days),
                           lambda count: self._confirm_retention(days, before, count),
                           what="Counting the unknown faces kept",
                           on_error=lambda text: (self.state.error.emit(text),
                                                  self._show_retention()))
            return
        self._store_retention(days)

    def _confirm_retention(self, days: int, before: int, count: int) -> None:
        self.retention.setEnabled(not self.state.gallery.read_only)
        if count and not dialogs.confirm(
                self, "Delete unknown faces",
                f"{count:,} unknown face{'s' if count != 1 else ''} will be deleted now: "
                + ("unknown faces will no longer be kept." if not days else
                   f"they were seen more than {days} day{'s' if days != 1 else ''} ago.")
                + " This cannot be undone.", "Delete them"):
            self.retention.blockSignals(True)
            self.retention.setValue(before)
            self.retention.blockSignals(False)
            self.state.message.emit("Nothing was deleted; unknown faces are kept "
                                    f"{before} day(s) as before")
            return
        self._store_retention(days, count)

    def _store_retention(self, days: int, deleted: int = 0) -> None:
        from ..core.gallery import set_retention_days

        gallery = self.state.gallery
        self._retention_days = days
        gone = f"; {deleted:,} deleted" if deleted else ""
        self.state.run(lambda job: set_retention_days(gallery, days),
                       lambda _: (self.state.gallery_changed.emit(),
                                  self.state.message.emit(
                                      (f"Unknown faces are kept {days} day(s)" if days else
                                       "Unknown faces are no longer kept") + gone)),
                       what="Changing how long unknown faces are kept")

    def _camera_changed(self, *_) -> None:
        self.state.set_camera(self.camera_index.value(), self.camera_resolution.currentData())

    # -- face model --------------------------------------------------------------------------
    def _active_model(self) -> tuple[str, str | None]:
        if self.state.pipeline is not None:
            embedder = self.state.pipeline.embedder
            return embedder.pack.name, embedder.variant
        return self.state.settings.embedder_pack, self.state.settings.embedder_variant

    def _show_model(self) -> None:
        """Select the model in use (also after a cancelled or failed switch)."""
        pack, variant = self._active_model()
        index = next((i for i in range(self.model.count())
                      if self.model.itemData(i)[0] == pack
                      and variant in (None, self.model.itemData(i)[1])), -1)
        self.model.blockSignals(True)
        self.model.setCurrentIndex(index)
        self.model.blockSignals(False)
        tip = self.model.itemData(index, Qt.ItemDataRole.ToolTipRole) if index >= 0 else ""
        self.model_details.setText((tip or "").split("\n")[0])

    def _model_chosen(self, index: int) -> None:
        if index < 0 or tuple(self.model.itemData(index)) == self._active_model():
            return
        if not self.state.is_ready or self.bulk_job is not None:
            self.state.error.emit("Wait for the models and the running task, then change "
                                  "the face model.")
            self._show_model()
            return
        self.switch_model(*self.model.itemData(index))

    def switch_model(self, pack: str, variant: str) -> None:
        """Load the other embedder and compute its templates for every stored sample in
        the background; only then does recognition use it (cancel: nothing changes)."""
        state, gallery = self.state, self.state.gallery
        old = model_title(state.pipeline.embedder.pack.name)

        def work(job):
            pipeline = state.with_embedder(pack, variant)
            enroller, count = Enroller(pipeline, gallery), 0
            # a second round catches samples enrolled (with the old model) meanwhile
            while not job.cancelled() and (n := enroller.reembed(job.report, job.cancelled)):
                count += n
            return pipeline, count, job.cancelled()

        def done_text(result) -> str:
            pipeline, count, cancelled = result
            if cancelled:
                return (f"Model change cancelled: still recognising with the {old} model. "
                        "The work done so far is kept, so a new try is quicker.")
            state.use_pipeline(pipeline)
            return (f"Now recognising with the {model_title(pack, variant)} model "
                    f"({count} sample(s) prepared).")

        self._run_bulk(work, f"Switching to the {model_title(pack, variant)} model",
                       done_text, cancellable=True)

    # -- recognition ---------------------------------------------------------------------------
    def _threshold_changed(self, *_) -> None:
        self.state.set_threshold(self.level.currentData(), self.custom.value())

    def _show_threshold(self) -> None:
        level = self.level.currentData()
        self.custom.setVisible(level == "custom")
        try:
            rule = self.state.rule()
        except Exception as exc:  # a pack without calibration, a gallery gone
            self.threshold_note.setText(f"What this means for the gallery cannot be "
                                        f"worked out: {exc}")
            self.threshold_details.setText("")
            return
        if rule is None:
            self.threshold_note.setText("")
            self.threshold_details.setText("")
            return
        self.threshold_note.setText(point_meaning(rule))
        self.threshold_details.setText(point_details(rule))

    # -- gallery file --------------------------------------------------------------------------
    def choose_gallery(self, path: str | None = None) -> None:
        if path is None:
            path = dialogs.save_file(self, "Open or create a gallery",
                                     str(self.state.gallery_path), dialogs.GALLERY_FILTER,
                                     confirm_overwrite=False)
        if not path:
            return
        self.state.video_claimed.emit(self)  # the live view uses the current gallery
        self.state.switch_gallery(Path(path),
                                  lambda: self.gallery_path.setText(str(self.state.gallery_path)))

    def use_server(self, url: str | None = None) -> None:
        url = (self.server_url.text() if url is None else url).strip()
        if not is_server_location(url):
            self.state.error.emit("A gallery server is given as postgresql://USER@HOST/DATABASE.")
            return
        if has_password(url):
            self.state.error.emit("Leave the password out of the location: put it in "
                                  "~/.pgpass (or a libpq service file) on this computer.")
            return
        self.state.video_claimed.emit(self)  # the live view uses the current gallery
        self.state.switch_gallery(url, lambda: self.gallery_path.setText(
            str(self.state.gallery_path)))

    def rename_station(self) -> None:
        self.state.settings.station = self.station_name.text()
        self.station_name.setText(self.state.settings.station)
        if self.state.gallery is not None:
            self.state.gallery.station = self.state.settings.station

    # -- bulk jobs -----------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        idle = self.bulk_job is None
        for button in (self.export_button, self.import_button):
            button.setEnabled(idle and self.state.has_gallery)
        self.reembed_button.setEnabled(idle and self.state.is_ready)
        self.model.setEnabled(idle and self.state.is_ready)
        if idle:
            self.bulk_cancel.setEnabled(False)

    def _run_bulk(self, work, title: str, done_text, cancellable: bool = False) -> Job:
        self.bulk_label.setText(title + "…")
        self.bulk_progress.setRange(0, 0)  # busy, until a job reports progress
        job = Job(work, title)
        job.progress.connect(self._bulk_progress)
        job.succeeded.connect(lambda result: self._bulk_done(done_text(result)))
        job.failed.connect(lambda text: self._bulk_failed(f"{title} failed: {text}"))
        job.finished.connect(self._bulk_finished)
        self.bulk_job = job
        self._update_buttons()
        self.bulk_cancel.setEnabled(cancellable)
        self.bulk_row.show()
        return job.start(self.state.pool)

    def _bulk_progress(self, done: int, total: int, item: str) -> None:
        self.bulk_progress.setRange(0, max(total, 1))
        self.bulk_progress.setValue(done)

    def _bulk_done(self, text: str) -> None:
        self.bulk_label.setText(text)
        self.state.message.emit(text)

    def _bulk_failed(self, text: str) -> None:
        self.bulk_label.setText(text)
        self.state.error.emit(text)

    def _bulk_finished(self) -> None:
        self.bulk_job = None
        self.bulk_row.hide()
        self.bulk_progress.setRange(0, 1)
        self.bulk_progress.setValue(0)
        self._update_buttons()
        self._show_model()

    def cancel_bulk(self) -> None:
        if self.bulk_job is not None:
            self.bulk_job.cancel()

    def export_gallery(self, path: str | None = None, passphrase: str | None = None,
                       ask: bool = True) -> None:
        if ask:
            path = dialogs.save_file(self, "Export the gallery", "gallery.faceapp",
                                     dialogs.EXPORT_FILTER)
            if not path:
                return
            go, passphrase = dialogs.ask_export_passphrase(self)
            if not go:
                return
        gallery = self.state.gallery
        self._run_bulk(lambda job: export_gallery(gallery, path, passphrase=passphrase),
                       "Exporting the gallery",
                       lambda s: f"Exported {s.people} people and {s.faces} samples to "
                                 f"{s.path}{' (encrypted)' if s.encrypted else ''}.")

    def import_gallery(self, path: str | None = None, passphrase: str | None = None,
                       ask: bool = True) -> None:
        if ask:
            path = dialogs.open_file(self, "Import a gallery export", dialogs.EXPORT_FILTER)
            if not path:
                return
            special = special_file(path)
            if special:  # a FIFO must not hang the window
                self.state.error.emit(f"{display_name(path)}: {special}")
                return
            try:
                with open(path, "rb") as f:
                    encrypted = f.read(len(ENC_MAGIC)) == ENC_MAGIC
            except OSError as exc:
                self.state.error.emit(f"{path} cannot be read: {exc.strerror}")
                return
            if encrypted:
                passphrase = dialogs.ask_password(self, "Encrypted export",
                                                  "Passphrase of this export:")
                if not passphrase:
                    return
        gallery, state = self.state.gallery, self.state
        embedder = state.pipeline.embedder if state.pipeline else None

        def work(job):
            try:
                return import_gallery(gallery, path, passphrase=passphrase,
                                      on_conflict=on_conflict, embedder=embedder)
            except NameClash as clash:
                return clash

        def done_text(report) -> str:
            if isinstance(report, NameClash):  # ask, then import again with the answer
                QTimer.singleShot(0, lambda: self._ask_conflict(report, path, passphrase))
                return f"{len(report.names)} people in the export are already here."
            state.gallery_changed.emit()
            parts = [f"Imported {report.faces_added} samples: {report.people_added} new "
                     f"people, {report.people_merged} merged with people already here, "
                     f"{report.faces_skipped} samples already present"]
            if report.people_skipped:
                parts.append(f"{len(report.people_skipped)} people left out")
            if report.damaged:
                parts.append(f"{len(report.damaged)} damaged sample(s) skipped: "
                             + "; ".join(item for item, _ in report.damaged[:5]))
            return ", ".join(parts) + "."

        on_conflict = self._conflict_choice
        self._conflict_choice = None
        self._run_bulk(work, "Importing the gallery", done_text)

    _conflict_choice: str | None = None
    CONFLICT_CHOICES = {"Add their samples to the people here (merge)": "merge",
                        "Import them as new people, \"Name (2)\" (rename)": "rename",
                        "Leave them out (skip)": "skip"}

    def _ask_conflict(self, clash, path: str, passphrase: str | None) -> None:
        answer = dialogs.choose(self, "People already in the gallery", str(clash).split(
            "; choose")[0] + ". What should happen to them?", list(self.CONFLICT_CHOICES))
        if not answer:
            return
        self._conflict_choice = self.CONFLICT_CHOICES[answer]
        self.import_gallery(path, passphrase, ask=False)

    def reembed(self) -> None:
        enroller = self.state.enroller

        def work(job):
            count = enroller.reembed(progress=job.report, cancelled=job.cancelled)
            return count, job.cancelled()

        def done_text(result) -> str:
            count, cancelled = result
            if cancelled:
                return "Cancelled; the samples prepared so far are kept."
            return f"Prepared {count} sample(s) for the face model in use."

        self._run_bulk(work, "Preparing samples", done_text, cancellable=True)


def _form(box: QWidget) -> QFormLayout:
    form = QFormLayout(box)
    # rows wrap under their label when the window is narrow (150% scale)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


def _stack(*parts) -> QWidget:
    """Widgets and layouts one under the other (a form row with its notes)."""
    holder = QWidget()
    layout = QVBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for part in parts:
        if isinstance(part, QWidget):
            layout.addWidget(part)
        else:
            layout.addLayout(part)
    return holder


def _buddy(text: str, widget: QWidget) -> QLabel:
    """A row's label whose Alt+letter moves the keyboard focus to its control."""
    label = QLabel(text)
    label.setBuddy(widget)
    return label
