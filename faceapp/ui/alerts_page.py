"""Alerts: someone on the watch list was seen. The Alerts page lists the alerts (with
"Mark as seen") and the watch list (who, on which camera, quiet hours); AlertCenter
takes the alerts of the live worker to the desktop notification (the system tray
where there is one, else AlertBar, a bar across the window) and to --on-alert's
command. The decisions themselves are the engine's (faceapp/core/alerts.py)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel,
                               QListWidget, QListWidgetItem, QPushButton, QSpinBox,
                               QSystemTrayIcon, QTableWidget, QTableWidgetItem, QVBoxLayout)

from ..core.alerts import Alert, AlertWatcher, CommandSink, camera_words
from ..core.gallery import (DEFAULT_ALERT_EVERY_MINUTES, acknowledge_alerts, alert_every,
                            alert_picture, alerts, parse_quiet, set_alert_every, unwatch,
                            watch, watch_list)
from . import dialogs
from .images import jpeg_to_qimage
from .state import AppState
from .widgets import LazyPage, heading, muted, named

THUMB = 56
ANY_UNKNOWN = "Any unknown face"
HEADERS = ["Face", "Who", "Camera", "When", "Seen"]


class AlertCenter(QObject):
    """Where the live worker's alerts go. `raised` is emitted in the worker's thread
    and delivered in the GUI thread."""

    raised = Signal(object)  # Alert

    def __init__(self, parent=None):
        super().__init__(parent)
        self.command: CommandSink | None = None
        self.tray: QSystemTrayIcon | None = None

    def set_command(self, command: str, timeout: float = 10.0) -> None:
        """--on-alert: run this command for every alert (raises ValueError)."""
        self.command = CommandSink(command, timeout=timeout)

    def watcher_for(self, camera: str):
        """What the live worker makes its AlertWatcher with (in its thread)."""
        sinks = [self.raised.emit] + ([self.command] if self.command is not None else [])
        return lambda recognizer: AlertWatcher(recognizer, camera, sinks)

    def close(self) -> None:
        if self.command is not None:
            self.command.close(wait=self.command.timeout + 1)


class AlertBar(QFrame):
    """The newest alert across the top of the window, where no tray shows it."""

    show_alerts = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("alertbar")
        self.setStyleSheet("#alertbar { background: #fff4e5; border: 1px solid #f0c36d;"
                           " border-radius: 4px; } #alertbar QLabel { color: #663c00; }")
        self.picture = QLabel()
        self.picture.setFixedSize(THUMB, THUMB)
        self.label = QLabel()
        self.label.setWordWrap(True)
        see = named(QPushButton("Show alerts"), "Show the alerts")
        see.clicked.connect(self.show_alerts)
        see.clicked.connect(self.hide)
        close = named(QPushButton("Dismiss"), "Dismiss the alert")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.picture)
        layout.addWidget(self.label, 1)
        layout.addWidget(see)
        layout.addWidget(close)
        self.hide()

    def show_alert(self, alert: Alert) -> None:
        image = jpeg_to_qimage(alert.picture)
        self.picture.setPixmap(QPixmap.fromImage(image).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation) if not image.isNull() else QPixmap())
        self.label.setText(f"<b>Alert:</b> {alert.text()}")
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class AlertsPage(LazyPage):
    def __init__(self, state: AppState, center: AlertCenter, parent=None):
        super().__init__(parent)
        self.state = state
        self.center = center
        self.rows: list = []  # AlertRecord, as in the table
        self.entries: list = []  # WatchEntry, as in the list
        self.loaded = False
        self.bar = AlertBar()
        center.raised.connect(self.notify)

        self.table = named(QTableWidget(0, len(HEADERS)), "Alerts")
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.seen_button = named(QPushButton("Mark as seen"), "Mark the selected alerts as seen")
        self.seen_button.clicked.connect(self.acknowledge_selected)
        self.all_seen_button = named(QPushButton("Mark all as seen"), "Mark every alert as seen")
        self.all_seen_button.clicked.connect(lambda: self.acknowledge(None))
        self.summary = muted()

        self.watched = named(QListWidget(), "Watch list")
        self.watched.setMaximumHeight(140)
        add_person = named(QPushButton("Watch a person…"), "Add a person to the watch list")
        add_person.clicked.connect(lambda: self.watch_person())
        add_unknown = named(QPushButton("Watch unknown faces…"),
                            "Add any unknown face to the watch list")
        add_unknown.clicked.connect(lambda: self.watch_person(ANY_UNKNOWN))
        self.remove_button = named(QPushButton("Stop watching"),
                                   "Remove the selected entry from the watch list")
        self.remove_button.clicked.connect(self.remove_selected)
        self.every = named(QSpinBox(), "Minutes between two alerts about one person")
        self.every.setRange(0, 24 * 60)
        self.every.setValue(DEFAULT_ALERT_EVERY_MINUTES)
        self.every.setSuffix(" min")
        self.every.setToolTip("Someone who stays in front of the camera gives one alert "
                              "in this time")
        self.every.editingFinished.connect(self._every_changed)
        every_label = QLabel("At most one alert per person every")
        every_label.setBuddy(self.every)

        buttons = QHBoxLayout()
        buttons.addWidget(self.seen_button)
        buttons.addWidget(self.all_seen_button)
        buttons.addStretch(1)
        watch_buttons = QHBoxLayout()
        watch_buttons.addWidget(add_person)
        watch_buttons.addWidget(add_unknown)
        watch_buttons.addWidget(self.remove_button)
        watch_buttons.addStretch(1)
        every_row = QHBoxLayout()
        every_row.addWidget(every_label)
        every_row.addWidget(self.every)
        every_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Alerts"))
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(heading("Watch list"))
        layout.addWidget(muted("An alert is shown when someone on this list is seen live "
                               "(once each time they come into view)."))
        layout.addWidget(self.watched)
        layout.addLayout(watch_buttons)
        layout.addLayout(every_row)

        state.ready_changed.connect(self.changed)
        state.gallery_changed.connect(self.changed)

    # -- a new alert (GUI thread) -----------------------------------------------------------
    def notify(self, alert: Alert) -> None:
        center = self.center
        if center.tray is None and QSystemTrayIcon.isSystemTrayAvailable():
            center.tray = QSystemTrayIcon(self.windowIcon(), self)
            center.tray.setToolTip("faceapp")
            center.tray.show()
        if center.tray is not None and center.tray.supportsMessages():
            image = jpeg_to_qimage(alert.picture)
            icon = QIcon(QPixmap.fromImage(image)) if not image.isNull() else QIcon()
            center.tray.showMessage("faceapp alert", alert.text(), icon, 15000)
        else:
            self.bar.show_alert(alert)
        self.changed()

    # -- loading -----------------------------------------------------------------------------
    def refresh(self) -> None:
        self._stale = False
        gallery = self.state.gallery
        if not self.state.has_gallery:
            return

        def work(job):
            rows = alerts(gallery, limit=500)
            pictures = {r.id: jpeg_to_qimage(alert_picture(gallery, r.id))
                        for r in rows if r.has_picture}
            return rows, pictures, watch_list(gallery), alert_every(gallery)

        self.state.run(work, self._loaded, what="The alerts cannot be read")

    def _loaded(self, result) -> None:
        rows, pictures, entries, every = result
        self.rows, self.entries = rows, entries
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            face = QTableWidgetItem("" if row.id in pictures else "no picture")
            image = pictures.get(row.id)
            if image is not None and not image.isNull():
                face.setIcon(QIcon(QPixmap.fromImage(image)))
            cells = [face, QTableWidgetItem(row.name or "Unknown face"),
                     QTableWidgetItem(camera_words(row.camera) or row.station),
                     QTableWidgetItem(row.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")),
                     QTableWidgetItem("seen" if row.acknowledged else "new")]
            for c, item in enumerate(cells):
                self.table.setItem(r, c, item)
        new = sum(1 for row in rows if row.acknowledged is None)
        self.summary.setText(f"{new} new alert(s)" if rows else "No alerts yet.")
        self.watched.clear()
        for entry in entries:
            QListWidgetItem(self.entry_text(entry), self.watched)
        if not entries:
            QListWidgetItem("Nobody is watched: no alerts are raised.", self.watched)
        if not self.every.hasFocus():
            self.every.setValue(every)
        self.loaded = True

    @staticmethod
    def entry_text(entry) -> str:
        who = entry.name or ANY_UNKNOWN
        where = f"on {camera_words(entry.camera)}" if entry.camera else "on every camera"
        quiet = f", quiet {entry.quiet.replace('-', ' to ')}" if entry.quiet else ""
        return f"{who} {where}{quiet}"

    # -- actions -----------------------------------------------------------------------------
    def acknowledge_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        ids = [self.rows[r].id for r in rows if r < len(self.rows)]
        if ids:
            self.acknowledge(ids)

    def acknowledge(self, ids) -> None:
        gallery = self.state.gallery
        if not self.state.has_gallery:
            return
        self.state.run(lambda job: acknowledge_alerts(gallery, ids),
                       lambda n: self.refresh(), what="The alerts cannot be marked")

    def watch_person(self, who: str | None = None) -> None:
        if not self.state.has_gallery:
            return
        gallery = self.state.gallery
        if who is None:
            names = [p.name for p in gallery.people()]
            if not names:
                self.state.error.emit("The gallery has nobody yet: enroll people first.")
                return
            who = dialogs.choose(self, "Watch a person", "Alert me when I see:", names)
            if not who:
                return
        camera = dialogs.ask_text(self, "Watch list", "Only on this camera (a camera "
                                  "number, video file or station; empty: every camera):")
        if camera is None:
            return
        quiet = dialogs.ask_text(self, "Watch list", "Quiet hours, no alerts (like "
                                 "22:00-06:00; empty: none):")
        if quiet is None:
            return
        try:
            parse_quiet(quiet)
        except ValueError as exc:
            self.state.error.emit(f"Not added: {exc}.")
            return

        def work(job):
            person = None
            if who != ANY_UNKNOWN:
                found = gallery.find_person(who)
                if found is None:
                    raise ValueError(f"nobody called {who} in the gallery")
                person = found.id
            return watch(gallery, person, camera.strip(), quiet.strip())

        self.state.run(work, lambda _id: self._watched_now(who), what="Not added")

    def _watched_now(self, who: str) -> None:
        self.state.message.emit(f"Alerts on for {who}")
        self.refresh()

    def remove_selected(self) -> None:
        row = self.watched.currentRow()
        if not (0 <= row < len(self.entries)) or not self.state.has_gallery:
            return
        entry, gallery = self.entries[row], self.state.gallery
        self.state.run(lambda job: unwatch(gallery, entry.person_id, entry.camera),
                       lambda n: self.refresh(), what="Not removed")

    def _every_changed(self) -> None:
        if not self.state.has_gallery:
            return
        gallery, minutes = self.state.gallery, self.every.value()
        self.state.run(lambda job: set_alert_every(gallery, minutes), None,
                       what="Not changed")
