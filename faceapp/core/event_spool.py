"""Events a station could not send to its gallery server, kept in a small local
SQLite file until the server is back.

Each event carries the id (uid) and time it got when it was seen. It leaves this
file only after the server has committed it; the server stores a uid once (a unique
index), so an event sent again after a lost answer is not stored twice. The file is
owner-only: an event may hold a face thumbnail.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .gallery_events import EventDetails
from .gallery_files import create_private_file
from .paths import default_data_dir, ensure_private_dir


@dataclass
class QueuedEvent:
    uid: str
    time: str  # the gallery's time format, when it was seen
    person_id: int | None
    score: float | None
    source: str
    thumbnail: bytes | None
    details: EventDetails


def spool_path_for(location: str) -> Path:
    """One spool per gallery server a station uses, in the app's data folder."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return default_data_dir() / "queued-events" / f"{digest}.db"


class EventSpool:
    def __init__(self, path: Path):
        self.path = Path(path)
        ensure_private_dir(self.path.parent)
        if not self.path.exists():
            try:
                create_private_file(self.path)
            except FileExistsError:
                pass
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=10)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA secure_delete = ON")
        self._conn.execute("CREATE TABLE IF NOT EXISTS queued (seq INTEGER PRIMARY KEY, "
                           "uid TEXT NOT NULL UNIQUE, time TEXT NOT NULL, person_id INTEGER, "
                           "score REAL, source TEXT NOT NULL, thumbnail BLOB, "
                           "details TEXT NOT NULL)")

    def put(self, events: list[QueuedEvent]) -> None:
        rows = [(e.uid, e.time, e.person_id, e.score, e.source, e.thumbnail,
                 json.dumps({"reason": e.details.reason, "nearest_id": e.details.nearest_id,
                             "runner_up_id": e.details.runner_up_id,
                             "runner_up_score": e.details.runner_up_score,
                             "box": list(e.details.box) if e.details.box else None}))
                for e in events]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT INTO queued(uid, time, person_id, score, source, "
                                       "thumbnail, details) VALUES (?, ?, ?, ?, ?, ?, ?) "
                                       "ON CONFLICT(uid) DO NOTHING", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def oldest(self, limit: int = 200) -> list[QueuedEvent]:
        with self._lock:
            rows = self._conn.execute("SELECT uid, time, person_id, score, source, thumbnail, "
                                      "details FROM queued ORDER BY seq LIMIT ?",
                                      [limit]).fetchall()
        out = []
        for uid, when, pid, score, source, thumbnail, details in rows:
            d = json.loads(details)
            out.append(QueuedEvent(uid, when, pid, score, source, thumbnail, EventDetails(
                reason=d["reason"], nearest_id=d["nearest_id"], runner_up_id=d["runner_up_id"],
                runner_up_score=d["runner_up_score"],
                box=tuple(d["box"]) if d["box"] else None)))
        return out

    def remove(self, uid: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM queued WHERE uid = ?", [uid])

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM queued").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
