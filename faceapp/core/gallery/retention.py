"""How long faces nobody was recognised as are kept: the unknown faces themselves,
and the face pictures of the events that recorded them. Past the retention period
both are deleted (each time a gallery is opened for writing, and when the period is
shortened); with 0 days none is kept at all."""

from __future__ import annotations

from datetime import datetime, timedelta

from .records import format_time, utc_now
from .schema import DEFAULT_UNKNOWN_RETENTION_DAYS, STATE_RETENTION, STATE_UNKNOWNS_VERSION
from .store import GalleryStore

MAX_RETENTION_DAYS = 3650


def retention_days(gallery: GalleryStore) -> int:
    with gallery.reading() as db:
        return gallery.read_state(db, STATE_RETENTION, DEFAULT_UNKNOWN_RETENTION_DAYS)


def set_retention_days(gallery: GalleryStore, days: int) -> int:
    """How long unknown faces are kept (0: not kept at all); what is older is deleted
    now. Returns the number of unknown faces deleted."""
    days = int(days)
    if days < 0 or days > MAX_RETENTION_DAYS:
        raise ValueError(f"the retention period is 0 to {MAX_RETENTION_DAYS} days")
    with gallery.writing(bump=False) as db:
        gallery.write_state(db, STATE_RETENTION, days)
    return purge_expired(gallery)


def expiring_count(gallery: GalleryStore, days: int, now: datetime | None = None) -> int:
    """How many kept unknown faces a retention of `days` would delete now (what the
    app says before the user shortens it)."""
    cutoff = format_time((now or utc_now()) - timedelta(days=int(days)))
    with gallery.reading() as db:
        return db.execute("SELECT count(*) FROM unknown_faces WHERE seen < ?",
                          [cutoff]).fetchone()[0]


def purge_expired(gallery: GalleryStore, now: datetime | None = None) -> int:
    """Delete unknown faces older than the retention period, and the face pictures of
    unknown faces' events of that age; their rows leave the WAL too (checkpoint) and
    their freed pages are zeroed (secure_delete). Returns the unknown faces deleted."""
    if gallery.read_only:
        return 0
    days = retention_days(gallery)
    cutoff = format_time((now or utc_now()) - timedelta(days=days))
    unknown_pictures = "name IS NULL AND thumbnail IS NOT NULL AND time < ?"
    with gallery.reading() as db:
        stale = db.execute("SELECT count(*) FROM unknown_faces WHERE seen < ?",
                           [cutoff]).fetchone()[0]
        pictures = db.execute(f"SELECT count(*) FROM events WHERE {unknown_pictures}",
                              [cutoff]).fetchone()[0]
    if not stale and not pictures:
        return 0
    with gallery.writing(bump=False) as db:
        gone = db.execute("DELETE FROM unknown_faces WHERE seen < ?", [cutoff]).rowcount
        db.execute("DELETE FROM unknown_clusters WHERE id NOT IN "
                   "(SELECT DISTINCT cluster_id FROM unknown_faces)")
        db.execute(f"UPDATE events SET thumbnail = NULL WHERE {unknown_pictures}", [cutoff])
        if gone:
            version = gallery.read_state(db, STATE_UNKNOWNS_VERSION) + 1
            gallery.write_state(db, STATE_UNKNOWNS_VERSION, version)
    gallery.checkpoint()
    return gone
