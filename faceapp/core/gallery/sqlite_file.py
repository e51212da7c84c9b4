"""A gallery in one SQLite file: how it is opened, created, migrated and written.

Face templates are biometric data. The file is created owner-only (0600) before
SQLite ever touches it; SQLite gives its -wal and -shm files the mode of the
database file, and backups are created 0600 too. Deleted rows are overwritten
(``secure_delete``) and checkpointed out of the WAL.

Opening a file never changes it unless it is recognised as a gallery this code can
use: random bytes, a truncated file, another program's SQLite database and a
gallery written by a newer faceapp are refused with GalleryError before any write
(files.py). An older gallery is first copied to ``<name>.v<old>.bak`` and then
migrated in one transaction by the functions in schema.MIGRATIONS.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a killed process leaves
each enrollment either whole or absent; WAL lets other processes read meanwhile.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import GalleryError
from .files import (FileState, backup_path, create_private_file, fsync_dir, inspect,
                    read_meta, sqlite_message, tighten_permissions, translated, uri, LIVE_FILES)
from .records import default_station
from .schema import MIGRATIONS, SCHEMA_VERSION, SQLITE_APPLICATION_ID, create_gallery
from .sql import SQLITE, Sql
from .store import GalleryStore

DEFAULT_TIMEOUT = 10.0


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


class Gallery(GalleryStore):
    """One gallery file. Thread-safe (one connection behind a lock); several
    processes may open the same file."""

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
        self._live_key: tuple[int, int] | None = None
        # Opens in this process are one at a time: a file another thread has a
        # connection to is only ever read through SQLite (LiveFiles).
        with LIVE_FILES.lock:
            self._open_file()
            self._live_key = LIVE_FILES.key(self._path)
            if self._live_key is not None:
                LIVE_FILES.add(self._live_key)

    def _open_file(self) -> None:
        state = inspect(self._path, self._timeout, live=LIVE_FILES.holds(self._path))
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
                state = inspect(self._path, self._timeout, live=LIVE_FILES.holds(self._path))
            except OSError as exc:
                raise GalleryError(f"the gallery {self._path} cannot be created: "
                                   f"{exc.strerror}") from exc
        else:
            tighten_permissions(self._path)
        try:
            # mode=rw: SQLite never creates the file itself (it would be 0644)
            conn = sqlite3.connect(uri(self._path, mode="rw"), uri=True, timeout=self._timeout,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise sqlite_message(self._path, exc, self._timeout) from exc
        try:
            with translated(self._path, self._timeout):
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

    def _open_read_only(self, state: FileState) -> None:
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
            conn = sqlite3.connect(uri(self._path, **params), uri=True, timeout=self._timeout,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except sqlite3.Error as exc:
            raise sqlite_message(self._path, exc, self._timeout) from exc
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
                LIVE_FILES.remove(self._live_key)
                self._live_key = None

    def __repr__(self) -> str:
        return f"Gallery({str(self._path)!r}{', closed' if self.closed else ''})"

    # ---------------------------------------------------------------- transactions

    def _require(self) -> tuple[sqlite3.Connection, Sql]:
        if self._conn is None or self._db is None:
            raise GalleryError(f"the gallery {self._path} is closed")
        return self._conn, self._db

    @contextmanager
    def writing(self, *, bump: bool = True,
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
                with translated(self._path, timeout), _immediate_transaction(conn):
                    yield db
                    if bump:
                        conn.execute("UPDATE gallery_state SET value = CAST(value AS INTEGER) + 1 "
                                     "WHERE key = 'data_version'")
            finally:
                if wait is not None:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        """A read transaction: every query in it sees the same snapshot."""
        with self._lock:
            conn, db = self._require()
            with translated(self._path, self._timeout):
                if conn.in_transaction:  # inside a _write of this thread
                    yield db
                    return
                conn.execute("BEGIN")
                try:
                    yield db
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")

    def _initialize(self) -> None:
        conn, db = self._require()
        with _immediate_transaction(conn):
            # another process may have set the file up since it was inspected
            version = read_meta(db, self._path)
            if version is None:
                create_gallery(db)
                conn.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if version is not None and version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        conn, db = self._require()
        backup = backup_path(self._path, version)
        try:
            create_private_file(backup)
            dest = sqlite3.connect(uri(backup, mode="rw"), uri=True)
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
                current = read_meta(db, self._path)  # another process may have migrated it
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

    def checkpoint(self) -> None:
        """Move what the WAL holds into the file (secure_delete zeroes freed pages
        there) and truncate it; best effort: a reader may hold it open."""
        conn, _ = self._require()
        with self._lock:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
