"""What a gallery holds, in a file or on a server: the schema, the stored form of a
face sample, and the migrations from every older version (the only place schema
changes live).

Layout (schema version 7)::

    meta(key, value)              app id, schema_version, created (the owner's)
    gallery_state(key, value)     data_version and the other change counters, the
                                  unknown faces' retention (what stations write)
    people(id, name, name_key, created, updated, notes,
           portrait_id -> faces ON DELETE SET NULL: the sample shown for them)
    faces(id, person_id -> people ON DELETE CASCADE, crop PNG, landmarks JSON 5x2,
          quality, source, created, flagged, content_hash)
          unique (person_id, content_hash): one person holds each crop once
    embeddings(face_id -> faces ON DELETE CASCADE, model_id, dim, vector f32 blob)
    events(id, time, person_id -> people ON DELETE SET NULL, score, source,
           thumbnail JPEG, name, reason, nearest, runner_up, runner_up_score, box,
           station, uid UNIQUE,   the station that saw it; an id made there
           nearest_id, runner_up_id)   who the nearest people were (ids, no keys)
    unknown_clusters(id, created, ignored)
    unknown_faces(id, cluster_id -> unknown_clusters ON DELETE CASCADE, seen, source,
                  path, box, crop JPEG, landmarks, quality, enrollable, model_id,
                  dim, vector, content_hash UNIQUE, event_uid)
          faces nobody was recognised as, kept for the retention period
          (gallery_state unknown_retention_days) so they can be grouped and named
    sightings(id, path, person_id -> people ON DELETE CASCADE,
              unknown_id -> unknown_faces ON DELETE CASCADE, box, score, scanned)
          which file each face found by `scan` came from; exactly one of
          person_id / unknown_id is set
    scanned_files(path, size, mtime, faces, scanned)   a re-scan skips what it saw
    watch_list(id, person_id -> people ON DELETE CASCADE, camera, quiet, created)
          who to be alerted about (person_id NULL: any unknown face), where, and
          the quiet hours (gallery/watch.py)
    alerts(id, time, person_id -> people ON DELETE CASCADE, name, score, camera,
           station, track, event_uid, acknowledged)
          the alerts sent; their face picture is their event's thumbnail
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import cv2
import numpy as np

from .errors import GalleryError
from .records import format_time, utc_now
from .sql import Sql

APP_ID = "faceapp-gallery"
SQLITE_APPLICATION_ID = 0x46414347  # "FACG" in the file header, for file(1) and friends

def encode_crop(crop: np.ndarray) -> bytes:
    """H x W x 3 uint8 RGB -> PNG bytes (lossless)."""
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 \
            or crop.shape[2] != 3 or crop.shape[0] < 1 or crop.shape[1] < 1:
        shape = getattr(crop, "shape", None)
        dtype = getattr(crop, "dtype", type(crop).__name__)
        raise ValueError(f"a face crop is an H x W x 3 uint8 RGB array, got {shape} {dtype}")
    ok, png = cv2.imencode(".png", np.ascontiguousarray(crop[:, :, ::-1]))
    if not ok:
        raise ValueError("the face crop could not be encoded as PNG")
    return png.tobytes()


def decode_crop(png: bytes) -> np.ndarray:
    """PNG bytes -> H x W x 3 uint8 RGB; ValueError if they are not a colour image."""
    arr = np.frombuffer(png, dtype=np.uint8)
    bgr = cv2.imdecode(arr, cv2.IMREAD_COLOR) if arr.size else None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError("the stored face crop is not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


# ------------------------------------------------------------------- schema v7
# defined once for both backends in tables.py (SQLAlchemy)

SCHEMA_VERSION = 7
DEFAULT_UNKNOWN_RETENTION_DAYS = 30
META_KEYS = ("app", "schema_version", "created")  # meta holds these only (v7)
# gallery_state keys
STATE_DATA_VERSION = "data_version"  # people, faces, embeddings changed
STATE_UNKNOWNS_VERSION = "unknown_version"  # unknown faces changed
STATE_CLUSTER_COUNTER = "next_unknown_cluster"
STATE_RETENTION = "unknown_retention_days"


def schema_statements(dialect: str) -> list[str]:
    """The DDL that creates an empty gallery of this version on this backend."""
    from .tables import create_statements

    return create_statements(dialect)


class _Statements:
    """Collects what Alembic renders in its offline ("as SQL") mode."""

    def __init__(self):
        self.statements: list[str] = []

    def write(self, text: str) -> None:
        text = text.strip()
        if text:
            self.statements.append(text.removesuffix(";"))

    def flush(self) -> None:
        pass


def _alembic(db, build: Callable) -> None:
    """Run a migration step written with Alembic's operations (add_column,
    create_index, batch_alter_table, ...): Alembic renders each operation for this
    backend's dialect, and the statements run in the gallery's own transaction."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    out = _Statements()
    context = MigrationContext.configure(dialect_name=db.dialect,
                                         opts={"as_sql": True, "output_buffer": out})
    build(Operations(context))
    for statement in out.statements:
        db.execute(statement)


