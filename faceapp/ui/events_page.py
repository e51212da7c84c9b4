"""The Events page: the recognition log (time, face, who, score, source), filtered by
person and date, exported to CSV; "This was not X" feedback on a wrong name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QDate, QSize, Qt
from PySide6.QtGui import (QAction, QBrush, QColor, QFontMetrics, QIcon, QImage, QKeySequence,
                           QPixmap)
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDateEdit, QDialog,
                               QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

from ..core.align import TEMPLATES, align_faces
from ..core.embed import Embedder
from ..core.gallery import Event, Gallery
from ..core.imageio import IMAGE_SUFFIXES, load_image
from ..core.models import ModelPackError
from ..core.sources import Frame
from . import dialogs
from .images import jpeg_to_qimage
from .state import AppState
from .widgets import LazyPage, flow, muted, named, pair
from .words import short_source, why_text

LIMIT = 500
THUMB = 48
EVERYONE, UNKNOWN_ONLY = "everyone", "unknown"
# the table's columns
TIME, FACE, WHO, WHY, SOURCE, STATION, SCORE = range(7)
HEADERS = ["When", "Face", "Who", "Why", "Source", "Station", "Score"]
NAME_ROOM = 150  # px of a name on the "This was not …" button (longer ones are elided)


@dataclass(frozen=True)
class EventFilter:
    person_id: int | None = None
    unknown_only: bool = False
    since: datetime | None = None  # local time, inclusive
    until: datetime | None = None  # local time, exclusive
    station: str | None = None  # None: every station

    def as_kwargs(self) -> dict:
        return {"person_id": self.person_id, "unknown_only": self.unknown_only,
                "since": self.since, "until": self.until, "station": self.station}


@dataclass
class EventRow:
    event: Event
    who: str | None  # the person's current name (or the recorded one); None: unknown
    thumbnail: QImage


def load_events(gallery: Gallery, chosen: EventFilter) -> tuple[list[EventRow], int, list[str]]:
    """The newest LIMIT events matching, with thumbnails decoded, the total, and the
    stations in the log (runs in a job)."""
    names = {p.id: p.name for p in gallery.people()}
    rows = []
    for event in gallery.events(limit=LIMIT, **chosen.as_kwargs()):
        image = jpeg_to_qimage(gallery.event_thumbnail(event.id)) if event.has_thumbnail \
            else QImage()
        if not image.isNull():
            image = image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        rows.append(EventRow(event, names.get(event.person_id, event.name), image))
    return rows, gallery.event_count(), gallery.stations()


def samples_matching(gallery: Gallery, embedder: Embedder, event: Event,
                     bar: float) -> tuple[list[int], int]:
    """"This was not X": X's samples that named this face X, and how many usable
    (unflagged) samples X has (runs in a job).

    The event's thumbnail is the face aligned to the arcface112 template, so its five
    landmarks are that template's points: it can be re-aligned for the embedder without
    running the detector again. Every sample of X whose similarity to that face reaches
    `bar` (a sample that would name this face X on its own), and at least the most
    similar one, is chosen."""
    data = gallery.event_thumbnail(event.id)
    image = cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_COLOR) \
        if data else None
    if image is None:
        raise ValueError("this event kept no picture of the face")
    crop = align_faces(image[:, :, ::-1], [TEMPLATES["arcface112"].points], embedder.template)
    vector = embedder.embed(crop)[0]
    face_ids, person_ids, matrix = gallery.embeddings(embedder.model_id)
    mine = person_ids == event.person_id
    if not mine.any():
        return [], 0
    ids, scores = face_ids[mine], matrix[mine] @ vector
    chosen = {int(ids[np.argmax(scores)])} | {int(i) for i in ids[scores >= bar]}
    return sorted(chosen), int(mine.sum())


def flag_wrong_match(gallery: Gallery, embedder: Embedder, event: Event,
                     bar: float) -> list[int]:
    """Flag X's samples that named this face X (samples_matching). gallery.embeddings()
    leaves flagged samples out, so the recognizer no longer matches this face to X;
    nothing is deleted, and the People page can unflag them."""
    chosen, _usable = samples_matching(gallery, embedder, event, bar)
    for face_id in chosen:
        gallery.flag_face(face_id)
    return chosen


def event_picture(source: str, box) -> QImage:
    """The photo (or the video's frame) an event names, with the face's box drawn.
    Raises ValueError with a message when it is gone or cannot be read."""
    path, frame_no = Frame.parse_where(source)
    if not Path(path).is_file():
        raise ValueError(f"{path} is not there any more (or the event came from a camera)")
    if frame_no is None:
        image = load_image(path)
    else:
        capture = cv2.VideoCapture(path)
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, frame_no)
            ok, bgr = capture.read()
        finally:
            capture.release()
        if not ok:
            raise ValueError(f"frame {frame_no} of {path} cannot be read")
        image = np.ascontiguousarray(bgr[:, :, ::-1])
    image = np.ascontiguousarray(image)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        thick = max(2, image.shape[1] // 300)
        cv2.rectangle(image, (x1, y1), (x2, y2), (255, 140, 0), thick)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def _date_edit() -> QDateEdit:
    edit = QDateEdit(QDate.currentDate())
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setEnabled(False)
    return edit


class EventsPage(LazyPage):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.rows: list[EventRow] = []
        self._generation = 0
        self.loaded = False

        self.who = named(QComboBox(), "Whose events")
        self.who.setMinimumContentsLength(14)
        self.who.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.who.addItem("Everyone", EVERYONE)
        self.who.addItem("Unknown faces", UNKNOWN_ONLY)
        self.who.currentIndexChanged.connect(self.refresh)
        # several stations share a gallery on a server: whose events
        self.station = named(QComboBox(), "Which station's events")
        self.station.setMinimumContentsLength(10)
        self.station.addItem("All stations", None)
        self.station.currentIndexChanged.connect(self.refresh)
        self.station_label = QLabel("&Station:")
        self.station_label.setBuddy(self.station)
        self.use_from = named(QCheckBox("From"), "Only events from this date")
        self.from_date = named(_date_edit(), "First day")
        self.use_to = named(QCheckBox("to"), "Only events up to this date")
        self.to_date = named(_date_edit(), "Last day")
        for check, edit in ((self.use_from, self.from_date), (self.use_to, self.to_date)):
            check.toggled.connect(edit.setEnabled)
            check.toggled.connect(self.refresh)
            edit.dateChanged.connect(self.refresh)
        refresh_button = named(QPushButton("Refresh"), "Refresh the events")
        refresh_button.setToolTip("F5")
        refresh_button.clicked.connect(self.refresh)
        self.export_button = named(QPushButton("Export CSV…"), "Export the events to CSV")
        self.export_button.setToolTip("Ctrl+E")
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.not_action = QAction("This was not…", self)
        self.not_action.setShortcut(QKeySequence("Ctrl+N"))
        self.not_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.not_action.triggered.connect(lambda: self.not_this_person())
        self.addAction(self.not_action)
        self.not_button = QPushButton("This was not…")
        self.not_button.clicked.connect(self.not_action.trigger)
        self.details = named(QCheckBox("Show scores"), "Show the match scores")
        self.details.setToolTip("Add a column with each face's similarity to the nearest "
                                "enrolled person (for checking the settings)")
        self.details.toggled.connect(self._show_columns)

        who_label = QLabel("&Who:")
        who_label.setBuddy(self.who)
        self.station_pair = pair(self.station_label, self.station)
        row = flow(pair(who_label, self.who), self.station_pair,
                   pair(self.use_from, self.from_date, self.use_to, self.to_date),
                   pair(refresh_button, self.export_button))

        self.table = named(QTableWidget(0, len(HEADERS)), "Events")
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 8)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.table.addAction(self.not_action)
        self.table.itemSelectionChanged.connect(self._update_not_action)
        self.table.cellDoubleClicked.connect(self.open_selected)
        self.table.setToolTip("Double-click an event (or press Enter) to see the photo or "
                              "video frame it came from")
        open_action = QAction("Show the photo", self.table)
        open_action.setShortcut(QKeySequence(Qt.Key.Key_Return))
        open_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        open_action.triggered.connect(lambda: self.open_selected())
        self.table.addAction(open_action)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(TIME, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(FACE, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(FACE, THUMB + 16)
        for column, width in ((WHO, 170), (SOURCE, 200), (STATION, 120), (SCORE, 70)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(column, width)
        header.setSectionResizeMode(WHY, QHeaderView.ResizeMode.Stretch)
        self.count_label = muted()
        self.photo_button = QPushButton("Show photo")
        self.photo_button.setToolTip("The photo this event came from, in the app's viewer: "
                                     "every face boxed and named, and a missed face can be "
                                     "drawn")
        self.photo_button.clicked.connect(lambda: self.show_photo())
        self.table.itemSelectionChanged.connect(self._update_photo_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.not_button)
        bottom.addWidget(self.photo_button)
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(self.details)

        layout = QVBoxLayout(self)
        layout.addWidget(row)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        self.stations: list[str] = []
        self._show_columns()

        state.events_changed.connect(self.changed)
        state.gallery_changed.connect(self._gallery_changed)
        state.ready_changed.connect(self._gallery_changed)
        state.ready_changed.connect(self._update_not_action)
        self._update_not_action()
        self._update_photo_button()

    # -- filter -----------------------------------------------------------------------------
    def current_filter(self) -> EventFilter:
        kind = self.who.currentData()
        person_id = kind if isinstance(kind, int) else None
        since = until = None
        if self.use_from.isChecked():
            since = datetime.combine(self.from_date.date().toPython(), datetime.min.time())
        if self.use_to.isChecked():
            until = datetime.combine(self.to_date.date().toPython() + timedelta(days=1),
                                     datetime.min.time())
        return EventFilter(person_id, kind == UNKNOWN_ONLY, since, until,
                           self.station.currentData())

    def set_person_filter(self, person_id: int | str | None) -> None:
        """None: everyone; "unknown": unknown faces; else a person id."""
        index = self.who.findData(EVERYONE if person_id is None else person_id)
        if index >= 0:
            self.who.setCurrentIndex(index)

    def _show_columns(self, *_) -> None:
        """Station only where several stations share the log; scores on request."""
        several = len(self.stations) > 1
        self.table.setColumnHidden(STATION, not several)
        self.station_pair.setVisible(several)
        self.table.setColumnHidden(SCORE, not self.details.isChecked())

    def _stations_loaded(self, stations: list[str]) -> None:
        self.stations = list(stations)
        self._show_columns()
        known = [self.station.itemData(i) for i in range(1, self.station.count())]
        if known == stations:
            return
        chosen = self.station.currentData()
        self.station.blockSignals(True)
        while self.station.count() > 1:
            self.station.removeItem(1)
        for name in stations:
            self.station.addItem(name, name)
        index = self.station.findData(chosen)
        self.station.setCurrentIndex(max(index, 0))
        self.station.blockSignals(False)
        if index < 0 and chosen is not None:  # that station's events are gone
            self.refresh()

    def _people_loaded(self, people) -> None:
        chosen = self.who.currentData()
        self.who.blockSignals(True)
        while self.who.count() > 2:
            self.who.removeItem(2)
        for person in people:
            self.who.addItem(person.name, person.id)
        index = self.who.findData(chosen)
        self.who.setCurrentIndex(max(index, 0))
        self.who.blockSignals(False)
        if index < 0:  # the chosen person is gone
            self.refresh()

    # -- loading ---------------------------------------------------------------------------
    def _gallery_changed(self) -> None:
        if not self.state.has_gallery:
            return
        gallery = self.state.gallery
        self.state.run(lambda job: gallery.people(), self._people_loaded,
                       what="Reading the gallery")
        self.changed()

    def refresh(self) -> None:
        if not self.state.has_gallery:
            return
        self._stale = False
        self._generation += 1
        generation, gallery, chosen = self._generation, self.state.gallery, self.current_filter()
        self.state.run(lambda job: load_events(gallery, chosen),
                       lambda result: self._loaded(generation, *result),
                       what="Reading the event log")

    def _loaded(self, generation: int, rows: list[EventRow], total: int,
                stations: list[str]) -> None:
        if generation != self._generation:
            return
        self._stations_loaded(stations)
        self.rows = rows
        self.table.setRowCount(len(rows))
        unknown = QBrush(QColor("#d35400"))
        for r, row in enumerate(rows):
            e = row.event
            when = QTableWidgetItem(e.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
            face = QTableWidgetItem()
            if not row.thumbnail.isNull():
                face.setIcon(QIcon(QPixmap.fromImage(row.thumbnail)))
            who = QTableWidgetItem(row.who if row.who else "Unknown")
            if row.who is None:
                who.setForeground(unknown)
            score = QTableWidgetItem("" if e.score is None else f"{e.score:.3f}")
            score.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            why = QTableWidgetItem(why_text(e.reason, e.nearest, e.runner_up)
                                   or ("recognised" if row.who else ""))
            why.setToolTip(why.text())
            source = QTableWidgetItem(short_source(e.source))
            where = f" (face at {', '.join(f'{v:.0f}' for v in e.box)})" if e.box else ""
            source.setToolTip(e.source + where)
            items = {TIME: when, FACE: face, WHO: who, WHY: why, SOURCE: source,
                     STATION: QTableWidgetItem(e.station), SCORE: score}
            for c, item in items.items():
                self.table.setItem(r, c, item)
        shown = f"{len(rows)} event(s) shown"
        if len(rows) >= LIMIT:
            shown += f" (the newest {LIMIT})"
        self.count_label.setText(f"{shown} · {total} in the log")
        self.loaded = True
        self._update_not_action()
        self._update_photo_button()

    # -- the photo or frame behind an event -----------------------------------------------------
    def open_selected(self, *_args) -> None:
        """Double-click: the photo or video frame the event came from, its face boxed."""
        row = self.selected_row()
        if row is None:
            return
        event = row.event
        self.state.run(lambda job: event_picture(event.source, event.box),
                       lambda picture: self._show_picture(event, picture),
                       what="Opening the event's picture",
                       on_error=lambda text: self.state.error.emit(text))

    def _show_picture(self, event, picture: QImage) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle(f"{event.name or 'Unknown'} · {short_source(event.source)}")
        label = QLabel()
        label.setPixmap(QPixmap.fromImage(picture).scaled(
            900, 700, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        layout = QVBoxLayout(dialog)
        layout.addWidget(label)
        why = why_text(event.reason, event.nearest, event.runner_up)
        layout.addWidget(QLabel(f"{event.time.astimezone():%Y-%m-%d %H:%M:%S} · "
                                f"{event.name or 'Unknown'}" + (f" · {why}" if why else "")))
        self.picture_dialog = dialog  # tests look at it
        dialog.show()

    def photo_of(self, row: EventRow | None) -> str | None:
        """The photo file an event came from (None: a video, a camera, or no event)."""
        if row is None or not row.event.source:
            return None
        path, frame_no = Frame.parse_where(row.event.source)
        return path if frame_no is None and Path(path).suffix.lower() in IMAGE_SUFFIXES \
            else None

    def _update_photo_button(self) -> None:
        self.photo_button.setEnabled(self.photo_of(self.selected_row()) is not None)

    def show_photo(self) -> None:
        """The selected event's photo in the app's viewer."""
        from .photo_viewer import open_photos

        path = self.photo_of(self.selected_row())
        if path is not None:
            self.viewer = open_photos(self, self.state, [path],
                                      viewer=getattr(self, "viewer", None))

    # -- "this was not X" ---------------------------------------------------------------------
    def selected_row(self) -> EventRow | None:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return self.rows[rows.pop()] if len(rows) == 1 and max(rows) < len(self.rows) else None

    def _update_not_action(self) -> None:
        row = self.selected_row()
        named = row is not None and row.who is not None and row.event.person_id is not None
        usable = named and row.event.has_thumbnail and self.state.is_ready
        text = f"This was not {row.who}…" if named else "This was not…"
        self.not_action.setText(text)
        # a long name is elided: the button keeps its size, the tooltip has it whole
        short = QFontMetrics(self.not_button.font()).elidedText(
            row.who, Qt.TextElideMode.ElideRight, NAME_ROOM) if named else ""
        self.not_button.setText(f"This was not {short}…" if named else text)
        self.not_button.setAccessibleName(text.rstrip("…"))
        self.not_action.setEnabled(usable)
        self.not_button.setEnabled(usable)
        if usable:
            tip = "Ctrl+N: the samples of this person that matched this face stop being used"
        elif named:
            tip = ("No picture of this face was kept, so the samples that matched it cannot "
                   "be found: check the person's samples on the People page")
        else:
            tip = "Select an event that names a person"
        self.not_button.setToolTip(f"{text}\n{tip}" if named else tip)

    def not_this_person(self) -> None:
        """Flag the samples of the person named that matched this face (asked first;
        asked louder when they are the person's last usable ones)."""
        row = self.selected_row()
        if row is None or row.who is None or not self.not_action.isEnabled():
            return
        name = row.who
        state, event = self.state, row.event
        embedder, gallery = state.pipeline.embedder, state.gallery
        # a pairwise false accept rate of 1%: every sample that could name this face at
        # any of the offered settings (1:N thresholds only rise above it with more people)
        try:
            bar = embedder.threshold(1e-2)
        except ModelPackError:
            bar = 1.0
        rule = state.rule()
        if rule is not None and rule.runner_up_weight == 0:
            bar = min(bar, rule.threshold)

        def found(result) -> None:
            chosen, usable = result
            if not chosen:
                state.message.emit(f"None of {name}'s samples matched this face.")
                return
            n = len(chosen)
            if n >= usable:
                text = (f"{'These are' if n > 1 else 'This is'} {name}'s last usable "
                        f"sample{'s' if n > 1 else ''}: once flagged, {name} is no longer "
                        "recognised until photos are added or a sample is unflagged on the "
                        "People page. Flag anyway?")
                action = "Stop recognising " + name
            else:
                text = (f"Stop using {n} of {name}'s {usable} samples that match this face? "
                        "They are flagged, not deleted: they stay on the People page, where "
                        "they can be unflagged.")
                action = "Flag samples"
            if not dialogs.confirm(self, f"This was not {name}", text, action):
                return

            def flag(job) -> list[int]:
                for face_id in chosen:
                    gallery.flag_face(face_id)
                return chosen

            def done(flagged: list[int]) -> None:
                state.message.emit(f"Flagged {len(flagged)} of {name}'s samples as not "
                                   "matching this face; they are no longer used.")
                state.gallery_changed.emit()

            state.run(flag, done, what=f"Flagging {name}'s samples")

        state.run(lambda job: samples_matching(gallery, embedder, event, bar), found,
                  what=f"Finding {name}'s samples that match this face")

    # -- export ----------------------------------------------------------------------------
    def export_csv(self, path: str | None = None) -> None:
        if not self.state.has_gallery:
            return
        if path is None:
            path = dialogs.save_file(self, "Export events", "events.csv", dialogs.CSV_FILTER)
        if not path:
            return
        gallery, chosen = self.state.gallery, self.current_filter()
        self.state.run(lambda job: gallery.export_events_csv(path, **chosen.as_kwargs()),
                       lambda n: self.state.message.emit(f"Wrote {n} event(s) to {path}"),
                       what="Exporting the events")
