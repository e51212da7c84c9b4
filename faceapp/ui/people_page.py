"""The People page: a searchable grid of everyone in the gallery (best photo and sample
count) and a detail panel to look at samples, remove them, rename, merge and delete."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSize, QSortFilterProxyModel, Qt
from PySide6.QtGui import (QAction, QIcon, QImage, QPainter, QPixmap, QStandardItem,
                           QStandardItemModel)
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QLineEdit,
                               QListView, QListWidget, QListWidgetItem, QPushButton,
                               QSplitter, QVBoxLayout, QWidget)

from ..core.gallery import Gallery, Person
from ..core.index import FaceIndex
from . import dialogs
from .images import thumbnail
from .state import AppState
from .widgets import flow, heading, muted

PERSON_ID = Qt.ItemDataRole.UserRole + 1
NAME = Qt.ItemDataRole.UserRole + 2
FACE_ID = Qt.ItemDataRole.UserRole + 3
FLAGGED = Qt.ItemDataRole.UserRole + 4
FLAGGED_TIP = ("Flagged as wrong (\"This was not …\" on the Events page): not used for "
               "recognition. Unflag it to use it again.")
GRID_ICON = 96
SAMPLE_ICON = 112
PORTRAIT = 160


@dataclass
class PersonCard:
    person: Person
    image: QImage  # best sample, small (null if none)


def load_cards(gallery: Gallery) -> list[PersonCard]:
    """Everyone with their portrait: the sample chosen, else their best unflagged one
    (runs in a job)."""
    cards = []
    for person in gallery.people():
        face_id = gallery.portrait(person.id)
        image = thumbnail(gallery.face_crop(face_id), PORTRAIT) if face_id else QImage()
        cards.append(PersonCard(person, image))
    return cards


def dimmed(image: QImage) -> QImage:
    """The picture faded onto a light background (any thread: it is a QImage)."""
    faded = QImage(image.size(), QImage.Format.Format_RGB888)
    faded.fill(Qt.GlobalColor.white)
    painter = QPainter(faded)
    painter.setOpacity(0.35)
    painter.drawImage(0, 0, image)
    painter.end()
    return faded


def load_samples(gallery: Gallery, person_id: int) -> list[tuple[int, str, bool, QImage]]:
    """A person's samples, best quality first (flagged ones last)."""
    samples = []
    for f in sorted(gallery.faces(person_id), key=lambda f: (f.flagged, -f.quality, f.id)):
        image = thumbnail(gallery.face_crop(f.id), SAMPLE_ICON)
        samples.append((f.id, f.source, f.flagged, dimmed(image) if f.flagged else image))
    return samples


def placeholder_icon() -> QIcon:
    pixmap = QPixmap(GRID_ICON, GRID_ICON)
    pixmap.fill(Qt.GlobalColor.lightGray)
    return QIcon(pixmap)