def _migrate_1_to_2(db: Sql) -> None:
    """v2: faces can be flagged ("this was not X"), events keep the name at the time."""
    if "flagged" not in db["faces"].columns_dict:
        db.execute("ALTER TABLE faces ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0 "
                   "CHECK (flagged IN (0, 1))")
    if "name" not in db["events"].columns_dict:
        db.execute("ALTER TABLE events ADD COLUMN name TEXT")
    db.execute("UPDATE events SET name = (SELECT people.name FROM people "
               "WHERE people.id = events.person_id) WHERE name IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS events_unknown ON events(time) WHERE name IS NULL")
    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('data_version', '0')")


_EVENT_DETAIL_COLUMNS = {"reason": "TEXT NOT NULL DEFAULT ''", "nearest": "TEXT",
                         "runner_up": "TEXT", "runner_up_score": "REAL", "box": "TEXT"}


def _migrate_2_to_3(db: Sql) -> None:
    """v3: events say why (reason, nearest people) and where (the face's box)."""
    columns = db["events"].columns_dict
    for column, kind in _EVENT_DETAIL_COLUMNS.items():
        if column not in columns:
            db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
    db.execute("UPDATE events SET reason = 'match' WHERE name IS NOT NULL AND reason = ''")


def crop_digest(crop: np.ndarray) -> bytes:
    """A sample's identity: the sha256 of its decoded pixels (and their shape). The
    same photo imported twice, by whatever path, gives the same crop."""
    crop = np.ascontiguousarray(crop)
    return hashlib.sha256(repr(crop.shape).encode() + crop.tobytes()).digest()


def _migrate_3_to_4(db: Sql) -> None:
    """v4: a sample's identity is its content; one person holds each crop once,
    enforced by a unique index (duplicates made by earlier imports are removed)."""
    if "content_hash" not in db["faces"].columns_dict:
        db.execute("ALTER TABLE faces ADD COLUMN content_hash BLOB NOT NULL DEFAULT x''")
    seen: set[tuple[int, bytes]] = set()
    for fid, pid, crop in db.execute("SELECT id, person_id, crop FROM faces ORDER BY id"
                                     ).fetchall():
        try:
            digest = crop_digest(decode_crop(crop))
        except ValueError:  # a damaged crop keeps an identity of its own
            digest = hashlib.sha256(b"damaged:" + crop).digest()
        if (pid, digest) in seen:
            db.execute("DELETE FROM faces WHERE id = ?", [fid])
            continue
        seen.add((pid, digest))
        db.execute("UPDATE faces SET content_hash = ? WHERE id = ?", [digest, fid])
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS faces_content "
               "ON faces(person_id, content_hash)")


# the tables v5 added, as v5 wrote them (a migration never changes once released)
_UNKNOWNS_V5 = """
CREATE TABLE unknown_clusters (
    id      INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    ignored INTEGER NOT NULL DEFAULT 0 CHECK (ignored IN (0, 1))
);
CREATE TABLE unknown_faces (
    id         INTEGER PRIMARY KEY,
    cluster_id INTEGER NOT NULL REFERENCES unknown_clusters(id) ON DELETE CASCADE,
    seen       TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    path       TEXT,
    box        TEXT,
    crop       BLOB NOT NULL,
    landmarks  TEXT NOT NULL,
    quality    REAL NOT NULL,
    enrollable INTEGER NOT NULL DEFAULT 0 CHECK (enrollable IN (0, 1)),
    model_id   TEXT NOT NULL,
    dim        INTEGER NOT NULL CHECK (dim > 0),
    vector     BLOB NOT NULL CHECK (length(vector) = 4 * dim),
    content_hash BLOB NOT NULL UNIQUE
);
CREATE INDEX unknown_faces_seen ON unknown_faces(seen);
CREATE INDEX unknown_faces_cluster ON unknown_faces(cluster_id);
CREATE TABLE sightings (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL,
    person_id  INTEGER REFERENCES people(id) ON DELETE CASCADE,
    unknown_id INTEGER REFERENCES unknown_faces(id) ON DELETE CASCADE,
    box        TEXT NOT NULL,
    score      REAL,
    scanned    TEXT NOT NULL,
    CHECK ((person_id IS NULL) <> (unknown_id IS NULL))
);
CREATE INDEX sightings_path ON sightings(path);
CREATE INDEX sightings_person ON sightings(person_id) WHERE person_id IS NOT NULL;
CREATE INDEX sightings_unknown ON sightings(unknown_id) WHERE unknown_id IS NOT NULL;
CREATE TABLE scanned_files (
    path    TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    mtime   REAL NOT NULL,
    faces   INTEGER NOT NULL,
    scanned TEXT NOT NULL
);
"""


