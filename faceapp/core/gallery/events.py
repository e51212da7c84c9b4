"""The recognition event log, a part of the gallery (mixed into Gallery): each
event keeps the name at the time, why the face got its answer (reason, nearest and
runner-up), where it was (source, box) and optionally a small face picture."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .errors import NotFound
from .files import write_private_file
from .records import check_id, format_time, parse_time, utc_now


@dataclass
class Event:
    id: int
    time: datetime  # aware, UTC
    person_id: int | None  # None: unknown face, or the person was deleted since
    name: str | None  # the name at the time; None: nobody was recognised
    score: float | None
    source: str
    has_thumbnail: bool
    reason: str = ""  # why this answer: match, below threshold, ambiguous, track vote
    nearest: str | None = None  # the nearest person's name at the time (even if unknown)
    runner_up: str | None = None  # the second nearest person's name
    runner_up_score: float | None = None
    box: tuple[float, float, float, float] | None = None  # the face in the source image
    station: str = ""  # the station that saw it (several share a gallery on a server)


@dataclass(frozen=True)
class EventDetails:
    """Why a face got its answer, and where it was; stored with its event."""
    reason: str = ""
    nearest_id: int | None = None
    runner_up_id: int | None = None
    runner_up_score: float | None = None
    box: tuple[float, float, float, float] | None = None


@dataclass
class QueuedEvent:
    uid: str
    time: str  # the gallery's time format, when it was seen
    person_id: int | None
    score: float | None
    source: str
    thumbnail: bytes | None
    details: EventDetails


class EventLog:
    """The gallery's event methods; they run in the gallery's transactions."""

    def add_event(self, person_id: int | None, score: float | None, source: str = "",
                  thumbnail_jpeg: bytes | None = None, time: datetime | None = None,
                  details: EventDetails | None = None, wait: float | None = None,
                  uid: str | None = None) -> int | None:
        """Record a recognition (person_id None: an unknown face). The current names
        of the person and of the nearest people are stored with it, and this
        gallery's station. uid: the event's own id, made where it was seen; an event
        sent again with the same uid (after a lost answer) is stored once, and None
        is returned for the copy."""
        if score is not None:
            score = float(score)
            if not math.isfinite(score):
                raise ValueError("a score must be finite")
        if not isinstance(source, str):
            raise TypeError("source is a str")
        if thumbnail_jpeg is not None:
            thumbnail_jpeg = bytes(thumbnail_jpeg)
            if not thumbnail_jpeg.startswith(b"\xff\xd8\xff"):
                raise ValueError("the thumbnail is not JPEG data")
        details = details or EventDetails(reason="match" if person_id is not None else "")
        box = None
        if details.box is not None:
            box = json.dumps([round(float(v), 1) for v in details.box])
        when = format_time(time if time is not None else utc_now())
        uid = uid or uuid.uuid4().hex
        with self.writing(bump=False, wait=wait) as db:
            def name_of(pid):  # a person deleted meanwhile leaves no name
                row = db.execute("SELECT name FROM people WHERE id = ?",
                                 [check_id(pid, "person")]).fetchone() if pid else None
                return row[0] if row else None

            pid = self.require_person(db, person_id) if person_id is not None else None
            nearest, runner_up = name_of(details.nearest_id), name_of(details.runner_up_id)
            record = {
                "time": when, "person_id": pid, "name": name_of(pid), "score": score,
                "source": source, "thumbnail": thumbnail_jpeg, "reason": details.reason,
                "nearest": nearest, "runner_up": runner_up,
                # who they were, so that deleting them clears these names later
                "nearest_id": int(details.nearest_id) if nearest is not None else None,
                "runner_up_id": int(details.runner_up_id) if runner_up is not None else None,
                "runner_up_score": (None if details.runner_up_score is None
                                    else float(details.runner_up_score)),
                "box": box, "station": self.station, "uid": uid}
            row = db.execute(f"INSERT INTO events({', '.join(record)}) "
                             f"VALUES ({', '.join('?' * len(record))}) "
                             "ON CONFLICT(uid) DO NOTHING RETURNING id",
                             list(record.values())).fetchone()
            return row[0] if row else None

    def events(self, person_id: int | None = None, since: datetime | None = None,
               until: datetime | None = None, unknown_only: bool = False,
               limit: int | None = 1000, station: str | None = None) -> list[Event]:
        """Newest first. since is inclusive, until exclusive; unknown_only: faces that
        matched nobody; station: only those this station saw."""
        where, params = self._event_filter(person_id, since, until, unknown_only, station)
        sql = ("SELECT id, time, person_id, name, score, source, thumbnail IS NOT NULL, "
               "reason, nearest, runner_up, runner_up_score, box, station "
               f"FROM events{where} ORDER BY time DESC, id DESC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        with self.reading() as db:
            return [Event(id=r[0], time=parse_time(r[1]), person_id=r[2], name=r[3],
                          score=r[4], source=r[5], has_thumbnail=bool(r[6]), reason=r[7],
                          nearest=r[8], runner_up=r[9], runner_up_score=r[10],
                          box=tuple(json.loads(r[11])) if r[11] else None, station=r[12])
                    for r in db.execute(sql, params)]

    def stations(self) -> list[str]:
        """The stations that recorded events, by name."""
        with self.reading() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT station FROM events "
                                             "WHERE station != '' ORDER BY station")]

    @staticmethod
    def _event_filter(person_id, since, until, unknown_only,
                      station=None) -> tuple[str, list]:
        clauses, params = [], []
        if station is not None:
            clauses.append("station = ?")
            params.append(str(station))
        if person_id is not None:
            clauses.append("person_id = ?")
            params.append(check_id(person_id, "person"))
        if since is not None:
            clauses.append("time >= ?")
            params.append(format_time(since))
        if until is not None:
            clauses.append("time < ?")
            params.append(format_time(until))
        if unknown_only:
            clauses.append("name IS NULL")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def event_thumbnail(self, event_id: int) -> bytes | None:
        eid = check_id(event_id, "event")
        with self.reading() as db:
            row = db.execute("SELECT thumbnail FROM events WHERE id = ?", [eid]).fetchone()
        if row is None:
            raise NotFound(f"no event with id {eid}")
        return row[0]

    def export_events_csv(self, path: str | os.PathLike, person_id: int | None = None,
                          since: datetime | None = None, until: datetime | None = None,
                          unknown_only: bool = False, station: str | None = None) -> int:
        """Write time, name ("unknown" for faces that matched nobody), score, source,
        why (reason, nearest, runner-up and its score), the face's box and the
        station, oldest first, to a new owner-only file (replaced atomically).
        Returns the number of rows."""
        where, params = self._event_filter(person_id, since, until, unknown_only, station)
        with self.reading() as db:
            rows = db.execute("SELECT time, name, score, source, reason, nearest, runner_up, "
                              f"runner_up_score, box, station FROM events{where} "
                              "ORDER BY time, id", params).fetchall()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["time", "name", "score", "source", "reason", "nearest", "runner_up",
                         "runner_up_score", "box", "station"])

        def number(value):
            return "" if value is None else f"{value:.6g}"

        for when, name, score, source, reason, nearest, runner_up, second, box, station in rows:
            writer.writerow([when, _csv_text(name if name is not None else "unknown"),
                             number(score), _csv_text(source), reason,
                             _csv_text(nearest or ""), _csv_text(runner_up or ""),
                             number(second),
                             " ".join(str(v) for v in json.loads(box)) if box else "",
                             _csv_text(station)])
        write_private_file(Path(path), buf.getvalue().encode("utf-8"))
        return len(rows)

    def prune_events(self, older_than: datetime | timedelta) -> int:
        """Delete the events before a time (or older than an age). Returns how many."""
        cutoff = utc_now() - older_than if isinstance(older_than, timedelta) else older_than
        if not isinstance(cutoff, datetime):
            raise TypeError("older_than is a datetime or a timedelta")
        with self.writing(bump=False) as db:
            return db.execute("DELETE FROM events WHERE time < ?", [format_time(cutoff)]).rowcount

    def event_count(self) -> int:
        with self.reading() as db:
            return db.execute("SELECT count(*) FROM events").fetchone()[0]


def _csv_text(value: str) -> str:
    # a spreadsheet would run a cell that starts like a formula
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
