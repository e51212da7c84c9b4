"""The watch list and the alerts sent, in the gallery (so the app, the CLI and every
station share them). Functions over a store, like retention.py:

    watch(gallery, person_id or None, camera, quiet)    alert about them (None: any
                                                         unknown face)
    unwatch / watch_list                                 and back
    add_alert / alerts / alert_picture / acknowledge_alerts
    alert_every / set_alert_every                        the rate limit, in minutes

A watch-list row goes with its person (ON DELETE CASCADE), and so do their alerts;
an alert's face picture is its event's thumbnail, so whatever deletes or expires the
event (deleting the person, the unknown faces' retention) takes the picture too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .errors import NotFound
from .records import check_id, format_time, parse_time, utc_now
from .store import GalleryStore

STATE_ALERT_EVERY = "alert_every_minutes"
DEFAULT_ALERT_EVERY_MINUTES = 10  # at most one alert per person per this many minutes
MAX_ALERT_EVERY_MINUTES = 24 * 60
MAX_CAMERA_LENGTH = 500

_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet(text: str) -> tuple[int, int] | None:
    """Quiet hours "22:00-06:00" -> (start, end) in minutes after midnight (local
    time; past midnight when end < start); '' -> None. ValueError in plain words."""
    if not text or not text.strip():
        return None
    found = _QUIET.match(text)
    if found:
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) != (h2, m2):
            return h1 * 60 + m1, h2 * 60 + m2
    raise ValueError(f"quiet hours are written like 22:00-06:00 (from-to, 24-hour "
                     f"clock), not {text!r}")


def is_quiet(quiet: str, when: datetime) -> bool:
    """Whether `when` (aware, or naive local) falls in the quiet hours (local time)."""
    span = parse_quiet(quiet)
    if span is None:
        return False
    local = when.astimezone() if when.tzinfo is not None else when
    minute = local.hour * 60 + local.minute
    start, end = span
    return start <= minute < end if start < end else (minute >= start or minute < end)


@dataclass(frozen=True)
class WatchEntry:
    id: int
    person_id: int | None  # None: any unknown face
    name: str | None  # the person's name now; None for unknown faces
    camera: str  # '' every camera; else a source, its file name or a station
    quiet: str  # quiet hours "22:00-06:00", '' none
    created: datetime

    def watches(self, cameras) -> bool:
        """Whether this entry applies to a camera known by these names."""
        wanted = self.camera.strip().casefold()
        return not wanted or wanted in {str(c).strip().casefold() for c in cameras if c}


@dataclass(frozen=True)
class AlertRecord:
    id: int
    time: datetime  # aware, UTC
    person_id: int | None  # None: an unknown face
    name: str | None  # the name at the time
    score: float | None
    camera: str
    station: str
    track: int | None
    event_uid: str | None  # the event that recorded the face (its picture)
    acknowledged: datetime | None
    has_picture: bool


def _camera(camera: str) -> str:
    if not isinstance(camera, str):
        raise TypeError("camera is a str")
    camera = camera.strip()
    if len(camera) > MAX_CAMERA_LENGTH:
        raise ValueError(f"a camera name is at most {MAX_CAMERA_LENGTH} characters")
    return camera


def watch(gallery: GalleryStore, person_id: int | None, camera: str = "",
          quiet: str = "") -> int:
    """Alert about this person (None: any unknown face) on this camera ('' all),
    outside the quiet hours. Replaces their entry for the same camera. Returns its id."""
    camera = _camera(camera)
    span = parse_quiet(quiet)
    quiet = "" if span is None else "%02d:%02d-%02d:%02d" % (
        span[0] // 60, span[0] % 60, span[1] // 60, span[1] % 60)
    with gallery.writing(bump=False) as db:
        if person_id is not None:
            person_id = gallery.require_person(db, person_id)
        _delete(db, person_id, camera)
        return db["watch_list"].insert({"person_id": person_id, "camera": camera,
                                        "quiet": quiet,
                                        "created": format_time(utc_now())}).last_pk


def _delete(db, person_id: int | None, camera: str | None) -> int:
    who = "person_id IS NULL" if person_id is None else "person_id = ?"
    params = [] if person_id is None else [person_id]
    if camera is not None:
        who += " AND lower(camera) = lower(?)"
        params.append(camera)
    return db.execute(f"DELETE FROM watch_list WHERE {who}", params).rowcount


def unwatch(gallery: GalleryStore, person_id: int | None, camera: str | None = None) -> int:
    """Stop alerting about this person (None: unknown faces) on this camera (None:
    on every one). Returns the number of entries removed."""
    if person_id is not None:
        person_id = check_id(person_id, "person")
    camera = None if camera is None else _camera(camera)
    with gallery.writing(bump=False) as db:
        return _delete(db, person_id, camera)


def watch_list(gallery: GalleryStore) -> list[WatchEntry]:
    """Unknown faces first, then people by name."""
    with gallery.reading() as db:
        rows = db.execute("SELECT w.id, w.person_id, p.name, w.camera, w.quiet, w.created "
                          "FROM watch_list w LEFT JOIN people p ON p.id = w.person_id "
                          "ORDER BY w.person_id IS NOT NULL, p.name_key, w.camera, w.id"
                          ).fetchall()
    return [WatchEntry(id=r[0], person_id=r[1], name=r[2], camera=r[3], quiet=r[4],
                       created=parse_time(r[5])) for r in rows]


def alert_every(gallery: GalleryStore) -> int:
    """The rate limit: at most one alert per person per this many minutes."""
    with gallery.reading() as db:
        return gallery.read_state(db, STATE_ALERT_EVERY, DEFAULT_ALERT_EVERY_MINUTES)


def set_alert_every(gallery: GalleryStore, minutes: int) -> None:
    minutes = int(minutes)
    if not 0 <= minutes <= MAX_ALERT_EVERY_MINUTES:
        raise ValueError(f"alerts are limited to one per person per 0 to "
                         f"{MAX_ALERT_EVERY_MINUTES} minutes")
    with gallery.writing(bump=False) as db:
        gallery.write_state(db, STATE_ALERT_EVERY, minutes)


def add_alert(gallery: GalleryStore, person_id: int | None, score: float | None,
              camera: str, time: datetime | None = None, track: int | None = None,
              event_uid: str | None = None, wait: float | None = None) -> int | None:
    """Record an alert sent; the person's name now is kept with it. None when the
    person was deleted meanwhile (nothing of them is kept)."""
    camera = _camera(camera)
    with gallery.writing(bump=False, wait=wait) as db:
        name = None
        if person_id is not None:
            try:
                person_id = gallery.require_person(db, person_id)
            except NotFound:
                return None
            name = db.execute("SELECT name FROM people WHERE id = ?", [person_id]).fetchone()[0]
        return db["alerts"].insert({
            "time": format_time(time or utc_now()), "person_id": person_id, "name": name,
            "score": None if score is None else float(score), "camera": camera,
            "station": gallery.station, "track": None if track is None else int(track),
            "event_uid": event_uid}).last_pk


def alerts(gallery: GalleryStore, limit: int | None = 500, unacknowledged: bool = False,
           person_id: int | None = None) -> list[AlertRecord]:
    """Newest first."""
    clauses, params = [], []
    if unacknowledged:
        clauses.append("a.acknowledged IS NULL")
    if person_id is not None:
        clauses.append("a.person_id = ?")
        params.append(check_id(person_id, "person"))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = ("SELECT a.id, a.time, a.person_id, a.name, a.score, a.camera, a.station, a.track, "
           "a.event_uid, a.acknowledged, e.thumbnail IS NOT NULL FROM alerts a "
           f"LEFT JOIN events e ON e.uid = a.event_uid{where} ORDER BY a.time DESC, a.id DESC")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, int(limit)))
    with gallery.reading() as db:
        rows = db.execute(sql, params).fetchall()
    return [AlertRecord(id=r[0], time=parse_time(r[1]), person_id=r[2], name=r[3], score=r[4],
                        camera=r[5], station=r[6], track=r[7], event_uid=r[8],
                        acknowledged=parse_time(r[9]), has_picture=bool(r[10]))
            for r in rows]


def last_alert(gallery: GalleryStore, person_id: int) -> datetime | None:
    """When this station last alerted about this person (the rate limit outlives a
    restart)."""
    pid = check_id(person_id, "person")
    with gallery.reading() as db:
        row = db.execute("SELECT max(time) FROM alerts WHERE person_id = ? AND station = ?",
                         [pid, gallery.station]).fetchone()
    return parse_time(row[0]) if row and row[0] else None


def alert_picture(gallery: GalleryStore, alert_id: int) -> bytes | None:
    """The face picture (JPEG) of an alert, or None (not kept, or gone with its event)."""
    aid = check_id(alert_id, "alert")
    with gallery.reading() as db:
        row = db.execute("SELECT e.thumbnail FROM alerts a LEFT JOIN events e "
                         "ON e.uid = a.event_uid WHERE a.id = ?", [aid]).fetchone()
    if row is None:
        raise NotFound(f"no alert with id {aid}")
    return row[0]


def acknowledge_alerts(gallery: GalleryStore, alert_ids=None) -> int:
    """Mark alerts as seen (None: all of them). Returns how many were marked."""
    now = format_time(utc_now())
    with gallery.writing(bump=False) as db:
        if alert_ids is None:
            return db.execute("UPDATE alerts SET acknowledged = ? WHERE acknowledged IS NULL",
                              [now]).rowcount
        ids = [check_id(a, "alert") for a in alert_ids]
        return sum(db.execute("UPDATE alerts SET acknowledged = ? WHERE id = ? "
                              "AND acknowledged IS NULL", [now, a]).rowcount for a in ids)