def _migrate_4_to_5(db: Sql) -> None:
    """v5: unknown faces, their clusters, where `scan` saw each face, and the
    portrait a person chose among their samples."""
    if "portrait_id" not in db["people"].columns_dict:
        db.execute("ALTER TABLE people ADD COLUMN portrait_id INTEGER "
                   "REFERENCES faces(id) ON DELETE SET NULL")
    for statement in _UNKNOWNS_V5.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_5_to_6(db: Sql) -> None:
    """v6: every event names the station that saw it and carries an id made there
    (a queued event sent twice is stored once). The first step written for both
    backends: a gallery on a server starts at v6, so the steps before are SQLite's."""
    import sqlalchemy as sa

    def build(op) -> None:
        columns = db["events"].columns_dict
        if "station" not in columns:
            op.add_column("events", sa.Column("station", sa.Text, nullable=False,
                                              server_default=""))
        if "uid" not in columns:
            op.add_column("events", sa.Column("uid", sa.Text))
        op.create_index("events_uid", "events", ["uid"], unique=True)
        op.create_index("events_station", "events", ["station", "time"])

    _alembic(db, build)


def _migrate_6_to_7(db: Sql) -> None:
    """v7: what stations change moves out of meta into gallery_state (a station role
    on a server may no longer write meta, so it cannot change the schema version);
    events keep who their nearest people were; unknown faces keep their event; the
    watch list and the alerts sent."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import sqlite as sa_sqlite

    def build(op) -> None:
        tables = db.table_names()
        if "gallery_state" not in tables:
            op.create_table("gallery_state",
                            sa.Column("key", sa.Text, primary_key=True, nullable=True),
                            sa.Column("value", sa.Text, nullable=False))
        if "nearest_id" not in db["events"].columns_dict:
            op.add_column("events", sa.Column("nearest_id", sa.Integer))
        if "runner_up_id" not in db["events"].columns_dict:
            op.add_column("events", sa.Column("runner_up_id", sa.Integer))
        if "event_uid" not in db["unknown_faces"].columns_dict:
            op.add_column("unknown_faces", sa.Column("event_uid", sa.Text))
        # the watch list and the alerts sent (as tables.py writes them for a new one)
        key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        real = sa.Double().with_variant(sa_sqlite.REAL(), "sqlite")

        def person() -> sa.Column:
            return sa.Column("person_id", key, sa.ForeignKey("people.id", ondelete="CASCADE"))

        def text(name: str) -> sa.Column:
            return sa.Column(name, sa.Text, nullable=False, server_default="")

        if "watch_list" not in tables:
            op.create_table("watch_list",
                            sa.Column("id", key, primary_key=True, nullable=True),
                            person(), text("camera"), text("quiet"),
                            sa.Column("created", sa.Text, nullable=False))
            op.create_index("watch_list_person", "watch_list", ["person_id"])
        if "alerts" not in tables:
            op.create_table("alerts",
                            sa.Column("id", key, primary_key=True, nullable=True),
                            sa.Column("time", sa.Text, nullable=False), person(),
                            sa.Column("name", sa.Text), sa.Column("score", real),
                            text("camera"), text("station"), sa.Column("track", sa.Integer),
                            sa.Column("event_uid", sa.Text), sa.Column("acknowledged", sa.Text))
            op.create_index("alerts_time", "alerts", ["time"])
            op.create_index("alerts_person", "alerts", ["person_id", "time"])

    _alembic(db, build)
    kept = ", ".join("?" * len(META_KEYS))
    db.execute(f"INSERT INTO gallery_state(key, value) SELECT key, value FROM meta "
               f"WHERE key NOT IN ({kept})", list(META_KEYS))
    db.execute(f"DELETE FROM meta WHERE key NOT IN ({kept})", list(META_KEYS))


# MIGRATIONS[i] takes a gallery from version i + 1 to i + 2. They run inside one
# transaction (on a file with foreign keys off, so a later one may rebuild a table);
# the foreign keys are checked before the commit.
MIGRATIONS: list[Callable[[Sql], None]] = [
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
    _migrate_5_to_6,
    _migrate_6_to_7,
]
assert len(MIGRATIONS) + 1 == SCHEMA_VERSION


# ---------------------------------------------------------------- a new gallery

def create_gallery(db: Sql) -> None:
    """Create an empty gallery of this version in an empty database (either backend),
    inside the caller's transaction: the tables, then what `meta` starts with."""
    for statement in schema_statements(db.dialect):
        db.execute(statement)
    db["meta"].insert_all([
        {"key": "app", "value": APP_ID},
        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
        {"key": "created", "value": format_time(utc_now())},
    ])
    db["gallery_state"].insert_all([{"key": STATE_DATA_VERSION, "value": "0"}])


def check_meta(meta: dict, path) -> int:
    """The schema version a gallery's meta table gives, if this code can use it (on
    either backend); GalleryError for another program's data or a newer gallery."""
    if meta.get("app") != APP_ID:
        raise GalleryError(f"{path} is not a faceapp gallery: it belongs to "
                           f"{meta.get('app') or 'another program'!r}")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise GalleryError(f"the gallery {path} is damaged: its schema version "
                           f"{meta.get('schema_version')!r} is not a number") from None
    if version > SCHEMA_VERSION:
        raise GalleryError(f"the gallery {path} was written by a newer faceapp (schema "
                           f"version {version}; this version reads up to {SCHEMA_VERSION}); "
                           "update faceapp to open it")
    if version < 1:
        raise GalleryError(f"the gallery {path} is damaged: schema version {version}")
    return version
