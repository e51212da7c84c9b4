"""The gallery on a PostgreSQL server, shared by several stations (psycopg 3).

Same schema, same API and the same SQL as a gallery file (``open_gallery`` picks
this class for a ``postgresql://`` location). What differs is only how a transaction is
run and what can go wrong:

- Writers take one transaction-level advisory lock first, so writes are serial, as
  with SQLite's ``BEGIN IMMEDIATE``: a station reads, decides and writes with nobody
  in between. The unique constraints (a name, a sample per person, an event's uid)
  are still the database's, whatever a client does.
- Reads run as one REPEATABLE READ transaction: a snapshot, as in a file.
- Credentials come from libpq's usual places (``~/.pgpass``, ``PGPASSFILE``,
  ``PGSERVICEFILE`` / ``?service=``) or the URL; TLS from ``sslmode``. A location is
  shown and kept without its password.
- The server gone is ``GalleryUnavailable``. The connection is made again on the next
  use, at most every ``RECONNECT_PAUSE`` seconds, so that a station whose server is
  away does not wait on every frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from .errors import GalleryError, GalleryLocked, GalleryUnavailable
from .records import default_station
from .schema import MIGRATIONS, SCHEMA_VERSION, check_meta, create_gallery
from .sql import POSTGRESQL, Sql
from .store import GalleryStore

DEFAULT_TIMEOUT = 10.0

WRITE_LOCK = 0x46414347  # the advisory lock every write takes ("FACG")
FIRST_SERVER_VERSION = 6  # galleries on a server start at schema v6
CONNECT_TIMEOUT = 5


def display_location(url: str) -> str:
    """The location without its password: what messages, logs and settings show."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise GalleryError(f"the gallery location is not a valid PostgreSQL URL: {exc}") \
            from None
    user = params.get("user", "")
    host = params.get("host", "")
    port = params.get("port")
    where = f"{user + '@' if user else ''}{host if '/' not in host else ''}"
    where += f":{port}" if port and '/' not in host else ""
    shown = f"postgresql://{where}/{params.get('dbname', '')}"
    extras = [f"{k}={params[k]}" for k in ("service", "sslmode") if k in params]
    if "/" in host:
        extras.insert(0, f"host={host}")
    return shown + ("?" + "&".join(extras) if extras else "")


