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
from .widgets import LazyPage, heading, muted

CLUSTER_ID = Qt.ItemDataRole.UserRole + 1
FACE_ID = Qt.ItemDataRole.UserRole + 2
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


def load_faces(unknowns: UnknownFaces, cluster_id: int) -> list[tuple[int, str, QImage]]:
    return [(f.id, f"{f.source}\n{f.seen:%Y-%m-%d %H:%M}"
             + ("" if f.enrollable else "\nnot good enough to enroll"),
             thumbnail(unknowns.crop(f.id), FACE_ICON))
            for f in unknowns.faces(cluster_id)]


def describe(cluster: Cluster) -> str:
    seen = f"{cluster.last_seen:%Y-%m-%d %H:%M}"
    return f"{cluster.size} face{'s' if cluster.size != 1 else ''} · last seen {seen}"


class UnknownsPage(LazyPage):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.cards: dict[int, ClusterCard] = {}
        self.selected_id: int | None = None
        self._generation = 0
        self.last_scan = None

        self.clusters = QListWidget()
        self.clusters.setIconSize(QSize(LIST_ICON, LIST_ICON))
        self.clusters.setSpacing(2)
        self.clusters.currentItemChanged.connect(self._current_changed)
        self.count_label = muted()
        self.scan_button = QPushButton("Scan a photo folder…")
        self.scan_button.setToolTip("Find every face in a folder of photos (and its "
                                    "subfolders): enrolled people are remembered in the "
                                    "photos they are in, the others are grouped here")
        self.scan_button.clicked.connect(lambda: self.scan_folder())
        self.scan_progress = muted()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("<b>Unknown people</b>, most often seen first"))
        left_layout.addWidget(self.clusters, 1)
        left_layout.addWidget(self.count_label)
        left_layout.addWidget(self.scan_button)
        left_layout.addWidget(self.scan_progress)

        self.title = heading("")
        self.where = muted()
        self.name_button = QPushButton("Name…")
        self.name_button.setToolTip("Enroll this group's good faces as a new person, or add "
                                    "them to someone already enrolled")
        self.name_button.clicked.connect(lambda: self.name_selected())
        self.ignore_button = QPushButton("Ignore")
        self.ignore_button.setToolTip("Not a visitor (a poster, a TV): stop listing it; faces "
                                      "like it keep joining it")
        self.ignore_button.clicked.connect(lambda: self.ignore_selected())
        self.split_button = QPushButton("Split off selected")
        self.split_button.setToolTip("The selected faces are someone else: make them a group "
                                     "of their own")
        self.split_button.clicked.connect(lambda: self.split_selected())
        self.remove_button = QPushButton("Remove selected")
        self.remove_button.clicked.connect(lambda: self.remove_selected())
        buttons = QHBoxLayout()
        for button in (self.name_button, self.ignore_button, self.split_button,
                       self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.faces = QListWidget()
        self.faces.setViewMode(QListView.ViewMode.IconMode)
        self.faces.setResizeMode(QListView.ResizeMode.Adjust)
        self.faces.setMovement(QListView.Movement.Static)
        self.faces.setIconSize(QSize(FACE_ICON, FACE_ICON))
        self.faces.setSpacing(6)
        self.faces.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.faces.itemSelectionChanged.connect(self._update_buttons)

        self.detail = QWidget()
        right_layout = QVBoxLayout(self.detail)
        right_layout.setContentsMargins(8, 0, 0, 0)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.where)
        right_layout.addLayout(buttons)
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
        for card in cards:
            icon = QIcon(QPixmap.fromImage(card.image)) if not card.image.isNull() else QIcon()
            where = card.cluster.sources[0] if card.cluster.sources else ""
            item = QListWidgetItem(icon, f"{describe(card.cluster)}\n{where}")
            item.setData(CLUSTER_ID, card.cluster.id)
            item.setToolTip("\n".join(card.cluster.sources[:10]))
            self.clusters.addItem(item)
        self.clusters.blockSignals(False)
        faces = sum(c.cluster.size for c in cards)
        self.count_label.setText(f"{faces} unknown face(s) in {len(cards)} group(s)")
        self.select_cluster(wanted if wanted in self.cards else
                            (cards[0].cluster.id if cards else None))

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
            self.empty_label.setText(
                "Choose a group on the left." if self.cards else
                "No unknown faces. Faces nobody is recognised as, on the Live page, in "
                "identified photos or in a scanned archive, are grouped here by person.")
            self._update_buttons()
            return
        cluster = card.cluster
        self.title.setText(f"Unknown #{cluster.id}: {describe(cluster)}")
        places = cluster.sources[:5]
        more = len(cluster.sources) - len(places)
        self.where.setText("Seen in: " + "; ".join(places) + (f" and {more} more" if more
                                                              else ""))
        unknowns = self.state.unknowns()
        self.state.run(lambda job: load_faces(unknowns, cluster.id),
                       lambda faces: self._faces_loaded(cluster.id, faces),
                       what="Reading the faces")
        self._update_buttons()

    def _faces_loaded(self, cluster_id: int, faces) -> None:
        if cluster_id != self.selected_id:
            return
        self.faces.clear()
        for face_id, text, image in faces:
            item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), "")
            item.setToolTip(text)
            item.setData(FACE_ID, face_id)
            self.faces.addItem(item)

    def _update_buttons(self) -> None:
        chosen = self.selected_id is not None
        selected = bool(self.faces.selectedItems())
        for button in (self.name_button, self.ignore_button):
            button.setEnabled(chosen)
        self.split_button.setEnabled(chosen and selected
                                     and len(self.faces.selectedItems()) < self.faces.count())
        self.remove_button.setEnabled(chosen and selected)

    def _selected_faces(self) -> list[int]:
        return [item.data(FACE_ID) for item in self.faces.selectedItems()]

    # -- actions ----------------------------------------------------------------------------
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
        cluster_id, unknowns = self.selected_id, self.state.unknowns()
        if cluster_id is None:
            return

        def done(_):
            self.selected_id = None
            self.refresh()

        self.state.run(lambda job: unknowns.ignore_cluster(cluster_id), done,
                       what="Ignoring the group")

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
        self.refresh()
