"""Events a station could not send to its gallery server, kept in a small local
SQLite file until the server is back.

Each event carries the id (uid) and time it got when it was seen. It leaves this
file only after the server has committed it; the server stores a uid once (a unique
index), so an event sent again after a lost answer is not stored twice. The file is
owner-only: an event may hold a face thumbnail.

A spool is SQLite only and private to one station, so it is kept with sqlite-utils
(the gallery's own schema, shared with PostgreSQL, is SQLAlchemy's); `sqlite-utils
rows SPOOL.db queued` shows what waits.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import sqlite_utils

from ..paths import default_data_dir, ensure_private_dir
from .events import EventDetails, QueuedEvent
from .files import create_private_file


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
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=10)
        self._db = sqlite_utils.Database(conn)
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "secure_delete = ON"):
            conn.execute(f"PRAGMA {pragma}")
        self._queued = self._db.table("queued")
        self._queued.create({"seq": int, "uid": str, "time": str, "person_id": int,
                             "score": float, "source": str, "thumbnail": bytes,
                             "details": str}, pk="seq",
                            not_null={"uid", "time", "source", "details"},
                            if_not_exists=True)
        self._queued.create_index(["uid"], unique=True, if_not_exists=True)

    def put(self, events: list[QueuedEvent]) -> None:
        rows = [{"uid": e.uid, "time": e.time, "person_id": e.person_id, "score": e.score,
                 "source": e.source, "thumbnail": e.thumbnail,
                 "details": json.dumps({"reason": e.details.reason,
                                        "nearest_id": e.details.nearest_id,
                                        "runner_up_id": e.details.runner_up_id,
                                        "runner_up_score": e.details.runner_up_score,
                                        "box": list(e.details.box) if e.details.box
                                        else None})}
                for e in events]
        with self._lock:
            conn = self._db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                # an event queued twice (the same uid) is kept once
                self._queued.insert_all(rows, ignore=True)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def oldest(self, limit: int = 200) -> list[QueuedEvent]:
        with self._lock:
            rows = list(self._queued.rows_where(order_by="seq", limit=limit))
        out = []
        for row in rows:
            d = json.loads(row["details"])
            out.append(QueuedEvent(row["uid"], row["time"], row["person_id"], row["score"],
                                   row["source"], row["thumbnail"], EventDetails(
                                       reason=d["reason"], nearest_id=d["nearest_id"],
                                       runner_up_id=d["runner_up_id"],
                                       runner_up_score=d["runner_up_score"],
                                       box=tuple(d["box"]) if d["box"] else None)))
        return out

    def remove(self, uid: str) -> None:
        with self._lock:
            self._queued.delete_where("uid = ?", [uid])

    def __len__(self) -> int:
        with self._lock:
            return self._queued.count

    def close(self) -> None:
        with self._lock:
            self._db.conn.close()
