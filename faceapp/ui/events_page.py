"""The Events page: the recognition log (time, face, who, score, source), filtered by
person and date, exported to CSV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from PySide6.QtCore import QDate, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDateEdit,
                               QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.gallery import Event, Gallery
from . import dialogs
from .images import jpeg_to_qimage
from .state import AppState
from .widgets import muted

LIMIT = 500
THUMB = 48
EVERYONE, UNKNOWN_ONLY = "everyone", "unknown"


@dataclass(frozen=True)
class EventFilter:
    person_id: int | None = None
    unknown_only: bool = False
    since: datetime | None = None  # local time, inclusive
    until: datetime | None = None  # local time, exclusive

    def as_kwargs(self) -> dict:
        return {"person_id": self.person_id, "unknown_only": self.unknown_only,
                "since": self.since, "until": self.until}


@dataclass
class EventRow:
    event: Event
    who: str | None  # the person's current name (or the recorded one); None: unknown
    thumbnail: QImage


def load_events(gallery: Gallery, chosen: EventFilter) -> tuple[list[EventRow], int]:
    """The newest LIMIT events matching, with thumbnails decoded (runs in a job)."""
    names = {p.id: p.name for p in gallery.people()}
    rows = []
    for event in gallery.events(limit=LIMIT, **chosen.as_kwargs()):
        image = jpeg_to_qimage(gallery.event_thumbnail(event.id)) if event.has_thumbnail \
            else QImage()
        if not image.isNull():
            image = image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        rows.append(EventRow(event, names.get(event.person_id, event.name), image))
    return rows, gallery.event_count()


def _date_edit() -> QDateEdit:
    edit = QDateEdit(QDate.currentDate())
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setEnabled(False)
    return edit


class EventsPage(QWidget):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.rows: list[EventRow] = []
        self._generation = 0
        self._stale = True
        self.loaded = False

        self.who = QComboBox()
        self.who.setMinimumContentsLength(16)
        self.who.addItem("Everyone", EVERYONE)
        self.who.addItem("Unknown faces", UNKNOWN_ONLY)
        self.who.currentIndexChanged.connect(self.refresh)
        self.use_from = QCheckBox("From")
        self.from_date = _date_edit()
        self.use_to = QCheckBox("to")
        self.to_date = _date_edit()
        for check, edit in ((self.use_from, self.from_date), (self.use_to, self.to_date)):
            check.toggled.connect(edit.setEnabled)
            check.toggled.connect(self.refresh)
            edit.dateChanged.connect(self.refresh)
        refresh_button = QPushButton("Refresh")
        refresh_button.setToolTip("F5")
        refresh_button.clicked.connect(self.refresh)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Ctrl+E")
        self.export_button.clicked.connect(lambda: self.export_csv())

        row = QHBoxLayout()
        row.addWidget(QLabel("Who:"))
        row.addWidget(self.who)
        row.addSpacing(12)
        row.addWidget(self.use_from)
        row.addWidget(self.from_date)
        row.addWidget(self.use_to)
        row.addWidget(self.to_date)
        row.addStretch(1)
        row.addWidget(refresh_button)
        row.addWidget(self.export_button)

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Time", "Face", "Who", "Score", "Source"])
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 8)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(1, THUMB + 16)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(2, 200)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.count_label = muted()

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.count_label)

        state.events_changed.connect(self._events_changed)
        state.gallery_changed.connect(self._gallery_changed)
        state.ready_changed.connect(self._gallery_changed)

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
        return EventFilter(person_id, kind == UNKNOWN_ONLY, since, until)

    def set_person_filter(self, person_id: int | str | None) -> None:
        """None: everyone; "unknown": unknown faces; else a person id."""
        index = self.who.findData(EVERYONE if person_id is None else person_id)
        if index >= 0:
            self.who.setCurrentIndex(index)

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
        self._events_changed()

    def _events_changed(self) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        if not self.state.has_gallery:
            return
        self._stale = False
        self._generation += 1
        generation, gallery, chosen = self._generation, self.state.gallery, self.current_filter()
        self.state.run(lambda job: load_events(gallery, chosen),
                       lambda result: self._loaded(generation, *result),
                       what="Reading the event log")

    def _loaded(self, generation: int, rows: list[EventRow], total: int) -> None:
        if generation != self._generation:
            return
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
            source = QTableWidgetItem(e.source)
            source.setToolTip(e.source)
            for c, item in enumerate((when, face, who, score, source)):
                self.table.setItem(r, c, item)
        shown = f"{len(rows)} event(s) shown"
        if len(rows) >= LIMIT:
            shown += f" (the newest {LIMIT})"
        self.count_label.setText(f"{shown} · {total} in the log")
        self.loaded = True

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