class ServerGallery(GalleryStore):
    """One gallery in a PostgreSQL database. Thread-safe (one connection behind a
    lock); any number of stations may use the same database."""

    remote = True
    RECONNECT_PAUSE = 2.0

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 read_only: bool | None = None, station: str | None = None):
        self._url = url
        self._path = display_location(url)  # only ever shown, never opened
        self._timeout = float(timeout)
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._db: Sql | None = None
        self._closed = False
        self._next_attempt = 0.0
        self.last_backup = None  # a server is backed up with pg_dump, not by faceapp
        self.station = station or default_station()
        self._connect()
        self._open()

    # ---------------------------------------------------------------- connection

    def _connect(self) -> None:
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name=f"faceapp {self.station}"[:63])
        except psycopg.OperationalError as exc:
            self._next_attempt = time.monotonic() + self.RECONNECT_PAUSE
            text = _first_line(exc)
            if any(words in text for words in _REFUSED):
                # the server answered: waiting will not help, the settings must change
                raise GalleryError(f"the gallery server {self._path} refused this station: "
                                   f"{text} (the password goes in ~/.pgpass or a service "
                                   "file)") from None
            raise GalleryUnavailable(f"the gallery server {self._path} cannot be reached: "
                                     f"{text}") from None
        self._conn, self._db = conn, Sql(conn, POSTGRESQL)

    def _require(self) -> tuple[psycopg.Connection, Sql]:
        if self._closed:
            raise GalleryError(f"the gallery {self._path} is closed")
        if self._conn is None or self._conn.closed or self._conn.broken:
            if time.monotonic() < self._next_attempt:
                raise GalleryUnavailable(f"the gallery server {self._path} cannot be "
                                         "reached (trying again shortly)")
            if self._conn is not None:
                self._conn.close()
            self._conn = self._db = None
            self._connect()
        return self._conn, self._db

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn, self._db = self._conn, None, None
            if conn is not None:
                conn.close()

    def __repr__(self) -> str:
        return f"ServerGallery({self._path!r}{', closed' if self._closed else ''})"

    @property
    def path(self) -> str:
        return self._path

    # -------------------------------------------------------------- transactions

    @contextmanager
    def _translated(self, timeout: float) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise self._message(exc, timeout) from exc

    def _message(self, exc: psycopg.Error, timeout: float) -> GalleryError:
        text = _first_line(exc)
        if isinstance(exc, pg_errors.LockNotAvailable):
            return GalleryLocked(f"the gallery {self._path} is locked by another program "
                                 f"(a station writing; waited {timeout:g} s); try again")
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return GalleryError(f"the gallery {self._path} refused the change: this role may "
                                f"not do it ({text})")
        if isinstance(exc, psycopg.IntegrityError):
            return GalleryError(f"the gallery {self._path} refused the change: {text}")
        conn = self._conn
        if isinstance(exc, psycopg.OperationalError) and (
                conn is None or conn.closed or conn.broken
                or (exc.sqlstate or "").startswith(("08", "57P"))):
            self._next_attempt = time.monotonic() + self.RECONNECT_PAUSE
            return GalleryUnavailable(f"the gallery server {self._path} cannot be reached: "
                                      f"{text}")
        return GalleryError(f"the gallery {self._path} could not be used: {text}")

    @contextmanager
    def writing(self, *, bump: bool = True, wait: float | None = None) -> Iterator[Sql]:
        with self._lock:
            if self.read_only:
                raise GalleryError(f"the gallery {self._path} is read-only: nothing can be "
                                   "changed in it")
            timeout = self._timeout if wait is None else wait
            with self._translated(timeout):
                conn, db = self._require()
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    raise GalleryError("a gallery write cannot start inside a read")
                with conn.transaction():
                    db.execute(f"SET LOCAL lock_timeout = {max(1, int(timeout * 1000))}")
                    db.execute("SELECT pg_advisory_xact_lock(?)", [WRITE_LOCK])
                    yield db
                    if bump:
                        db.execute("UPDATE gallery_state SET value = CAST(CAST(value AS BIGINT) + 1 "
                                   "AS TEXT) WHERE key = 'data_version'")

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        with self._lock:
            with self._translated(self._timeout):
                conn, db = self._require()
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    yield db  # inside a _write or a snapshot of this thread
                    return
                with conn.transaction():
                    db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield db

    def checkpoint(self) -> None:
        """Nothing to do: the server keeps no deleted rows in a file of ours (VACUUM
        reclaims them on its own schedule)."""

    # -------------------------------------------------------------- schema

    def _version(self, db: Sql) -> int | None:
        """The schema version of the gallery in this database; None when it holds
        nothing yet. Another program's tables, or a newer gallery, are refused."""
        tables = db.table_names()
        if not tables:
            return None
        if "meta" not in tables:
            listed = ", ".join(tables[:6]) + (", ..." if len(tables) > 6 else "")
            raise GalleryError(f"{self._path} is not a faceapp gallery: the database holds "
                               f"another program's tables ({listed})")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return check_meta(meta, self._path)

    def _open(self) -> None:
        with self.reading() as db:
            version = self._version(db)
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise GalleryError(f"the gallery {self._path} is read-only and "
                               + ("holds no gallery yet" if version is None
                                  else f"needs an upgrade from version {version}"))
        with self.writing(bump=False) as db:
            version = self._version(db)  # another station may have done it meanwhile
            if version is None:
                create_gallery(db)
                return
            if version < FIRST_SERVER_VERSION:
                raise GalleryError(f"the gallery {self._path} has schema version {version}, "
                                   "which no faceapp wrote on a server")
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step - 1](db)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                       [str(SCHEMA_VERSION)])


# libpq's words when the server is there but says no (not worth waiting for)
_REFUSED = ("authentication failed", "no password supplied", "does not exist",
            "no pg_hba.conf entry", "permission denied")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# The privileges a station needs: it reads and changes rows, never the tables, and
# only reads meta (the schema version and the gallery's identity): the counters it
# changes live in gallery_state. The owner (who created the gallery: the first faceapp
# run with that role) alone can change or drop tables, writes meta, and runs the
# migrations of a newer faceapp.
STATION_PRIVILEGES = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.meta FROM {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
)


def grant_station(gallery: ServerGallery, role: str) -> None:
    """Give a station role what it needs on this gallery's database, run as the
    gallery's owner (`faceapp --db URL grant-station ROLE`)."""
    from psycopg import sql

    if not isinstance(gallery, ServerGallery):
        raise GalleryError("grant-station is for a gallery on a server")
    with gallery.writing(bump=False) as db:
        schema = db.execute("SELECT current_schema()").fetchone()[0]
        for statement in STATION_PRIVILEGES:
            db.conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema),
                                                      role=sql.Identifier(role)))
