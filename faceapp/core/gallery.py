"""The gallery: one SQLite file holding people, their face samples, embeddings and
recognition events. (The same gallery on a PostgreSQL server, shared by several
stations, is gallery_server.py: it runs this class's SQL in its own transactions.)

Face templates are biometric data. The file is created owner-only (0600) before
SQLite ever touches it; SQLite gives its -wal and -shm files the mode of the
database file, and backups are created 0600 too. Deleted rows are overwritten
(``secure_delete``). Nothing here talks to the network; only a gallery the user
placed on a server does, to that server.

The schema, the stored form of a sample and the migrations are in gallery_schema.py;
recognising a file, its permissions and SQLite's errors in gallery_files.py; the event
log in gallery_events.py; unknown faces and their clusters in unknowns.py.

``name_key`` is the name folded for comparison (NFKC + casefold), so names are
unique case-insensitively, accents and all. Times are ISO 8601 UTC strings with a
fixed width (``2024-05-01T12:34:56.000000Z``) so that text order is time order.

Opening a file never changes it unless it is recognised as a gallery this code can
use: random bytes, a truncated file, another program's SQLite database and a
gallery written by a newer faceapp are refused with GalleryError before any write.
An older gallery is first copied to ``<name>.v<old>.bak`` and then migrated in one
transaction by the functions in MIGRATIONS, the only place schema changes live.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a killed process leaves
each enrollment either whole or absent; WAL lets other processes read meanwhile.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import stat
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .gallery_files import (  # noqa: F401  (re-exported: the gallery's public names)
    APP_ID,
    SQLITE_APPLICATION_ID,
    GalleryError,
    GalleryLocked,
    GalleryUnavailable,
    NameTaken,
    NotFound,
    _backup_path,
    _FileState,
    _inspect,
    _read_meta,
    _sqlite_message,
    _tighten_permissions,
    _translated,
    _uri,
    create_gallery,
    create_private_file,
    fsync_dir,
    write_private_file,
)
from .gallery_events import Event, EventDetails, EventLog, _csv_text  # noqa: F401
from .gallery_values import _TIME_FORMAT, _check_id, _fmt_time, _parse_time, utc_now  # noqa: F401
from .gallery_schema import (  # noqa: F401
    MIGRATIONS,
    SCHEMA_VERSION,
    crop_digest,
    decode_crop,
    encode_crop,
    schema_statements,
)
from .gallery_location import is_server_location
from .gallery_sql import SQLITE, Sql

DEFAULT_TIMEOUT = 10.0
MAX_NAME_LENGTH = 200
MAX_MODEL_ID_LENGTH = 200


# -------------------------------------------------------------------------- records

@dataclass(eq=False)
class FaceSample:
    """One face to enroll: the crop (H x W x 3 uint8 RGB), the five landmarks inside
    it (5 x 2 float, x/y pixels: eyes, nose, mouth corners), a quality score and
    where it came from (a file name, "camera", ...)."""

    crop: np.ndarray
    landmarks: np.ndarray
    quality: float = 0.0
    source: str = ""


@dataclass
class Person:
    id: int
    name: str
    face_count: int
    created: datetime
    updated: datetime | None = None
    notes: str = ""
    flagged_count: int = 0


@dataclass(eq=False)
class FaceRecord:
    id: int
    person_id: int
    landmarks: np.ndarray  # float32 (5, 2), in crop coordinates
    quality: float
    source: str
    created: datetime
    flagged: bool


# -------------------------------------------------------------------------- helpers

def normalize_name(name: str) -> str:
    """The name as stored: NFC, surrounding and repeated white space removed."""
    if not isinstance(name, str):
        raise TypeError(f"a name is a str, got {type(name).__name__}")
    clean = " ".join(unicodedata.normalize("NFC", name).split())
    if not clean:
        raise ValueError("a name cannot be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise ValueError(f"a name is at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in clean):
        raise ValueError(f"the name {clean!r} contains control characters")
    return clean


def name_skeleton(name: str) -> str:
    """What a name looks like, whatever letters it is written with: "Аlice" with a
    Cyrillic А and "Alice" look the same (transliterated with anyascii, case-folded,
    spaces dropped). Two different names with one skeleton deserve a warning."""
    from anyascii import anyascii

    return "".join(anyascii(unicodedata.normalize("NFKC", name)).casefold().split())


def name_key(name: str) -> str:
    """What two names are compared by: "ÉMILE" and "émile" are the same person."""
    return unicodedata.normalize("NFKC", normalize_name(name)).casefold()


def _check_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError("a model id is a non-empty str")
    if len(model_id) > MAX_MODEL_ID_LENGTH:
        raise ValueError(f"a model id is at most {MAX_MODEL_ID_LENGTH} characters")
    return model_id


def _check_landmarks(landmarks) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.size != 10:
        raise ValueError(f"landmarks are 5 x 2, got shape {np.shape(landmarks)}")
    arr = arr.reshape(5, 2)
    if not np.isfinite(arr).all():
        raise ValueError("landmarks must be finite")
    return arr


def _landmarks_json(arr: np.ndarray) -> str:
    return json.dumps([[float(x), float(y)] for x, y in arr])


def _landmarks_from_json(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32).reshape(5, 2)


def _check_quality(quality) -> float:
    q = float(quality)
    if not math.isfinite(q):
        raise ValueError("a quality score must be finite")
    return q


def _as_matrix(values, rows: int | None, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 1 and rows in (None, 1):
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{what}: embeddings are N x D, got shape {np.shape(values)}")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{what}: {arr.shape[0]} embeddings for {rows} faces")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{what}: embeddings must be numbers, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype="<f4")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: embeddings must be finite")
    return arr


@contextmanager
def _immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception (a killed process
    leaves the change whole or absent)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------- gallery

def default_station() -> str:
    """The name this machine's events carry: FACEAPP_STATION, or the host name."""
    return (os.environ.get("FACEAPP_STATION") or socket.gethostname() or "station")[:100]


