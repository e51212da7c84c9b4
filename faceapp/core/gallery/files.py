"""The gallery file itself: recognising it before anything is written (an SQLite file,
one of ours, not damaged, not another program's, not newer), keeping it owner-only,
SQLite's errors as messages a person can act on, and private atomic file writes.
"""

from __future__ import annotations

import glob
import os
import sqlite3
import stat
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import GalleryError, GalleryLocked
from .schema import SQLITE_APPLICATION_ID, check_meta
from .sql import SQLITE, Sql
_SQLITE_MAGIC = b"SQLite format 3\x00"


def uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{urllib.parse.quote(str(path.absolute()))}?{query}"


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only, failing if it exists."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sqlite_message(path: Path, exc: sqlite3.Error, timeout: float) -> GalleryError:
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return GalleryLocked(f"the gallery {path} is locked by another program "
                             f"(waited {timeout:g} s); close the other program or try again")
    if isinstance(exc, sqlite3.IntegrityError):
        return GalleryError(f"the gallery {path} refused the change: {text}")
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return GalleryError(f"the gallery {path} is damaged ({text}); restore it from an "
                            "export or a backup")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) \
            and not isinstance(exc, sqlite3.ProgrammingError):
        return GalleryError(f"the gallery {path} is damaged ({text})")
    return GalleryError(f"the gallery {path} could not be used: {text}")


@contextmanager
def translated(path: Path, timeout: float) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise sqlite_message(path, exc, timeout) from exc


# ------------------------------------------------------------------ file inspection

@dataclass
class FileState:
    empty: bool  # nothing in it yet: becomes a new gallery
    version: int | None = None


def _read_header(path: Path) -> tuple[bytes, int]:
    # O_NONBLOCK: a FIFO put in the gallery's place must not hang the open
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "it is not a regular file")
        return os.pread(fd, 100, 0), st.st_size
    finally:
        os.close(fd)


def _check_header(path: Path, header: bytes, size: int) -> None:
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise GalleryError(f"{path} is not a faceapp gallery: it is not an SQLite "
                           "database (damaged, or another kind of file)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise GalleryError(f"the gallery {path} is damaged: its header is invalid")
    if size % page_size:
        raise GalleryError(f"the gallery {path} is damaged: it is truncated "
                           f"({size} bytes is not a whole number of {page_size}-byte pages)")
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and pages * page_size > size:
        raise GalleryError(f"the gallery {path} is damaged: it is truncated "
                           f"({size} of {pages * page_size} bytes)")


def read_meta(db: Sql, path: Path) -> int | None:
    """The schema version of a gallery; None for a database with nothing in it.
    Raises GalleryError for anything that is not a gallery this code can open."""
    tables = db.table_names()
    if not tables and not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        user_version = db.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, SQLITE_APPLICATION_ID) or user_version != 0:
            # another program's database that has no tables yet: not ours to take
            raise GalleryError(f"{path} is not a faceapp gallery: it is another program's "
                               f"SQLite database (application id {app_id}, version "
                               f"{user_version}, no tables yet)")
        return None  # a bare SQLite file (or one of ours cut short while it was created)
    if "meta" not in tables:
        listed = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
        raise GalleryError(f"{path} is not a faceapp gallery: it is another program's SQLite "
                           f"database (tables: {listed or 'none'})")
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError as exc:
        raise GalleryError(f"{path} is not a faceapp gallery: its meta table is "
                           f"unreadable ({exc})") from exc
    return check_meta(meta, path)


# ------------------------------------------------------------ files open in this process

class LiveFiles:
    """The gallery files this process holds SQLite connections to, by (device, inode).

    SQLite's locks on a file are POSIX locks, which belong to the process: closing ANY
    descriptor of the file drops all of them, and another process then believes it
    is the last user, checkpoints and deletes the -wal this one is still writing
    ("How To Corrupt An SQLite Database File", 2.2). So the file's header is read with
    a plain descriptor only while no connection to it is live here, and outputs are
    never written over a live file. Register before connecting, under `lock`."""

    def __init__(self):
        self.lock = threading.RLock()
        self._count: dict[tuple[int, int], int] = {}

    @staticmethod
    def key(path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)  # a stat opens no descriptor
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def add(self, key: tuple[int, int]) -> None:
        with self.lock:
            self._count[key] = self._count.get(key, 0) + 1

    def remove(self, key: tuple[int, int] | None) -> None:
        with self.lock:
            if key in self._count:
                self._count[key] -= 1
                if self._count[key] <= 0:
                    del self._count[key]

    def holds(self, path) -> bool:
        """Whether this process has a connection to path's file (or path is that
        file's -wal, -shm or -journal)."""
        path = Path(path)
        candidates = [path]
        for suffix in ("-wal", "-shm", "-journal"):
            if path.name.endswith(suffix):
                candidates.append(path.with_name(path.name[: -len(suffix)]))
        with self.lock:
            return any((k := self.key(p)) is not None and k in self._count for p in candidates)


