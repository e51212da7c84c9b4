"""The gallery: people, their face samples, the embeddings of each model, the
recognition events and the unknown faces, in one SQLite file or in a PostgreSQL
database shared by several stations.

This module is the gallery's public face, and `open_gallery` the one place that
chooses a backend. Inside, one module per concern:

    records.py      the values (people, samples, names, times) and their checks
    errors.py       what can go wrong, as messages a person can act on
    store.py        GalleryStore: the API both backends offer (people, faces,
                    embeddings), written once in the SQL both speak (sql.py)
    events.py       the event log, mixed into the store
    retention.py    how long unknown faces (and their events' pictures) are kept
    watch.py        the watch list (who to be alerted about) and the alerts sent
    schema.py       the schema version, stored crops, migrations (tables.py: the DDL)
    files.py        a gallery file before it is opened, owner-only files, atomic
                    writes, the files this process has open (LiveFiles)
    sqlite_file.py  Gallery: a gallery in one SQLite file
    server.py       ServerGallery: a gallery on a PostgreSQL server (psycopg)
    spool.py        a station's events queued while its server is away
    location.py     a path or a server URL, told apart without loading psycopg

Face templates and face pictures are biometric data: files are owner-only, deleted
rows are overwritten and checkpointed out of the WAL, and nothing here talks to the
network except to a server the user chose.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import GalleryError, GalleryLocked, GalleryUnavailable, NameTaken, NotFound
from .events import Event, EventDetails, QueuedEvent
from .files import check_output_path, create_private_file, write_private_file
from .location import describe, has_password, is_server_location
from .records import (FaceRecord, FaceSample, Person, check_landmarks, decode_vectors,
                      default_station, format_time, landmarks_from_json, landmarks_json, name_key,
                      name_skeleton, normalize_name, parse_time, utc_now)
from .retention import expiring_count, purge_expired, retention_days, set_retention_days
from .schema import (DEFAULT_UNKNOWN_RETENTION_DAYS, SCHEMA_VERSION, STATE_CLUSTER_COUNTER,
                     STATE_UNKNOWNS_VERSION, crop_digest, decode_crop, encode_crop)
from .sqlite_file import DEFAULT_TIMEOUT, Gallery
from .store import GalleryStore
from .watch import (DEFAULT_ALERT_EVERY_MINUTES, AlertRecord, WatchEntry, acknowledge_alerts,
                    add_alert, alert_every, alert_picture, alerts, is_quiet, last_alert,
                    parse_quiet, set_alert_every, unwatch, watch, watch_list)

__all__ = [
    "DEFAULT_TIMEOUT", "DEFAULT_UNKNOWN_RETENTION_DAYS", "SCHEMA_VERSION",
    "STATE_CLUSTER_COUNTER", "STATE_UNKNOWNS_VERSION",
    "Event", "EventDetails", "FaceRecord", "FaceSample", "Gallery", "GalleryError",
    "GalleryLocked", "GalleryStore", "GalleryUnavailable", "NameTaken", "NotFound",
    "Person", "QueuedEvent", "ServerGallery",
    "check_landmarks", "check_output_path", "connect", "create_private_file", "crop_digest",
    "decode_crop", "decode_vectors", "default_station", "describe", "encode_crop", "expiring_count",
    "format_time", "has_password", "is_server_location", "landmarks_from_json",
    "landmarks_json", "name_key", "name_skeleton", "normalize_name", "open_gallery",
    "parse_time", "purge_expired", "retention_days", "set_retention_days", "utc_now",
    "write_private_file",
    # the watch list and the alerts sent (watch.py)
    "DEFAULT_ALERT_EVERY_MINUTES", "AlertRecord", "WatchEntry", "acknowledge_alerts",
    "add_alert", "alert_every", "alert_picture", "alerts", "is_quiet", "last_alert",
    "parse_quiet", "set_alert_every", "unwatch", "watch", "watch_list",
]


def connect(location, *, station: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            read_only: bool | None = None) -> GalleryStore:
    """The gallery at location (a file, created owner-only if missing, or a
    postgresql:// URL), as it is: nothing is purged. Most callers want open_gallery."""
    if is_server_location(location):
        from .server import ServerGallery

        return ServerGallery(location, station=station, timeout=timeout, read_only=read_only)
    return Gallery(location, station=station, timeout=timeout, read_only=read_only)


def open_gallery(location, station: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 read_only: bool | None = None) -> GalleryStore:
    """Open (or create, owner-only, in an owner-only folder) the gallery as the app and
    the CLI start with it: unknown faces past their retention period are deleted
    first. location: a file, or a postgresql:// URL for a gallery server."""
    if not is_server_location(location):
        from ..paths import ensure_private_dir

        location = Path(os.fspath(location))
        ensure_private_dir(location.parent)
    gallery = connect(location, station=station, timeout=timeout, read_only=read_only)
    try:
        purge_expired(gallery)
    except BaseException:
        gallery.close()
        raise
    return gallery


def __getattr__(name: str):
    # the server backend loads psycopg: only when a server gallery is asked for
    if name == "ServerGallery":
        from .server import ServerGallery

        return ServerGallery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
