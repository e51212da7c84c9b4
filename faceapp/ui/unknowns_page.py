"""The Unknown people page: faces nobody was recognised as, grouped by person, biggest
group first, with where they were seen. Name a group (a new person or someone
already enrolled) and its good faces become their samples in one step; split off
faces that do not belong, remove faces, or ignore a group (a poster, a TV)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QListView, QListWidget,
                               QListWidgetItem, QPushButton, QSplitter, QVBoxLayout, QWidget)

from ..core.unknowns import Cluster, UnknownFaces
from . import dialogs
from .images import thumbnail
from .state import AppState
from .widgets import LazyPage, flow, heading, muted, named
from .words import short_source, when_text

CLUSTER_ID = Qt.ItemDataRole.UserRole + 1
FACE_ID = Qt.ItemDataRole.UserRole + 2
PHOTO = Qt.ItemDataRole.UserRole + 3  # the photo file a face was seen in (None: a video...)
SEEN_ONCE = -1  # the CLUSTER_ID of the row that folds the one-face groups
LIST_ICON = 72
FACE_ICON = 112


@dataclass
class ClusterCard:
    cluster: Cluster
    image: QImage  # its best face


def load_cards(unknowns: UnknownFaces) -> list[ClusterCard]:
    """Every listed cluster with its best face (runs in a job)."""
    cards = []
    for cluster in unknowns.list():
        image = QImage()
        if cluster.best_face_ids:
            image = thumbnail(unknowns.crop(cluster.best_face_ids[0]), LIST_ICON)
        cards.append(ClusterCard(cluster, image))
    return cards


def load_faces(unknowns: UnknownFaces, cluster_id: int
               ) -> list[tuple[int, str, QImage, str | None]]:
    """(id, where and when, picture, the photo file it came from or None)."""
    return [(f.id, f"{f.source}\n{when_text(f.seen)}"
             + ("" if f.enrollable else "\nnot good enough to enroll"),
             thumbnail(unknowns.crop(f.id), FACE_ICON), photo_file(f.path))
            for f in unknowns.faces(cluster_id)]


def photo_file(path: str | None) -> str | None:
    """The path when it is a photo (a video file's faces have no photo to show)."""
    from pathlib import Path

    from ..core.imageio import IMAGE_SUFFIXES

    return path if path and Path(path).suffix.lower() in IMAGE_SUFFIXES else None


def describe(cluster: Cluster) -> str:
    if cluster.size == 1:
        return f"Seen once, {when_text(cluster.last_seen)}"
    return f"Seen {cluster.size} times · last {when_text(cluster.last_seen)}"


def places(cluster: Cluster, most: int = 3) -> str:
    """Where a group was seen, short: "door.mp4 at 1:02, b.jpg and 4 more"."""
    short = list(dict.fromkeys(short_source(s) for s in cluster.sources if s))
    text = ", ".join(short[:most])
    return text + (f" and {len(short) - most} more" if len(short) > most else "")


def counts_text(cards: list[ClusterCard]) -> str:
    """What the list holds, honestly: faces, people seen more than once, faces seen once."""
    faces = sum(c.cluster.size for c in cards)
    groups = [c for c in cards if c.cluster.size > 1]
    once = len(cards) - len(groups)
    if not cards:
        return "No unknown faces kept"
    return (f"{faces} unknown face{'s' if faces != 1 else ''}: "
            f"{len(groups)} {'person' if len(groups) == 1 else 'people'} seen more than "
            f"once, {once} face{'s' if once != 1 else ''} seen only once (possibly the same "
            "people, not sure enough to group)")


class UnknownsPage(LazyPage):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.cards: dict[int, ClusterCard] = {}
        self.selected_id: int | None = None
        self._generation = 0
        self.last_scan = None
        self.show_once = False  # the one-face groups are folded under "Seen once"
        self._reveal: int | None = None  # a group to show even if folded
        self.ignored: list[int] = []  # the groups ignored last (Undo brings them back)

        self.clusters = QListWidget()
        self.clusters.setAccessibleName("Unknown people")
        self.clusters.setIconSize(QSize(LIST_ICON, LIST_ICON))
        self.clusters.setSpacing(2)
        self.clusters.currentItemChanged.connect(self._current_changed)
        self.clusters.itemClicked.connect(self._item_clicked)
        self.clusters.itemActivated.connect(self._item_clicked)
        self.clusters.setWordWrap(True)
        self.clusters.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.clusters.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.count_label = muted()
        self.scan_button = QPushButton("Scan a photo folder…")
        self.scan_button.setToolTip("Find every face in a folder of photos (and its "
                                    "subfolders): enrolled people are remembered in the "
                                    "photos they are in, the others are grouped here")
        self.scan_button.clicked.connect(lambda: self.scan_folder())
        self.scan_progress = muted()
        # Ignore can be taken back
        self.undo_label = QLabel("")
        self.undo_label.setWordWrap(True)
        self.undo_button = named(QPushButton("Undo"), "Undo: list the ignored group again")
        self.undo_button.clicked.connect(lambda: self.undo_ignore())
        self.undo_bar = QWidget()
        undo_layout = QHBoxLayout(self.undo_bar)
        undo_layout.setContentsMargins(0, 0, 0, 0)
        undo_layout.addWidget(self.undo_label, 1)
        undo_layout.addWidget(self.undo_button)
        self.undo_bar.hide()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("<b>Unknown people</b>, most often seen first")
        title.setWordWrap(True)
        left_layout.addWidget(title)
        left_layout.addWidget(self.clusters, 1)
        left_layout.addWidget(self.count_label)
        left_layout.addWidget(self.undo_bar)
        left_layout.addWidget(self.scan_button)
        left_layout.addWidget(self.scan_progress)

        self.title = heading("")
        self.title.setWordWrap(True)
        self.where = muted()
        self.name_button = QPushButton("Name…")
        self.name_button.setToolTip("Enroll this group's good faces as a new person, or add "
                                    "them to someone already enrolled")
        self.name_button.clicked.connect(lambda: self.name_selected())
        self.ignore_button = QPushButton("Ignore")
        self.ignore_button.setToolTip("Not a visitor (a poster, a TV): stop listing it; faces "
                                      "like it keep joining it. Can be undone.")
        self.ignore_button.clicked.connect(lambda: self.ignore_selected())
        self.split_button = QPushButton("Split off selected")
        self.split_button.setToolTip("The selected faces are someone else: make them a group "
                                     "of their own")
        self.split_button.clicked.connect(lambda: self.split_selected())
        self.remove_button = QPushButton("Remove selected")
        self.remove_button.clicked.connect(lambda: self.remove_selected())
        self.photo_button = QPushButton("Show photo")
        self.photo_button.setToolTip("The photo the selected face was seen in (double-click "
                                     "a face): every face boxed and named")
        self.photo_button.clicked.connect(lambda: self.show_photo())
        buttons = flow(self.name_button, self.ignore_button, self.split_button,
                       self.remove_button, self.photo_button)
        self.faces = QListWidget()
        self.faces.setAccessibleName("Faces of this unknown person")
        self.faces.setViewMode(QListView.ViewMode.IconMode)
        self.faces.setResizeMode(QListView.ResizeMode.Adjust)
        self.faces.setMovement(QListView.Movement.Static)
        self.faces.setIconSize(QSize(FACE_ICON, FACE_ICON))
        self.faces.setSpacing(6)
        self.faces.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.faces.itemSelectionChanged.connect(self._update_buttons)
        self.faces.itemDoubleClicked.connect(lambda item: self.show_photo(item))

        self.detail = QWidget()
        right_layout = QVBoxLayout(self.detail)
        right_layout.setContentsMargins(8, 0, 0, 0)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.where)
        right_layout.addWidget(buttons)
        right_layout.addWidget(self.faces, 1)
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
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        state.gallery_changed.connect(self.changed)
        state.events_changed.connect(self.changed)  # new unknown faces come with events
        state.ready_changed.connect(self.changed)
        self._show(None)

    # -- loading ---------------------------------------------------------------------------
    def refresh(self) -> None:
        unknowns = self.state.unknowns()
        if unknowns is None:
            return
        self._stale = False
        self._generation += 1
        generation = self._generation
        self.state.run(lambda job: load_cards(unknowns),
                       lambda cards: self._loaded(generation, cards),
                       what="Reading the unknown faces")

    def _loaded(self, generation: int, cards: list[ClusterCard]) -> None:
        if generation != self._generation:
            return
        wanted = self.selected_id
        self.cards = {c.cluster.id: c for c in cards}
        self.clusters.blockSignals(True)
        self.clusters.clear()
        once = [c for c in cards if c.cluster.size == 1]
        if self._reveal is not None and self._reveal in {c.cluster.id for c in once}:
            self.show_once = True  # a face just split off (or listed again) is shown
        self._reveal = None
        for card in [c for c in cards if c.cluster.size > 1]:
            self.clusters.addItem(self._item(card))
        if once:
            fold = QListWidgetItem(self._fold_text(len(once)))
            fold.setData(CLUSTER_ID, SEEN_ONCE)
            fold.setToolTip("Faces seen only once, each on its own: click to show or hide "
                            "them")
            font = fold.font()
            font.setBold(True)
            fold.setFont(font)
            self.clusters.addItem(fold)
            # folded only under groups seen more than once: alone they are the list
            shown = self.show_once or len(once) == len(cards)
            for card in once:
                item = self._item(card)
                self.clusters.addItem(item)
                item.setHidden(not shown)  # (only once it is in the list)
        self.clusters.blockSignals(False)
        self.count_label.setText(counts_text(cards))
        listed = self.listed_ids()
        self.select_cluster(wanted if wanted in listed else (listed[0] if listed else None))

    @staticmethod
    def _fold_text(count: int) -> str:
        return f"Seen once: {count} face{'s' if count != 1 else ''}"

    def _item(self, card: ClusterCard) -> QListWidgetItem:
        icon = QIcon(QPixmap.fromImage(card.image)) if not card.image.isNull() else QIcon()
        item = QListWidgetItem(icon, f"{describe(card.cluster)}\n{places(card.cluster, 1)}")
        item.setData(CLUSTER_ID, card.cluster.id)
        item.setToolTip("\n".join(card.cluster.sources[:10]))
        return item

    def _item_clicked(self, item) -> None:
        if item is not None and item.data(CLUSTER_ID) == SEEN_ONCE:
            row = self.clusters.row(item) + 1  # the first face it folds
            folded = row < self.clusters.count() and self.clusters.item(row).isHidden()
            self.set_show_once(folded)

    def set_show_once(self, show: bool) -> None:
        """Unfold (or fold) the faces seen only once."""
        self.show_once = show
        for row in range(self.clusters.count()):
            item = self.clusters.item(row)
            card = self.cards.get(item.data(CLUSTER_ID))
            if card is not None and card.cluster.size == 1:
                item.setHidden(not show)

    def listed_ids(self) -> list[int]:
        """The groups a person sees in the list now (folded ones left out)."""
        return [self.clusters.item(r).data(CLUSTER_ID) for r in range(self.clusters.count())
                if not self.clusters.item(r).isHidden()
                and self.clusters.item(r).data(CLUSTER_ID) != SEEN_ONCE]

    def select_cluster(self, cluster_id: int | None) -> None:
        for row in range(self.clusters.count()):
            item = self.clusters.item(row)
            if item.data(CLUSTER_ID) == cluster_id:
                self.clusters.setCurrentItem(item)
                self._show(cluster_id)
                return
        self._show(None)

    def _current_changed(self, current, _previous) -> None:
        self._show(current.data(CLUSTER_ID) if current is not None else None)

    def _show(self, cluster_id: int | None) -> None:
        card = self.cards.get(cluster_id) if cluster_id is not None else None
        self.selected_id = card.cluster.id if card else None
        self.detail.setVisible(card is not None)
        self.empty_label.setVisible(card is None)
        self.faces.clear()
        if card is None:
            once = sum(1 for c in self.cards.values() if c.cluster.size == 1)
            self.empty_label.setText(
                (f"{once} face{'s' if once != 1 else ''} seen only once: click \"Seen once\" "
                 "on the left to show them." if once and not self.show_once else
                 "Choose a group on the left.") if self.cards else
                "No unknown faces. Faces nobody is recognised as, on the Live page, in "
                "identified photos or in a scanned archive, are grouped here by person.")
            self._update_buttons()
            return
        cluster = card.cluster
        self.title.setText(f"Unknown person #{cluster.id}: {describe(cluster).lower()}"
                           if cluster.size > 1 else f"Unknown face #{cluster.id}: "
                           f"{describe(cluster).lower()}")
        self.where.setText("Seen in: " + places(cluster))
        self.where.setToolTip("\n".join(cluster.sources[:20]))
        unknowns = self.state.unknowns()
        self.state.run(lambda job: load_faces(unknowns, cluster.id),
                       lambda faces: self._faces_loaded(cluster.id, faces),
                       what="Reading the faces")
        self._update_buttons()

    def _faces_loaded(self, cluster_id: int, faces) -> None:
        if cluster_id != self.selected_id:
            return
        self.faces.clear()
        for face_id, text, image, photo in faces:
            item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), "")
            item.setToolTip(text)
            item.setData(FACE_ID, face_id)
            item.setData(PHOTO, photo)
            self.faces.addItem(item)

    def _update_buttons(self) -> None:
        chosen = self.selected_id is not None
        selected = bool(self.faces.selectedItems())
        for button in (self.name_button, self.ignore_button):
            button.setEnabled(chosen)
        self.split_button.setEnabled(chosen and selected
                                     and len(self.faces.selectedItems()) < self.faces.count())
        self.remove_button.setEnabled(chosen and selected)
        items = self.faces.selectedItems()
        self.photo_button.setEnabled(len(items) == 1 and bool(items[0].data(PHOTO)))

    def _selected_faces(self) -> list[int]:
        return [item.data(FACE_ID) for item in self.faces.selectedItems()]

    # -- actions ----------------------------------------------------------------------------
    def show_photo(self, item: QListWidgetItem | None = None) -> None:
        """The photo a face was seen in, in the app's viewer; Previous / Next go through
        the photos of the group's other faces."""
        from .photo_viewer import open_photos

        if item is None:
            items = self.faces.selectedItems()
            item = items[0] if len(items) == 1 else None
        if item is None or not item.data(PHOTO):
            return
        photos = list(dict.fromkeys(
            self.faces.item(r).data(PHOTO) for r in range(self.faces.count())
            if self.faces.item(r).data(PHOTO)))
        self.viewer = open_photos(self, self.state, photos, photos.index(item.data(PHOTO)),
                                  getattr(self, "viewer", None))

    def name_selected(self, name: str | None = None) -> None:
        """Enroll the selected group as `name` (asked when not given)."""
        cluster_id, unknowns = self.selected_id, self.state.unknowns()
        if cluster_id is None or unknowns is None:
            return
        gallery = self.state.gallery
        if name is None:
            names = [p.name for p in gallery.people()]
            name = dialogs.choose(self, "Name this person",
                                  "Who is this? Type a new name or choose someone enrolled:",
                                  [""] + names, editable=True)
            if not name:
                return
        existing = gallery.find_person(name)
        embedder = self.state.pipeline.embedder

        def work(job):
            from ..core.enroll import embed_samples

            person = existing.id if existing else name
            return unknowns.name_cluster(cluster_id, person,
                                         embed=lambda samples: embed_samples(embedder, samples))

        def done(result):
            person_id, face_ids, left_out = result
            person = gallery.person(person_id).name
            note = f" ({left_out} left out: not good enough)" if left_out else ""
            self.state.message.emit(f"{person}: {len(face_ids)} sample(s) added{note}")
            self.selected_id = None
            self.state.gallery_changed.emit()

        self.state.run(work, done, what=f"Naming the group {name}")

    def ignore_selected(self) -> None:
        """Stop listing the group (a poster, a TV); the message under the list can undo it."""
        cluster_id, unknowns = self.selected_id, self.state.unknowns()
        if cluster_id is None:
            return
        size = self.cards[cluster_id].cluster.size if cluster_id in self.cards else 0

        def done(_):
            self.selected_id = None
            self.ignored = [cluster_id]
            what = f"{size} face{'s' if size != 1 else ''}"
            self.undo_label.setText(f"Ignored a group of {what}: it is no longer listed, and "
                                    "faces like it join it unseen.")
            self.undo_bar.show()
            self.state.message.emit(f"Ignored a group of {what} (Undo is under the list)")
            self.refresh()

        self.state.run(lambda job: unknowns.ignore_cluster(cluster_id), done,
                       what="Ignoring the group")

    def undo_ignore(self) -> None:
        ids, unknowns = list(self.ignored), self.state.unknowns()
        if not ids or unknowns is None:
            return

        def work(job):
            for cluster_id in ids:
                unknowns.ignore_cluster(cluster_id, False)

        def done(_):
            self.ignored = []
            self.undo_bar.hide()
            self.state.message.emit("The group is listed again")
            self._after(ids[0])

        self.state.run(work, done, what="Listing the group again")

    def split_selected(self) -> None:
        faces, unknowns = self._selected_faces(), self.state.unknowns()
        if not faces:
            return
        self.state.run(lambda job: unknowns.split(faces), lambda new: self._after(new),
                       what="Splitting the group")

    def remove_selected(self, ask: bool = True) -> None:
        faces, unknowns = self._selected_faces(), self.state.unknowns()
        if not faces:
            return
        if ask and not dialogs.confirm(self, "Remove faces",
                                       f"Forget {len(faces)} unknown face(s)?", "Remove"):
            return
        self.state.run(lambda job: unknowns.remove_faces(faces),
                       lambda _n: self._after(self.selected_id), what="Removing faces")

    def scan_folder(self, root: str | None = None) -> None:
        if not self.state.is_ready or self.state.gallery.read_only:
            return
        if root is None:
            root = dialogs.open_folder(self, "Photo folder to scan")
        if not root:
            return
        from ..core.recognize import Recognizer
        from ..core.scan import PhotoScanner

        state = self.state
        pipeline, gallery, point = state.pipeline, state.gallery, state.options.point

        def work(job):
            recognizer = Recognizer(pipeline, gallery, point, log_events=False)
            return PhotoScanner(recognizer).scan(root, job.report, job.cancelled)

        def done(report) -> None:
            self.scan_button.setEnabled(True)
            self.scan_progress.setText(
                f"{report.files} photo(s) scanned ({report.unchanged} unchanged), "
                f"{report.known} face(s) of enrolled people, {report.unknown} unknown"
                + (f"; {len(report.skipped)} skipped" if report.skipped else ""))
            self.last_scan = report
            self.refresh()

        def failed(text: str) -> None:
            self.scan_button.setEnabled(True)
            self.scan_progress.setText("")
            state.error.emit(f"The scan stopped: {text}")

        self.scan_button.setEnabled(False)
        self.scan_progress.setText("Scanning…")
        job = state.run(work, done, what="Scanning", on_error=failed)
        job.progress.connect(lambda done_, total, item: self.scan_progress.setText(
            f"Scanning {done_} / {total}…"))

    def _after(self, select: int | None) -> None:
        self.selected_id = select
        self._reveal = select
        self.refresh()