LIVE_FILES = LiveFiles()


def inspect(path: Path, timeout: float, *, live: bool = False) -> FileState:
    """Look at an existing file without changing it. live: this process already has
    a connection to it, so its bytes are read only through SQLite (see LiveFiles)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return FileState(empty=True)
    except OSError as exc:
        raise GalleryError(f"the gallery {path} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise GalleryError(f"{path} is not a file")
    if not live:
        try:
            header, size = _read_header(path)
        except OSError as exc:
            raise GalleryError(f"the gallery {path} cannot be read: {exc.strerror}") from exc
        if size == 0:
            return FileState(empty=True)
        _check_header(path, header, size)
    elif st.st_size == 0:
        return FileState(empty=True)

    sidecars = [Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal")]
    quiet = not live and not any(p.exists() for p in sidecars)
    # A file that no one has open is read as immutable: SQLite then creates no -wal
    # or -shm beside it. If it changed meanwhile, it is read again the normal way.
    attempts = [("immutable", "1"), ("mode", "ro")] if quiet else [("mode", "ro")]
    for n, (key, value) in enumerate(attempts):
        try:
            conn = sqlite3.connect(uri(path, **{key: value}), uri=True, timeout=timeout,
                                   isolation_level=None)
        except sqlite3.Error as exc:
            raise sqlite_message(path, exc, timeout) from exc
        try:
            db = Sql(conn, SQLITE)
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise GalleryError(f"the gallery {path} is damaged ({check}); restore it "
                                   "from an export or a backup")
            return FileState(empty=False, version=read_meta(db, path))
        except sqlite3.Error as exc:
            changed = False
            try:
                st2 = os.stat(path)
                changed = (st2.st_size, st2.st_mtime_ns) != (st.st_size, st.st_mtime_ns) \
                    or any(p.exists() for p in sidecars)
            except OSError:
                pass
            if n + 1 < len(attempts) and changed:
                continue
            raise sqlite_message(path, exc, timeout) from exc
        finally:
            conn.close()
    raise AssertionError("unreachable")


def tighten_permissions(path: Path) -> None:
    """An existing gallery (and its -wal and -shm) readable by others becomes
    owner-only: it holds biometric data. Files of another user, or on a read-only
    medium, are left as they are."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = os.stat(file)
            if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(file, stat.S_IMODE(info.st_mode) & 0o700)
        except OSError:
            continue


def backup_path(path: Path, version: int) -> Path:
    candidate = path.with_name(f"{path.name}.v{version}.bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.v{version}.{n}.bak")
        n += 1
    return candidate


STALE_TEMP_SECONDS = 3600


def _remove_stale_temp_files(folder: Path, name: str) -> None:
    """Temp files of an earlier write of this file that was killed (SIGKILL, power
    cut) are removed; a recent one may belong to a write still running elsewhere."""
    now = time.time()
    for leftover in folder.glob(f".{glob.escape(name)}.*.tmp"):
        try:
            if now - leftover.stat().st_mtime > STALE_TEMP_SECONDS:
                leftover.unlink()
        except OSError:
            continue


def is_sqlite_file(path) -> bool:
    """Whether path is an SQLite database (a gallery, a station's spool, another
    program's): read by its header, so never call it on a file open in this process
    (LIVE_FILES.holds)."""
    try:
        header, _ = _read_header(Path(path))
    except OSError:
        return False
    return header.startswith(_SQLITE_MAGIC)


def check_output_path(path, *, overwrite: bool = False, what: str = "the output") -> Path:
    """Refuse to write an output (an export, a CSV) over a gallery: the one this
    process has open, always; any other SQLite database unless overwrite is given."""
    path = Path(path)
    if LIVE_FILES.holds(path):
        raise GalleryError(f"{path} is the gallery in use: {what} cannot be written over it; "
                           "choose another file name")
    if path.exists() and is_sqlite_file(path) and not overwrite:
        raise GalleryError(f"{path} is a database (a gallery?): {what} would replace it; "
                           "choose another file name, or confirm replacing it")
    return path


def write_private_file(path: Path, data: bytes | Callable[[object], None]) -> None:
    """Atomically replace path with data, owner-only from the first byte: a 0600 temp
    file in the same folder, fsync, os.replace, fsync of the folder. data may be a
    function writing to the open binary file. A gallery open in this process is never
    replaced (check_output_path)."""
    path = Path(path)
    if LIVE_FILES.holds(path):
        raise GalleryError(f"{path} is the gallery in use: it cannot be replaced")
    folder = path.parent if str(path.parent) else Path(".")
    _remove_stale_temp_files(folder, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
