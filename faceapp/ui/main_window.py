"""The main window: a sidebar of pages, menus with the shortcuts, a status bar with the
live frame rate, and a banner for errors (nothing here ever blocks on a failure)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMainWindow,
                               QMessageBox, QStackedWidget, QStyle, QVBoxLayout, QWidget)

from ..core.gallery import Gallery
from ..core.recognize import FacePipeline
from . import dialogs
from .alerts_page import AlertCenter, AlertsPage
from .enroll_page import EnrollPage
from .events_page import EventsPage
from .live_page import LivePage
from .people_page import PeoplePage
from .settings import AppSettings
from .settings_page import SettingsPage
from .state import AppState
from .unknowns_page import UnknownsPage
from .widgets import Banner

SHORTCUTS = """
<table cellspacing=4>
<tr><td><b>Ctrl+1 … Ctrl+7</b></td><td>Live, Enroll, People, Unknown people, Events,
Alerts, Settings</td></tr>
<tr><td><b>Tab, Shift+Tab</b></td><td>move between the controls of a page; Alt + the
underlined letter goes to a field</td></tr>
<tr><td><b>Space</b></td><td>start / stop the video (Live page); a video file: pause and
play</td></tr>
<tr><td><b>Left, Right</b></td><td>on the video's position bar: back / forward 5 seconds
</td></tr>
<tr><td><b>Enter</b></td><td>show the photo an event came from (Events page)</td></tr>
<tr><td><b>Ctrl+I</b></td><td>import photos of a person</td></tr>
<tr><td><b>Ctrl+Shift+I</b></td><td>import a folder of people</td></tr>
<tr><td><b>Ctrl+E</b></td><td>export the events to CSV</td></tr>
<tr><td><b>Ctrl+N</b></td><td>"This was not …" on the selected event (Events page)</td></tr>
<tr><td><b>F2</b></td><td>rename the selected person</td></tr>
<tr><td><b>Delete</b></td><td>delete the selected person or samples (asks first)</td></tr>
<tr><td><b>Ctrl+F</b></td><td>search people</td></tr>
<tr><td><b>F5</b></td><td>refresh the page</td></tr>
<tr><td><b>Ctrl+Q</b></td><td>quit</td></tr>
</table>
"""


GETTING_STARTED = """
<h3>Getting started</h3>
<ol>
<li><b>Enroll people</b> (Ctrl+2): a few clear photos of each person, a folder with one
sub-folder per person, or a guided capture in front of the camera.</li>
<li><b>Watch</b> (Ctrl+1): choose a camera, a video file or a folder of photos and press
Start. Known people get a green box with their name; strangers an orange one.
Click a face to enroll it.</li>
<li><b>Name the strangers</b> (Ctrl+4): faces nobody was recognised as are grouped by
person on the Unknown people page; name a group to enroll them.</li>
<li><b>Check the log</b> (Ctrl+5): who was seen, when and where. If someone was named
wrongly, select the event and press "This was not …".</li>
<li><b>Choose how careful</b> (Ctrl+7): in Settings, choose how many strangers may be
mistaken for someone enrolled. Fewer mistakes means enrolled people are missed more
often.</li>
</ol>
<p>Everything stays on this computer. Face pictures are personal data: keep only what you
need, and tell people they are being recognised.</p>
"""


WELCOME = ("Welcome to faceapp. Nobody is enrolled yet: add a person from a few photos, "
           "import a folder with one sub-folder per person, or take a guided capture from "
           "the camera, all on this page. Then the Live page names them.")


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings, pipeline: FacePipeline | None = None,
                 gallery: Gallery | None = None, gallery_path: Path | None = None):
        super().__init__()
        self.setWindowTitle("faceapp")
        self.welcomed = False  # the first-run note was shown (or is not wanted)
        self.state = AppState(settings, pipeline, gallery, gallery_path)
        dialogs.FolderMemory.settings = settings  # file dialogs open where the last ended

        self.live = LivePage(self.state)
        self.enroll = EnrollPage(self.state)
        self.people = PeoplePage(self.state)
        self.unknowns = UnknownsPage(self.state)
        self.events = EventsPage(self.state)
        # alerts about the watch list: the live worker raises them, this page lists them
        self.alert_center = AlertCenter(self)
        self.alerts = AlertsPage(self.state, self.alert_center)
        self.live.alerts = self.alert_center
        self.settings_page = SettingsPage(self.state)
        style = self.style()
        self.pages = [
            ("Live", self.live, QStyle.StandardPixmap.SP_MediaPlay),
            ("Enroll", self.enroll, QStyle.StandardPixmap.SP_FileDialogNewFolder),
            ("People", self.people, QStyle.StandardPixmap.SP_DirHomeIcon),
            ("Unknown people", self.unknowns, QStyle.StandardPixmap.SP_MessageBoxQuestion),
            ("Events", self.events, QStyle.StandardPixmap.SP_FileDialogDetailedView),
            ("Alerts", self.alerts, QStyle.StandardPixmap.SP_MessageBoxWarning),
            ("Settings", self.settings_page, QStyle.StandardPixmap.SP_FileDialogInfoView),
        ]

        self.sidebar = QListWidget()
        self.sidebar.setAccessibleName("Pages")
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setFixedWidth(150)
        self.sidebar.setSpacing(2)
        self.sidebar.setStyleSheet("QListWidget { border: none; outline: 0;"
                                   " background: palette(window); }"
                                   "QListWidget::item { padding: 8px 6px; border-radius: 4px; }"
                                   "QListWidget::item:selected { background: palette(highlight);"
                                   " color: palette(highlighted-text); }")
        self.stack = QStackedWidget()
        for i, (title, page, icon) in enumerate(self.pages):
            item = QListWidgetItem(style.standardIcon(icon), title)
            item.setToolTip(f"{title} (Ctrl+{i + 1})")
            self.sidebar.addItem(item)
            self.stack.addWidget(page)
        self.sidebar.currentRowChanged.connect(self._page_changed)

        self.banner = Banner()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(8, 8, 8, 0)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(self.alerts.bar)
        self.alerts.bar.show_alerts.connect(lambda: self.go_to(self.alerts))
        right_layout.addWidget(self.stack, 1)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(right, 1)
        self.setCentralWidget(central)

        self.perf_label = QLabel()
        self.statusBar().addPermanentWidget(self.perf_label)
        self.statusBar().showMessage("Loading the gallery and the face models…")

        self._build_actions()
        self.state.error.connect(self.show_error)
        self.state.message.connect(self._note)
        self.state.ready_changed.connect(self._ready_changed)
        self.live.stats_changed.connect(self._show_stats)
        self.live.running_changed.connect(self._update_actions)

        self.setMinimumSize(640, 480)  # a 1024 x 768 screen at 150% leaves 683 x 512
        geometry = settings.geometry
        if geometry is None or not self.restoreGeometry(geometry):
            screen = self.screen().availableGeometry() if self.screen() else None
            self.resize(min(1280, screen.width()) if screen else 1280,
                        min(820, screen.height()) if screen else 820)
        self.show_page(0)
        self.state.load()

    # -- actions and shortcuts ----------------------------------------------------------------
    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.import_photos_action = self._action(
            file_menu, "Import photos of a person…", self._import_photos, "Ctrl+I")
        self.import_folder_action = self._action(
            file_menu, "Import a folder of people…", self._import_folder, "Ctrl+Shift+I")
        self.export_events_action = self._action(
            file_menu, "Export events to CSV…", self._export_events, "Ctrl+E")
        file_menu.addSeparator()
        self._action(file_menu, "Export gallery…", lambda: self.settings_page.export_gallery())
        self._action(file_menu, "Import gallery…", lambda: self.settings_page.import_gallery())
        file_menu.addSeparator()
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)

        go_menu = bar.addMenu("&Go")
        for i, (title, _page, _icon) in enumerate(self.pages):
            self._action(go_menu, title, lambda checked=False, i=i: self.show_page(i),
                         f"Ctrl+{i + 1}")

        live_menu = bar.addMenu("&Video")
        self.start_stop_action = self._action(live_menu, "Start / stop (a video file: "
                                              "pause / play)", self._start_stop,
                                              Qt.Key.Key_Space)
        self._action(live_menu, "Look for cameras", self.live.find_cameras)

        people_menu = bar.addMenu("&People")
        self.rename_action = self._action(people_menu, "Rename…", self._rename, "F2")
        self._action(people_menu, "Merge into…", lambda: self.people.merge_selected())
        self.delete_action = self._action(people_menu, "Delete…", self._delete,
                                          QKeySequence.StandardKey.Delete)
        self._action(people_menu, "Search", self._search, QKeySequence.StandardKey.Find)

        go_menu.addSeparator()
        self._action(go_menu, "Refresh", self._refresh, QKeySequence.StandardKey.Refresh)
        self.help_menu = bar.addMenu("&Help")
        self._action(self.help_menu, "Getting started", self._show_getting_started,
                     QKeySequence.StandardKey.HelpContents)
        self._action(self.help_menu, "Keyboard shortcuts", self._show_shortcuts)
        self.help_menu.addSeparator()
        self._action(self.help_menu, "About faceapp", self._show_about)

    def _show_stats(self, text: str) -> None:
        self.perf_label.setText(text)
        self.perf_label.setToolTip(self.live.stats_detail)

    def _update_actions(self, *_) -> None:
        self.start_stop_action.setEnabled(self.stack.currentWidget() is self.live)
        on_people = self.stack.currentWidget() is self.people
        self.rename_action.setEnabled(on_people)
        self.delete_action.setEnabled(on_people)

    def show_page(self, index: int) -> None:
        self.sidebar.setCurrentRow(index)

    def go_to(self, page: QWidget) -> None:
        """Show one of the pages (Live, Enroll, ...)."""
        self.show_page(self.stack.indexOf(page))

    def _page_changed(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.banner.hide()  # an error belongs to the page it happened on
        self._update_actions()

    def _start_stop(self) -> None:
        if self.stack.currentWidget() is self.live:
            self.live.play_pause()

    def _import_photos(self) -> None:
        self.show_page(1)
        self.enroll.import_photos()

    def _import_folder(self) -> None:
        self.show_page(1)
        self.enroll.import_folder()

    def _export_events(self) -> None:
        self.go_to(self.events)
        self.events.export_csv()

    def _rename(self) -> None:
        if self.stack.currentWidget() is self.people:
            self.people.rename_selected()

    def _delete(self) -> None:
        """Delete: the selected samples if the samples have the focus, else the person."""
        people = self.people
        if self.stack.currentWidget() is not people or people.search.hasFocus():
            return
        if people.samples.hasFocus() and people.samples.selectedItems():
            people.remove_selected_samples()
        else:
            people.delete_selected()

    def _search(self) -> None:
        self.show_page(2)
        self.people.search.setFocus()
        self.people.search.selectAll()

    def _refresh(self) -> None:
        page = self.stack.currentWidget()
        if page is self.people:
            self.people.refresh()
        elif page is self.events:
            self.events.refresh()
        elif page is self.unknowns:
            self.unknowns.refresh()
        elif page is self.alerts:
            self.alerts.refresh()

    def shortcuts_text(self) -> str:
        return SHORTCUTS

    def about_text(self) -> str:
        """Versions, and each model's purpose and licence (from the packs' manifests)."""
        import platform

        import PySide6
        from PySide6.QtCore import qVersion

        from .. import __version__
        from ..core.models import available_packs
        from .words import MODEL_ROLES

        rows = []
        for pack in available_packs():
            manifest = pack.manifest
            role = MODEL_ROLES.get(pack.name, (None, ""))[0]
            what = "Face finder" if pack.task == "detector" else f"{role or 'Face'} model"
            provenance = manifest.get("provenance", {})
            origin = provenance.get("weights", "")
            if not origin and isinstance(provenance.get("source"), dict):
                origin = provenance["source"].get("licence", "")
            rows.append(f"<tr><td>{what}</td><td>{pack.name} {manifest.get('version', '')}"
                        f"</td><td>{manifest.get('licence', 'unknown')}</td></tr>"
                        + (f"<tr><td></td><td colspan=2><small>{origin}</small></td></tr>"
                           if origin else ""))
        return (f"<h3>faceapp {__version__}</h3>"
                "<p>Enrolls people and recognises faces offline, on this computer.</p>"
                f"<p>Python {platform.python_version()} · Qt {qVersion()} · PySide6 "
                f"{PySide6.__version__}</p>"
                "<p><b>Models and their licences</b></p><table cellspacing=4>"
                + "".join(rows) + "</table>"
                "<p><small>The models were measured on Labeled Faces in the Wild, a research "
                "data set; check the terms of the faces they were trained on before "
                "commercial use.</small></p>")

    def _show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", SHORTCUTS)

    def _show_getting_started(self) -> None:
        QMessageBox.information(self, "Getting started", GETTING_STARTED)

    def _show_about(self) -> None:
        QMessageBox.about(self, "About faceapp", self.about_text())

    # -- messages ----------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        """Something succeeded: an error shown before is no longer the news."""
        self.banner.hide()
        self.statusBar().showMessage(text, 8000)

    def show_error(self, text: str) -> None:
        self.banner.show_message(text, "error")
        self.statusBar().showMessage(text.splitlines()[0] if text else "", 15000)

    def _ready_changed(self) -> None:
        if self.state.is_ready:
            self.statusBar().showMessage(f"Ready · gallery {self.state.gallery_path}", 8000)
            self._first_run()
        elif not self.state.loading:
            self.statusBar().clearMessage()

    def _first_run(self) -> None:
        """An empty gallery opens on the Enroll page, saying the three ways to start
        (once per window; not when started to play a source with --live)."""
        if self.welcomed or self.state.gallery is None or self.state.gallery.people():
            return
        self.welcomed = True
        self.show_page(1)
        self.banner.show_message(WELCOME, "info")

    # -- closing -----------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.state.settings.geometry = self.saveGeometry()
        self.live.shutdown()
        self.alert_center.close()
        self.enroll.shutdown()
        self.state.shutdown()
        super().closeEvent(event)
