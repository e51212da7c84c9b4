"""Photo archives: `scan` finds every face in every photo of a folder and remembers
which file it came from, so "photos of X" can list them.

A face of someone enrolled is recorded as a sighting of that person; any other
usable face is kept as an unknown face (unknowns.py) with a sighting of it, so
naming its cluster later turns those sightings into the person's. A file seen
before with the same size and modification time is not decoded again; a changed
file is scanned afresh. Scanning writes no events: an archive is not a door.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .gallery import GalleryStore, format_time, utc_now
from .filenames import display_name
from .imageio import ImageError, read_image
from .models import InferenceError
from .recognize import KEPT_AS_UNKNOWN, Recognizer
from .sources import ImageFolderSource

Progress = Callable[[int, int, str], None]


@dataclass
class ScanReport:
    files: int = 0  # photos looked at in this run
    unchanged: int = 0  # skipped: scanned before and not changed since
    faces: int = 0
    known: int = 0  # faces of enrolled people
    unknown: int = 0  # faces kept as unknown faces
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    cancelled: bool = False


def _file_key(path: Path) -> tuple[int, float]:
    st = os.stat(path)
    return st.st_size, st.st_mtime


def stored_path(path: str | os.PathLike) -> str:
    """A file as the gallery records it: its folder absolute and resolved, so one photo
    scanned by a relative path and by an absolute one is one file (a link to a photo
    stays the link the person put there); as text SQLite can hold (a name that is not
    UTF-8 is stored escaped, see filenames.display_name)."""
    path = Path(path)
    return display_name(path.parent.resolve() / path.name)


class PhotoScanner:
    def __init__(self, recognizer: Recognizer):
        if recognizer.unknowns is None:
            raise ValueError("scanning keeps unknown faces: the gallery's retention period "
                             "is 0 days, or it is read-only")
        self.recognizer = recognizer
        self.gallery: GalleryStore = recognizer.gallery

    def _seen(self, path: Path) -> bool:
        size, mtime = _file_key(path)
        path = stored_path(path)  # the key below
        with self.gallery.reading() as db:
            row = db.execute("SELECT size, mtime FROM scanned_files WHERE path = ?",
                             [str(path)]).fetchone()
        return row is not None and row[0] == size and abs(row[1] - mtime) < 1e-6

    def scan(self, root: str | os.PathLike, progress: Progress | None = None,
             cancelled: Callable[[], bool] | None = None, rescan: bool = False) -> ScanReport:
        """Raises SourceError when the folder cannot be listed; a photo that cannot be
        read is skipped with the reason and the scan goes on."""
        report = ScanReport()
        images, others = ImageFolderSource(root, recursive=True).list_images()
        report.skipped += [(display_name(p), why) for p, why in others]
        for done, path in enumerate(images):
            if cancelled and cancelled():
                report.cancelled = True
                break
            if progress:
                progress(done, len(images), display_name(path))
            try:
                if not rescan and self._seen(path):
                    report.unchanged += 1
                    continue
                self.scan_file(path, report)
            except (ImageError, InferenceError, MemoryError, OSError) as exc:
                report.skipped.append((display_name(path), str(exc) or "out of memory"))
        if progress and not report.cancelled:
            progress(len(images), len(images), "")
        return report

    def scan_file(self, path: Path, report: ScanReport) -> None:
        size, mtime = _file_key(path)
        image, scale = read_image(path)
        path = stored_path(path)  # from here on: the file as the gallery records it
        recognizer = self.recognizer
        result = recognizer.process(image, source=str(path), track=False, path=str(path))
        known, unknown = [], []
        for face in result.faces:
            box = [round(float(v) * scale, 1) for v in face.face.box]  # the file's pixels
            decision = face.decision
            if decision.known:
                known.append((decision.person_id, box, decision.score))
            elif decision.reason in KEPT_AS_UNKNOWN and face.embedding is not None:
                kept = recognizer.unknown_face(image, face.face, face.quality, face.embedding,
                                               str(path), str(path))
                kept.box = tuple(box)
                unknown.append(kept)
        now = format_time(utc_now())
        with self.gallery.writing(bump=False) as db:
            db.execute("DELETE FROM sightings WHERE path = ?", [str(path)])
            db.executemany(
                "INSERT INTO sightings(path, person_id, box, score, scanned) VALUES (?, ?, ?, ?, ?)",
                [(str(path), pid, json.dumps(box), score, now) for pid, box, score in known])
        if unknown:
            recognizer.unknowns.add(unknown, sightings=True)
        with self.gallery.writing(bump=False) as db:
            db.execute("INSERT INTO scanned_files(path, size, mtime, faces, scanned) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                       "size = excluded.size, mtime = excluded.mtime, faces = excluded.faces, "
                       "scanned = excluded.scanned",
                       [str(path), size, mtime, len(result.faces), now])
        report.files += 1
        report.faces += len(result.faces)
        report.known += len(known)
        report.unknown += len(unknown)


def photos_of(gallery: GalleryStore, person_id: int) -> list[str]:
    """The files `scan` found this person in (named unknown clusters included)."""
    with gallery.reading() as db:
        return [r[0] for r in db.execute(
            "SELECT DISTINCT path FROM sightings WHERE person_id = ? ORDER BY path",
            [int(person_id)])]