class PeoplePage(QWidget):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.cards: dict[int, PersonCard] = {}
        self.selected_id: int | None = None
        self._generation = 0  # answers of older loads are dropped
        self.loaded = False

        # left: search and grid
        self.search = QLineEdit()
        self.search.setAccessibleName("Search people")
        self.search.setPlaceholderText("Search people (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.model = QStandardItemModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterRole(NAME)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.grid = QListView()
        self.grid.setAccessibleName("People")
        self.grid.setModel(self.proxy)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setIconSize(QSize(GRID_ICON, GRID_ICON))
        self.grid.setGridSize(QSize(GRID_ICON + 40, GRID_ICON + 52))
        self.grid.setUniformItemSizes(True)
        self.grid.setWordWrap(True)
        self.grid.setSpacing(6)
        self.grid.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.grid.selectionModel().currentChanged.connect(self._current_changed)
        self.count_label = muted()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.search)
        left_layout.addWidget(self.grid, 1)
        left_layout.addWidget(self.count_label)

        # right: the selected person
        self.portrait = QLabel()
        self.portrait.setFixedSize(PORTRAIT, PORTRAIT)
        self.portrait.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.portrait.setStyleSheet("background: palette(mid); border-radius: 6px;")
        self.name_label = heading("")
        self.name_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info_label = muted()
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("F2")
        self.rename_button.clicked.connect(lambda: self.rename_selected())
        self.merge_button = QPushButton("Merge into…")
        self.merge_button.setToolTip("Move this person's samples and events to another "
                                     "person, then remove this one")
        self.merge_button.clicked.connect(lambda: self.merge_selected())
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.add_button = QPushButton("Add photos…")
        self.add_button.setToolTip("More samples of this person from photos")
        self.add_button.clicked.connect(lambda: self.add_photos())
        self.photos_button = QPushButton("Photos of…")
        self.photos_button.setToolTip("The scanned photos this person appears in (Unknown "
                                      "people page: Scan a photo folder)")
        self.photos_button.clicked.connect(lambda: self.show_photos_of())
        buttons = flow(self.add_button, self.photos_button, self.rename_button,
                       self.merge_button, self.delete_button)
        self.name_label.setWordWrap(True)
        about = QVBoxLayout()
        about.addWidget(self.name_label)
        about.addWidget(self.info_label)
        about.addStretch(1)
        about.addWidget(buttons)
        top = QHBoxLayout()
        top.addWidget(self.portrait)
        top.addLayout(about, 1)

        self.samples = QListWidget()
        self.samples.setAccessibleName("Samples of this person")
        self.samples.setViewMode(QListView.ViewMode.IconMode)
        self.samples.setResizeMode(QListView.ResizeMode.Adjust)
        self.samples.setMovement(QListView.Movement.Static)
        self.samples.setIconSize(QSize(SAMPLE_ICON, SAMPLE_ICON))
        self.samples.setSpacing(6)
        self.samples.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.samples.itemSelectionChanged.connect(self._update_buttons)
        self.remove_button = QPushButton("Remove selected samples")
        self.remove_button.clicked.connect(lambda: self.remove_selected_samples())
        self.unflag_button = QPushButton("Unflag")
        self.unflag_button.setToolTip("Use the selected flagged samples for recognition again")
        self.unflag_button.clicked.connect(lambda: self.unflag_selected_samples())
        unflag = QAction("Unflag (use for recognition again)", self.samples)
        unflag.triggered.connect(lambda: self.unflag_selected_samples())
        remove = QAction("Remove…", self.samples)
        remove.triggered.connect(lambda: self.remove_selected_samples())
        self.portrait_button = QPushButton("Use as portrait")
        self.portrait_button.setToolTip("Show this person with the selected sample")
        self.portrait_button.clicked.connect(lambda: self.use_as_portrait())
        self.samples.addActions([unflag, remove])
        self.samples.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        samples_title = QLabel("<b>Samples</b>, best first")
        samples_title.setWordWrap(True)
        samples_row = QVBoxLayout()
        samples_row.addWidget(samples_title)
        samples_row.addWidget(flow(self.portrait_button, self.unflag_button,
                                   self.remove_button))

        self.detail = QWidget()
        right_layout = QVBoxLayout(self.detail)
        right_layout.setContentsMargins(8, 0, 0, 0)
        right_layout.addLayout(top)
        right_layout.addSpacing(8)
        right_layout.addLayout(samples_row)
        right_layout.addWidget(self.samples, 1)
        self.empty_label = muted()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        right = QWidget()
        right_box = QVBoxLayout(right)
        right_box.setContentsMargins(0, 0, 0, 0)
        right_box.addWidget(self.detail, 1)
        right_box.addWidget(self.empty_label, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        state.gallery_changed.connect(self.refresh)
        state.ready_changed.connect(self.refresh)
        self._show_person(None)

    # -- loading ---------------------------------------------------------------------------
    def refresh(self) -> None:
        if not self.state.has_gallery:
            return
        self._generation += 1
        generation, gallery = self._generation, self.state.gallery
        self.state.run(lambda job: load_cards(gallery),
                       lambda cards: self._loaded(generation, cards),
                       what="Reading the gallery")

    def _loaded(self, generation: int, cards: list[PersonCard]) -> None:
        if generation != self._generation:
            return
        # Taken before the model is cleared: clearing moves the current index, and some
        # Qt versions report that move (it would overwrite selected_id).
        wanted = self.selected_id
        self.cards = {c.person.id: c for c in cards}
        self.model.clear()
        for card in cards:
            p = card.person
            icon = (QIcon(QPixmap.fromImage(card.image)) if not card.image.isNull()
                    else placeholder_icon())
            item = QStandardItem(icon, f"{p.name}\n{p.face_count} sample"
                                       f"{'s' if p.face_count != 1 else ''}")
            item.setData(p.id, PERSON_ID)
            item.setData(p.name, NAME)
            item.setToolTip(p.name)
            self.model.appendRow(item)
        self.count_label.setText(f"{len(cards)} people" if len(cards) != 1 else "1 person")
        self.loaded = True
        keep = wanted if wanted in self.cards else None
        if keep is None and cards:
            keep = cards[0].person.id
        self.select_person(keep)

    # -- selection --------------------------------------------------------------------------
    def select_person(self, person_id: int | None) -> None:
        if person_id is not None:
            for row in range(self.proxy.rowCount()):
                index = self.proxy.index(row, 0)
                if index.data(PERSON_ID) == person_id:
                    self.grid.setCurrentIndex(index)
                    self._show_person(person_id)
                    return
        self._show_person(None)

    def _current_changed(self, current, previous) -> None:
        self._show_person(current.data(PERSON_ID) if current.isValid() else None)

    def _show_person(self, person_id: int | None) -> None:
        card = self.cards.get(person_id) if person_id is not None else None
        self.selected_id = card.person.id if card else None
        self.detail.setVisible(card is not None)
        self.empty_label.setVisible(card is None)
        if card is None:
            self.empty_label.setText(
                "Choose a person on the left." if self.cards else
                "Nobody is enrolled yet. Add people on the Enroll page, or click a face on "
                "the Live page.")
        self.samples.clear()
        if card is None:
            self._update_buttons()
            return
        p = card.person
        self.name_label.setText(p.name)
        created = p.created.astimezone().strftime("%Y-%m-%d")
        flagged = f", {p.flagged_count} flagged" if p.flagged_count else ""
        self.info_label.setText(f"{p.face_count} sample{'s' if p.face_count != 1 else ''}"
                                f"{flagged} · enrolled {created}")
        if card.image.isNull():
            self.portrait.setPixmap(QPixmap())
        else:
            self.portrait.setPixmap(QPixmap.fromImage(card.image))
        gallery, pid = self.state.gallery, p.id
        self.state.run(lambda job: load_samples(gallery, pid),
                       lambda samples: self._samples_loaded(pid, samples),
                       what="Reading the samples")
        self._update_buttons()

    def _samples_loaded(self, person_id: int, samples) -> None:
        if person_id != self.selected_id:
            return
        self.samples.clear()
        for face_id, source, flagged, image in samples:
            item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), "flagged" if flagged else "")
            item.setData(FACE_ID, face_id)
            item.setData(FLAGGED, flagged)
            tip = source or "no source recorded"
            item.setToolTip(f"{FLAGGED_TIP}\n{tip}" if flagged else tip)
            self.samples.addItem(item)
        self._update_buttons()

    def _update_buttons(self) -> None:
        chosen = self.selected_id is not None
        for button in (self.add_button, self.photos_button, self.rename_button,
                       self.merge_button, self.delete_button):
            button.setEnabled(chosen)
        self.merge_button.setEnabled(chosen and len(self.cards) > 1)
        selected = self.samples.selectedItems()
        self.portrait_button.setEnabled(len(selected) == 1)
        self.remove_button.setEnabled(bool(selected))
        self.unflag_button.setEnabled(any(item.data(FLAGGED) for item in selected))

    # -- actions ----------------------------------------------------------------------------
    def _changed(self, note: str):
        def done(_result=None) -> None:
            self.state.message.emit(note)
            self.state.gallery_changed.emit()
        return done

    def add_photos(self, paths: list[str] | None = None) -> None:
        """More samples for the selected person; photos that do not look like them are
        pointed out before anything is saved."""
        card = self.cards.get(self.selected_id)
        if card is None or not self.state.is_ready:
            return
        name, pid = card.person.name, card.person.id
        if paths is None:
            paths = dialogs.open_files(self, f"More photos of {name}")
        if not paths:
            return
        enroller = self.state.enroller

        def check(job):
            samples, report = enroller.prepare_photos(paths, job.report, job.cancelled)
            return samples, report, enroller.review(pid, samples)

        def checked(result):
            samples, report, advice = result
            if advice and not dialogs.confirm(self, "Check these photos",
                                              "\n\n".join(advice.messages(name)),
                                              "Add anyway"):
                return
            self.state.run(lambda job: enroller.save_reporting(pid, samples, report),
                           lambda r: self._changed(
                               f"{name}: {r.added} sample(s) added"
                               + (f", {len(r.skipped)} skipped" if r.skipped else ""))(),
                           what=f"Adding photos of {name}")

        self.state.run(check, checked, what=f"Checking photos of {name}")

    def show_photos_of(self) -> None:
        from ..core.scan import photos_of

        card = self.cards.get(self.selected_id)
        if card is None:
            return
        gallery, person = self.state.gallery, card.person

        def show(paths: list[str]) -> None:
            text = (f"{person.name} appears in {len(paths)} scanned photo(s); double-click to "
                    "open one." if paths else
                    f"{person.name} was not found in any scanned photo yet (Unknown people "
                    "page: Scan a photo folder).")
            self.photos_dialog = dialogs.show_files(self, f"Photos of {person.name}", text,
                                                    paths)
            self._open_in_app(self.photos_dialog, paths)

        self.state.run(lambda job: photos_of(gallery, person.id), show,
                       what=f"Finding photos of {person.name}")

    def _open_in_app(self, dialog, paths: list[str]) -> None:
        """Double-click on a listed photo: the app's viewer (faces boxed and named, a
        missed one can be drawn), going through the list; the desktop's viewer stays
        in the list's right-click menu."""
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        files = dialog.files
        files.itemDoubleClicked.disconnect()
        files.itemDoubleClicked.connect(lambda item: self.open_photo(paths, files.row(item)))
        show = QAction("Show the photo", files)
        show.triggered.connect(lambda: files.currentRow() >= 0
                               and self.open_photo(paths, files.currentRow()))
        files.addAction(show)
        desktop = QAction("Open with the desktop's viewer", files)
        desktop.triggered.connect(lambda: files.currentItem() and QDesktopServices.openUrl(
            QUrl.fromLocalFile(files.currentItem().text())))
        files.addAction(desktop)
        files.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

    def open_photo(self, paths: list[str], index: int = 0) -> None:
        from .photo_viewer import open_photos

        self.viewer = open_photos(self, self.state, paths, index, getattr(self, "viewer", None))

    def use_as_portrait(self) -> None:
        selected = self.samples.selectedItems()
        card = self.cards.get(self.selected_id)
        if len(selected) != 1 or card is None:
            return
        gallery, pid, fid = self.state.gallery, card.person.id, selected[0].data(FACE_ID)
        self.state.run(lambda job: gallery.set_portrait(pid, fid),
                       self._changed(f"New portrait for {card.person.name}"),
                       what="Choosing the portrait")

    def rename_selected(self) -> None:
        card = self.cards.get(self.selected_id)
        if card is None:
            return
        old = card.person.name
        name = dialogs.ask_text(self, "Rename", f"New name for {old}:", old)
        if not name or name == old:
            return
        gallery, pid = self.state.gallery, card.person.id
        self.state.run(lambda job: gallery.rename_person(pid, name),
                       self._changed(f"{old} is now {name}"), what=f"Renaming {old}")

    def merge_selected(self) -> None:
        card = self.cards.get(self.selected_id)
        if card is None:
            return
        others = {c.person.name: c.person.id for c in self.cards.values()
                  if c.person.id != card.person.id}
        if not others:
            return
        state, pid = self.state, card.person.id

        def rank(job) -> list[int]:  # the most similar person first: the likely duplicate
            embedder = state.pipeline.embedder
            index = FaceIndex.from_gallery(state.gallery, embedder.model_id, embedder.dim)
            return [other for other, _ in index.similar_people(pid)]

        self.state.run(rank, lambda order: self._ask_merge(card, others, order),
                       what="Finding similar people")

    def _ask_merge(self, card, others: dict[str, int], order: list[int]) -> None:
        if self.cards.get(card.person.id) is not card:
            return  # the gallery changed meanwhile
        rank = {person: i for i, person in enumerate(order)}
        names = sorted(others, key=lambda n: (rank.get(others[n], len(rank)), n.casefold()))
        name = dialogs.choose(self, "Merge", f"{card.person.name} is the same person as "
                              "(most similar first):", names)
        if not name:
            return
        absorb = card.person
        if not dialogs.confirm(self, "Merge people",
                               f"Move {absorb.name}'s {absorb.face_count} sample(s) and events "
                               f"to {name} and remove {absorb.name}?", "Merge"):
            return
        gallery, keep_id = self.state.gallery, others[name]
        self.selected_id = keep_id
        self.state.run(lambda job: gallery.merge_people(keep_id, absorb.id),
                       self._changed(f"{absorb.name} merged into {name}"),
                       what=f"Merging {absorb.name} into {name}")

    def delete_selected(self) -> None:
        card = self.cards.get(self.selected_id)
        if card is None:
            return
        p = card.person
        ok, with_events = dialogs.confirm_with_option(
            self, "Delete person", f"Delete {p.name} and their {p.face_count} sample(s)? "
            "This cannot be undone.", "Delete",
            f"Also delete the events that show {p.name} (face pictures are biometric data)")
        if not ok:
            return
        gallery, state = self.state.gallery, self.state
        self.selected_id = None
        changed = self._changed(f"{p.name} deleted" + (" with their events" if with_events
                                                        else "; their events stay"))

        def done(_gone) -> None:
            changed()
            state.events_changed.emit()

        self.state.run(lambda job: gallery.delete_person(p.id, events=with_events), done,
                       what=f"Deleting {p.name}")

    def unflag_selected_samples(self) -> None:
        face_ids = [item.data(FACE_ID) for item in self.samples.selectedItems()
                    if item.data(FLAGGED)]
        if not face_ids:
            return
        gallery = self.state.gallery

        def work(job):
            for face_id in face_ids:
                gallery.flag_face(face_id, False)

        self.state.run(work, self._changed(f"{len(face_ids)} sample(s) used again"),
                       what="Unflagging samples")

    def remove_selected_samples(self) -> None:
        face_ids = [item.data(FACE_ID) for item in self.samples.selectedItems()]
        card = self.cards.get(self.selected_id)
        if not face_ids or card is None:
            return
        if not dialogs.confirm(self, "Remove samples",
                               f"Remove {len(face_ids)} sample(s) from {card.person.name}?",
                               "Remove"):
            return
        gallery = self.state.gallery

        def work(job):
            for face_id in face_ids:
                gallery.remove_face(face_id)

        self.state.run(work, self._changed(f"{len(face_ids)} sample(s) removed"),
                       what="Removing samples")