class Gallery(EventLog):
    """One gallery file. Thread-safe (one connection behind a lock); several
    processes may open the same file. A ``postgresql://`` location opens the same
    gallery on a server instead (gallery_server.ServerGallery)."""

    remote = False  # a server shared by stations (ServerGallery), not a file

    def __new__(cls, location=None, *args, **kwargs):
        if cls is Gallery and is_server_location(location):
            from .gallery_server import ServerGallery

            return super().__new__(ServerGallery)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT,
                 read_only: bool | None = None, station: str | None = None):
        """read_only: None opens an existing gallery read-only when this user cannot
        write it or its folder (a gallery on a CD, another user's file); reads work,
        writes raise GalleryError. station: the name its events are recorded with
        (default_station())."""
        self.station = station or default_station()
        self._path = Path(path)
        self._timeout = float(timeout)
        if read_only is None:
            read_only = self._path.exists() and not (
                os.access(self._path, os.W_OK) and os.access(self._path.parent or ".", os.W_OK))
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._db: Sql | None = None
        self.last_backup: Path | None = None  # the copy made before a migration, if any

        state = _inspect(self._path, self._timeout)
        if self.read_only:
            self._open_read_only(state)
            return
        if state.empty:
            try:
                if not self._path.exists():
                    create_private_file(self._path)
                elif stat.S_IMODE(os.stat(self._path).st_mode) & 0o077:
                    # an empty file someone prepared: owner-only before any data goes in
                    os.chmod(self._path, 0o600)
            except FileExistsError:
                state = _inspect(self._path, self._timeout)
            except OSError as exc:
                raise GalleryError(f"the gallery {self._path} cannot be created: "
                                   f"{exc.strerror}") from exc
        else:
            _tighten_permissions(self._path)
        try:
            # mode=rw: SQLite never creates the file itself (it would be 0644)
            conn = sqlite3.connect(_uri(self._path, mode="rw"), uri=True, timeout=self._timeout,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _sqlite_message(self._path, exc, self._timeout) from exc
        try:
            with _translated(self._path, self._timeout):
                self._conn = conn
                self._db = Sql(conn, SQLITE)
                conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
                conn.execute("PRAGMA secure_delete = ON")
                if state.version is not None and state.version < SCHEMA_VERSION:
                    self._migrate(state.version)
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if mode.lower() != "wal":
                        raise GalleryError(f"the gallery {self._path} cannot use WAL mode "
                                           f"(got {mode})")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA journal_size_limit = 67108864")
                if state.version is None:
                    self._initialize()
        except BaseException:
            self._conn = self._db = None
            conn.close()
            raise

    def _open_read_only(self, state: _FileState) -> None:
        if state.empty or state.version is None:
            raise GalleryError(f"the gallery {self._path} is read-only and holds no gallery "
                               "yet: it cannot be created there")
        if state.version < SCHEMA_VERSION:
            raise GalleryError(f"the gallery {self._path} needs an upgrade to this faceapp's "
                               "format, but it is read-only: open it once where it can be "
                               "written")
        sidecar = Path(f"{self._path}-shm")
        writable_folder = os.access(self._path.parent or ".", os.W_OK)
        # WAL readers need a -shm file; where none exists and none can be made (a
        # read-only folder), nobody can be writing: read the file as immutable
        params = {"mode": "ro"} if sidecar.exists() or writable_folder else {"immutable": "1"}
        try:
            conn = sqlite3.connect(_uri(self._path, **params), uri=True, timeout=self._timeout,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except sqlite3.Error as exc:
            raise _sqlite_message(self._path, exc, self._timeout) from exc
        self._conn = conn
        self._db = Sql(conn, SQLITE)

    @classmethod
    def open(cls, path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT) -> Gallery:
        return cls(path, timeout=timeout)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        with self._lock:
            conn, self._conn, self._db = self._conn, None, None
            if conn is not None:
                try:
                    conn.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                conn.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self._path)!r}{', closed' if self.closed else ''})"

    # ---------------------------------------------------------------- transactions

    def _require(self) -> tuple[sqlite3.Connection, Sql]:
        if self._conn is None or self._db is None:
            raise GalleryError(f"the gallery {self._path} is closed")
        return self._conn, self._db

    @contextmanager
    def _write(self, *, bump: bool = True,
               wait: float | None = None) -> Iterator[Sql]:
        """One write transaction. bump: the change concerns people, faces or
        embeddings, so in-memory indices must rebuild (events do not bump). wait: how
        long to wait for another program's lock (default: the gallery's timeout)."""
        with self._lock:
            conn, db = self._require()
            if self.read_only:
                raise GalleryError(f"the gallery {self._path} is read-only: nothing can be "
                                   "changed in it")
            timeout = self._timeout if wait is None else wait
            if wait is not None:
                conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                with _translated(self._path, timeout), _immediate_transaction(conn):
                    yield db
                    if bump:
                        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                                     "WHERE key = 'data_version'")
            finally:
                if wait is not None:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")

    @contextmanager
    def _read(self) -> Iterator[Sql]:
        """A read transaction: every query in it sees the same snapshot."""
        with self._lock:
            conn, db = self._require()
            with _translated(self._path, self._timeout):
                if conn.in_transaction:  # inside a _write of this thread
                    yield db
                    return
                conn.execute("BEGIN")
                try:
                    yield db
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[Gallery]:
        """Reads inside this block all see the same committed state, e.g.
        ``with g.snapshot(): v = g.data_version(); ids, pids, m = g.embeddings(model)``.
        Other processes go on writing meanwhile (WAL); this one must not write in it."""
        with self._read():
            yield self

    def _initialize(self) -> None:
        conn, db = self._require()
        with _immediate_transaction(conn):
            # another process may have set the file up since it was inspected
            version = _read_meta(db, self._path)
            if version is None:
                create_gallery(db)
                conn.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if version is not None and version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        conn, db = self._require()
        backup = _backup_path(self._path, version)
        try:
            create_private_file(backup)
            dest = sqlite3.connect(_uri(backup, mode="rw"), uri=True)
            try:
                conn.backup(dest)
            finally:
                dest.close()
            fsync_dir(backup.parent)
        except (OSError, sqlite3.Error) as exc:
            raise GalleryError(f"the gallery {self._path} needs an upgrade but its backup "
                               f"{backup} could not be written ({exc}); nothing was changed") \
                from exc
        self.last_backup = backup
        conn.execute("PRAGMA foreign_keys = OFF")  # no-op inside a transaction
        try:
            with _immediate_transaction(conn):
                current = _read_meta(db, self._path)  # another process may have migrated it
                for step in range(current, SCHEMA_VERSION):
                    MIGRATIONS[step - 1](db)
                bad = conn.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise GalleryError(f"the gallery {self._path} could not be upgraded: "
                                       f"{len(bad)} broken references; it was left at version "
                                       f"{current}, a copy is at {backup}")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                           [str(SCHEMA_VERSION)])
                conn.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            conn.execute("PRAGMA foreign_keys = ON")

    # --------------------------------------------------------------------- meta

    def schema_version(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                       .fetchone()[0])

    def data_version(self) -> int:
        """A counter that grows with every committed change to people, faces or
        embeddings, by any process (events do not count). An in-memory index keeps
        the value it was built at and rebuilds when this differs."""
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchone()
            return int(row[0]) if row else 0

    # ------------------------------------------------------------------- people

    @staticmethod
    def _person_row(row) -> Person:
        return Person(id=row[0], name=row[1], created=_parse_time(row[2]),
                      updated=_parse_time(row[3]), notes=row[4], face_count=row[5] or 0,
                      flagged_count=row[6] or 0)

    _PERSON_SQL = ("SELECT p.id, p.name, p.created, p.updated, p.notes, count(f.id), "
                   "CAST(coalesce(sum(f.flagged), 0) AS INTEGER) FROM people p "
                   "LEFT JOIN faces f ON f.person_id = p.id ")

    def _find_id(self, db: Sql, name: str) -> int | None:
        row = db.execute("SELECT id FROM people WHERE name_key = ?", [name_key(name)]).fetchone()
        return row[0] if row else None

    def _require_person(self, db: Sql, person_id) -> int:
        pid = _check_id(person_id, "person")
        if db.execute("SELECT 1 FROM people WHERE id = ?", [pid]).fetchone() is None:
            raise NotFound(f"no person with id {pid}")
        return pid

    def _insert_person(self, db: Sql, name: str, notes: str = "",
                       created: str | None = None) -> int:
        clean = normalize_name(name)
        if self._find_id(db, clean) is not None:
            raise NameTaken(f"there is already a person named {clean!r}")
        now = _fmt_time(utc_now())
        return db["people"].insert({"name": clean, "name_key": name_key(clean),
                                    "created": created or now, "updated": now,
                                    "notes": notes}).last_pk

    def confusable_names(self, name: str) -> list[str]:
        """People whose names look like `name` but are written with other letters (a
        new "Аlice" beside "Alice"): callers warn before, or after, creating it."""
        clean, skeleton = normalize_name(name), name_skeleton(name)
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT name FROM people ORDER BY id")]
        return [n for n in names if name_skeleton(n) == skeleton and name_key(n) != name_key(clean)]

    def add_person(self, name: str, notes: str = "") -> int:
        with self._write() as db:
            return self._insert_person(db, name, notes)

    def rename_person(self, person_id: int, name: str) -> None:
        """Past events keep the name they were recorded with."""
        clean = normalize_name(name)
        with self._write() as db:
            pid = self._require_person(db, person_id)
            other = self._find_id(db, clean)
            if other is not None and other != pid:
                raise NameTaken(f"there is already a person named {clean!r}")
            db["people"].update(pid, {"name": clean, "name_key": name_key(clean),
                                      "updated": _fmt_time(utc_now())})

    def set_notes(self, person_id: int, notes: str) -> None:
        if not isinstance(notes, str):
            raise TypeError("notes are a str")
        with self._write() as db:
            pid = self._require_person(db, person_id)
            db["people"].update(pid, {"notes": notes, "updated": _fmt_time(utc_now())})

    def merge_people(self, keep_id: int, absorb_id: int) -> None:
        """absorb_id's faces (with their embeddings) and events move to keep_id, its
        notes are appended, and absorb_id is deleted."""
        keep, absorb = _check_id(keep_id, "person"), _check_id(absorb_id, "person")
        if keep == absorb:
            raise ValueError("a person cannot be merged into itself")
        with self._write() as db:
            self._require_person(db, keep)
            self._require_person(db, absorb)
            # a crop both people hold stays once, with the one kept
            db.execute("DELETE FROM faces WHERE person_id = ? AND content_hash IN "
                       "(SELECT content_hash FROM faces WHERE person_id = ?)", [absorb, keep])
            db.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", [keep, absorb])
            db.execute("UPDATE events SET person_id = ? WHERE person_id = ?", [keep, absorb])
            db.execute("UPDATE sightings SET person_id = ? WHERE person_id = ?", [keep, absorb])
            notes = [r[0] for r in db.execute(
                "SELECT notes FROM people WHERE id IN (?, ?) ORDER BY id = ? DESC",
                [keep, absorb, keep])]
            merged = "\n".join(n for n in notes if n)
            db["people"].update(keep, {"notes": merged, "updated": _fmt_time(utc_now())})
            db["people"].delete(absorb)

    def delete_person(self, person_id: int, events: bool = True) -> int:
        """Deletes the person, their faces and embeddings and, with `events`, their
        events (thumbnails of their face) and their name wherever an event names them
        as nearest or runner-up: templates and face pictures are biometric data. With
        events=False their events stay, with the name they were recorded with and no
        person id. The WAL is checkpointed so the deleted rows leave it too. Returns
        the number of events deleted."""
        with self._write() as db:
            pid = self._require_person(db, person_id)
            name = db.execute("SELECT name FROM people WHERE id = ?", [pid]).fetchone()[0]
            gone = 0
            if events:
                gone = db.execute("DELETE FROM events WHERE person_id = ?", [pid]).rowcount
                for column in ("nearest", "runner_up"):
                    extra = ", runner_up_score = NULL" if column == "runner_up" else ""
                    db.execute(f"UPDATE events SET {column} = NULL{extra} WHERE {column} = ?",
                               [name])
            db["people"].delete(pid)
        self._checkpoint()
        return gone

    def set_portrait(self, person_id: int, face_id: int | None) -> None:
        """The sample shown for this person (None: their best-quality one)."""
        with self._write(bump=False) as db:
            pid = self._require_person(db, person_id)
            if face_id is not None:
                fid = self._require_face(db, face_id)
                owner = db.execute("SELECT person_id FROM faces WHERE id = ?", [fid]).fetchone()
                if owner[0] != pid:
                    raise ValueError(f"sample {fid} is not one of this person's")
                face_id = fid
            db.execute("UPDATE people SET portrait_id = ? WHERE id = ?", [face_id, pid])

    def portrait(self, person_id: int) -> int | None:
        """The sample chosen to show this person, or their best unflagged one."""
        pid = _check_id(person_id, "person")
        with self._read() as db:
            row = db.execute("SELECT portrait_id FROM people WHERE id = ?", [pid]).fetchone()
            if row is None:
                raise NotFound(f"no person with id {pid}")
            if row[0] is not None:
                return row[0]
            best = db.execute("SELECT id FROM faces WHERE person_id = ? "
                              "ORDER BY flagged, quality DESC, id LIMIT 1", [pid]).fetchone()
        return best[0] if best else None

    def _checkpoint(self) -> None:
        """Move what the WAL holds into the file (secure_delete zeroes freed pages
        there) and truncate it; best effort: a reader may hold it open."""
        conn, _ = self._require()
        with self._lock:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass

    def people(self) -> list[Person]:
        with self._read() as db:
            rows = db.execute(self._PERSON_SQL + "GROUP BY p.id ORDER BY p.name_key, p.id")
            return [self._person_row(r) for r in rows]

    def person_names(self) -> dict[int, str]:
        """Person id -> name, for everyone (what an index shows; cheaper than people())."""
        with self._read() as db:
            return dict(db.execute("SELECT id, name FROM people").fetchall())

    def person(self, person_id: int) -> Person:
        pid = _check_id(person_id, "person")
        with self._read() as db:
            row = db.execute(self._PERSON_SQL + "WHERE p.id = ? GROUP BY p.id", [pid]).fetchone()
        if row is None:
            raise NotFound(f"no person with id {pid}")
        return self._person_row(row)

    def find_person(self, name: str) -> Person | None:
        """The person with this name (compared case-insensitively), or None."""
        key = name_key(name)
        with self._read() as db:
            row = db.execute(self._PERSON_SQL + "WHERE p.name_key = ? GROUP BY p.id",
                             [key]).fetchone()
        return self._person_row(row) if row else None

    # -------------------------------------------------------------------- faces

    @staticmethod
    def _prepare(samples: Sequence[FaceSample],
                 embeddings: Mapping[str, np.ndarray] | None) -> tuple[list[dict], dict]:
        """Encode and check everything before the transaction starts."""
        if isinstance(samples, FaceSample):
            samples = [samples]
        rows = []
        for i, s in enumerate(samples):
            if not isinstance(s, FaceSample):
                raise TypeError(f"sample {i} is a {type(s).__name__}, not a FaceSample")
            if not isinstance(s.source, str):
                raise TypeError(f"sample {i}: source is a str")
            rows.append({"crop": encode_crop(s.crop),
                         "landmarks": _landmarks_json(_check_landmarks(s.landmarks)),
                         "quality": _check_quality(s.quality), "source": s.source,
                         "content_hash": crop_digest(s.crop)})
        vectors = {}
        for model_id, matrix in (embeddings or {}).items():
            vectors[_check_model_id(model_id)] = _as_matrix(matrix, len(rows), model_id)
        return rows, vectors

    def _check_dim(self, db: Sql, model_id: str, dim: int) -> None:
        row = db.execute("SELECT dim FROM embeddings WHERE model_id = ? AND dim != ? LIMIT 1",
                         [model_id, dim]).fetchone()
        if row is not None and row[0] != dim:
            raise GalleryError(f"model {model_id!r} has {row[0]}-d embeddings in the gallery, "
                               f"not {dim}-d; drop_embeddings({model_id!r}) first")

    def _insert_faces(self, db: Sql, person_id: int, rows: list[dict],
                      vectors: dict[str, np.ndarray]) -> list[int | None]:
        """The new faces' ids, in the order of rows; None where the person already has
        that crop (the unique index decides, so two imports at once cannot both add
        it)."""
        now = _fmt_time(utc_now())
        face_ids: list[int | None] = []
        for row in rows:
            record = {"person_id": person_id, "created": now, "flagged": 0, **row}
            columns = ", ".join(record)
            found = db.execute(
                f"INSERT INTO faces({columns}) VALUES ({', '.join('?' * len(record))}) "
                "ON CONFLICT(person_id, content_hash) DO NOTHING RETURNING id",
                list(record.values())).fetchone()
            face_ids.append(found[0] if found else None)
        for model_id, matrix in vectors.items():
            self._check_dim(db, model_id, matrix.shape[1])
            db.executemany(
                "INSERT INTO embeddings(face_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
                [(fid, model_id, matrix.shape[1], vec.tobytes())
                 for fid, vec in zip(face_ids, matrix) if fid is not None])
        if any(fid is not None for fid in face_ids):
            db["people"].update(person_id, {"updated": now})
        return face_ids

    def enroll(self, name_or_person_id: str | int, samples: Sequence[FaceSample],
               embeddings: Mapping[str, np.ndarray] | None = None) -> tuple[int, list[int]]:
        """Add faces (and their embeddings: model id -> N x D, one row per sample) to a
        person, creating the person when the name is new. One transaction: after a
        crash the person is there with all these faces, or none of it is."""
        rows, vectors = self._prepare(samples, embeddings)
        with self._write() as db:
            if isinstance(name_or_person_id, str):
                pid = self._find_id(db, name_or_person_id)
                if pid is None:
                    pid = self._insert_person(db, name_or_person_id)
            else:
                pid = self._require_person(db, name_or_person_id)
            return pid, [f for f in self._insert_faces(db, pid, rows, vectors) if f is not None]

    def add_faces(self, person_id: int, samples: Sequence[FaceSample],
                  embeddings: Mapping[str, np.ndarray] | None = None) -> list[int]:
        rows, vectors = self._prepare(samples, embeddings)
        with self._write() as db:
            pid = self._require_person(db, person_id)
            return [f for f in self._insert_faces(db, pid, rows, vectors) if f is not None]

    def _require_face(self, db: Sql, face_id) -> int:
        fid = _check_id(face_id, "face")
        if db.execute("SELECT 1 FROM faces WHERE id = ?", [fid]).fetchone() is None:
            raise NotFound(f"no face with id {fid}")
        return fid

    def remove_face(self, face_id: int) -> None:
        with self._write() as db:
            fid = self._require_face(db, face_id)
            db["faces"].delete(fid)

    def flag_face(self, face_id: int, flagged: bool = True) -> None:
        """Mark a face as "this was not that person": it stays stored but its
        embeddings are left out of embeddings()."""
        with self._write() as db:
            fid = self._require_face(db, face_id)
            db["faces"].update(fid, {"flagged": int(bool(flagged))})

    def faces(self, person_id: int) -> list[FaceRecord]:
        with self._read() as db:
            pid = self._require_person(db, person_id)
            rows = db.execute("SELECT id, person_id, landmarks, quality, source, created, "
                              "flagged FROM faces WHERE person_id = ? ORDER BY id", [pid])
            return [FaceRecord(id=r[0], person_id=r[1], landmarks=_landmarks_from_json(r[2]),
                               quality=r[3], source=r[4], created=_parse_time(r[5]),
                               flagged=bool(r[6])) for r in rows]

    def face_crop(self, face_id: int) -> np.ndarray:
        fid = _check_id(face_id, "face")
        with self._read() as db:
            row = db.execute("SELECT crop FROM faces WHERE id = ?", [fid]).fetchone()
        if row is None:
            raise NotFound(f"no face with id {fid}")
        try:
            return decode_crop(row[0])
        except ValueError as exc:
            raise GalleryError(f"face {fid} in {self._path} is damaged: {exc}") from None

    def face_sample(self, face_id: int) -> FaceSample:
        fid = _check_id(face_id, "face")
        with self._read() as db:
            row = db.execute("SELECT crop, landmarks, quality, source FROM faces WHERE id = ?",
                             [fid]).fetchone()
        if row is None:
            raise NotFound(f"no face with id {fid}")
        try:
            crop = decode_crop(row[0])
        except ValueError as exc:
            raise GalleryError(f"face {fid} in {self._path} is damaged: {exc}") from None
        return FaceSample(crop=crop, landmarks=_landmarks_from_json(row[1]), quality=row[2],
                          source=row[3])

    def face_count(self) -> int:
        with self._read() as db:
            return db.execute("SELECT count(*) FROM faces").fetchone()[0]

    # --------------------------------------------------------------- embeddings

    def set_embeddings(self, model_id: str, vectors: Mapping[int, np.ndarray]) -> None:
        """Store (or replace) one model's embedding of each given face."""
        model_id = _check_model_id(model_id)
        ids = [_check_id(k, "face") for k in vectors]
        if not ids:
            return
        flat = [np.asarray(v).reshape(-1) for v in vectors.values()]
        if len({v.size for v in flat}) != 1:
            raise ValueError(f"{model_id}: the embeddings have different sizes")
        matrix = _as_matrix(np.stack(flat), len(ids), model_id)
        dim = matrix.shape[1]
        with self._write() as db:
            self._check_dim(db, model_id, dim)
            for fid in ids:
                self._require_face(db, fid)
            db.executemany(
                "INSERT INTO embeddings(face_id, model_id, dim, vector) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(face_id, model_id) DO UPDATE SET dim = excluded.dim, "
                "vector = excluded.vector",
                [(fid, model_id, dim, vec.tobytes()) for fid, vec in zip(ids, matrix)])

    def embeddings(self, model_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face ids int64[N], person ids int64[N], float32[N, D]) of the unflagged
        faces that have an embedding from this model, ordered by face id."""
        model_id = _check_model_id(model_id)
        with self._read() as db:
            rows = db.execute(
                "SELECT e.face_id, f.person_id, e.dim, e.vector FROM embeddings e "
                "JOIN faces f ON f.id = e.face_id "
                "WHERE e.model_id = ? AND f.flagged = 0 ORDER BY e.face_id", [model_id]
            ).fetchall()
        if not rows:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros((0, 0), np.float32))
        dims = {r[2] for r in rows}
        if len(dims) != 1:
            raise GalleryError(f"model {model_id!r} has embeddings of several sizes "
                               f"{sorted(dims)} in {self._path}")
        dim = dims.pop()
        matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f4")
        if matrix.size != dim * len(rows):
            raise GalleryError(f"model {model_id!r}: damaged embeddings in {self._path}")
        return (np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                np.fromiter((r[1] for r in rows), np.int64, len(rows)),
                matrix.reshape(len(rows), dim).astype(np.float32))

    def template_counts(self, model_id: str) -> tuple[int, int]:
        """(people, samples) the index of this model would hold: what the operating
        point is resolved for."""
        model_id = _check_model_id(model_id)
        with self._read() as db:
            people, samples = db.execute(
                "SELECT count(DISTINCT f.person_id), count(*) FROM embeddings e "
                "JOIN faces f ON f.id = e.face_id WHERE e.model_id = ? AND f.flagged = 0",
                [model_id]).fetchone()
        return int(people), int(samples)

    def faces_missing_embeddings(self, model_id: str) -> list[int]:
        """Faces (flagged ones too) with no embedding from this model."""
        model_id = _check_model_id(model_id)
        with self._read() as db:
            return [r[0] for r in db.execute(
                "SELECT id FROM faces WHERE id NOT IN "
                "(SELECT face_id FROM embeddings WHERE model_id = ?) ORDER BY id", [model_id])]

    def drop_embeddings(self, model_id: str) -> int:
        model_id = _check_model_id(model_id)
        with self._write() as db:
            return db.execute("DELETE FROM embeddings WHERE model_id = ?", [model_id]).rowcount

    def models(self) -> dict[str, int]:
        with self._read() as db:
            return dict(db.execute("SELECT model_id, count(*) FROM embeddings "
                                   "GROUP BY model_id ORDER BY model_id").fetchall())
