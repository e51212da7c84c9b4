"""The gallery file and its exports: real SQLite files, real photo crops, real
subprocesses for crashes, locks and concurrent readers."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceapp.core.archive import (ArchiveError, NameClash, WrongPassphrase, export_gallery,
                                  import_gallery)
from faceapp.core.gallery import (
    SCHEMA_VERSION,
    EventDetails,
    FaceSample,
    Gallery,
    GalleryError,
    GalleryLocked,
    NameTaken,
    NotFound,
    connect,
    encode_crop,
)
from faceapp.core.imageio import load_image

WORKER = Path(__file__).parent / "helpers" / "gallery_worker.py"
# the worker's own crops and embeddings, to check what it wrote against
_spec = importlib.util.spec_from_file_location("gallery_worker", WORKER)
gallery_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gallery_worker)

PHOTO_NAMES = ("img1.jpg", "img2.jpg", "img3.jpg", "img5.jpg", "img6.jpg", "couple.jpg")


# ------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def crops(photos) -> list[np.ndarray]:
    """Regions of real photos, of a few different sizes (H x W x 3 uint8 RGB)."""
    out = []
    for i, name in enumerate(PHOTO_NAMES):
        image = load_image(photos / name)
        h, w = image.shape[:2]
        ch, cw = 112 + 8 * i, 112 + 4 * (i % 3)
        y, x = (h - ch) // 2 - 20 * i, (w - cw) // 2 + 10 * i
        out.append(np.ascontiguousarray(image[y:y + ch, x:x + cw]))
    assert len({c.tobytes() for c in out}) == len(out)
    return out


def sample(crop: np.ndarray, k: int = 0, source: str = "") -> FaceSample:
    lm = np.array([[38, 50], [74, 50], [56, 70], [42, 90], [70, 90]], np.float32) + k * 0.25
    return FaceSample(crop=crop, landmarks=lm, quality=0.5 + k / 100, source=source or f"s{k}")


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def gallery(new_location):
    """A new gallery on each backend: a file, and a database on a PostgreSQL server."""
    with connect(new_location()) as g:
        yield g


@pytest.fixture
def open_umask():
    """umask 0: files come out 0600 because they are created so, not thanks to the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state(g: Gallery) -> tuple:
    """Everything an import could change."""
    models = g.models()
    return ([(p.id, p.name, p.face_count, p.flagged_count, p.notes) for p in g.people()],
            models, g.face_count(), g.data_version(),
            {m: [a.tobytes() for a in g.embeddings(m)] for m in models})


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}): {proc.stderr.read()}")
    raise AssertionError(f"worker never printed {prefix!r}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


# ----------------------------------------------------------------------------- CRUD

def test_new_gallery_file_and_sidecars_are_owner_only(tmp_path, open_umask, crops):
    path = tmp_path / "g.db"
    with connect(path) as g:
        assert g.path == path
        g.enroll("Ada", [sample(crops[0])], {"m": vectors(1, 8, 0)})
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert wal.exists() and shm.exists(), "the gallery should be in WAL mode"
        assert {p.name: mode(p) for p in (path, wal, shm)} == \
            {"g.db": 0o600, "g.db-wal": 0o600, "g.db-shm": 0o600}
        g.export_events_csv(tmp_path / "events.csv")
        assert mode(tmp_path / "events.csv") == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            == (str(SCHEMA_VERSION),)


def test_people_names_are_unique_case_insensitively(gallery):
    bob = gallery.add_person("  Bob   Smith ")
    assert gallery.person(bob).name == "Bob Smith"
    with pytest.raises(NameTaken):
        gallery.add_person("bob smith")
    emile = gallery.add_person("Émile")
    with pytest.raises(NameTaken):
        gallery.add_person("ÉMILE")
    assert gallery.find_person("émile").id == emile
    assert gallery.find_person("nobody") is None
    with pytest.raises(NameTaken):
        gallery.rename_person(emile, "BOB SMITH")
    gallery.rename_person(emile, "Emil")
    gallery.rename_person(bob, "BOB SMITH")  # a change of case of one's own name is fine
    assert [p.name for p in gallery.people()] == ["BOB SMITH", "Emil"]
    with pytest.raises(ValueError):
        gallery.add_person("   ")
    with pytest.raises(NotFound):
        gallery.person(9999)
    with pytest.raises(NotFound):
        gallery.rename_person(9999, "X")


def test_enroll_stores_crops_landmarks_and_embeddings(gallery, crops):
    samples = [sample(crops[0], 0, "a.jpg"), sample(crops[1], 1, "b.jpg")]
    emb = {"m128": vectors(2, 128, 1), "m64": vectors(2, 64, 2)}
    pid, fids = gallery.enroll("Ada", samples, emb)
    assert len(fids) == 2 and gallery.person(pid).face_count == 2
    for fid, s in zip(fids, samples):
        crop = gallery.face_crop(fid)
        assert crop.dtype == np.uint8 and crop.shape == s.crop.shape
        np.testing.assert_array_equal(crop, s.crop)  # lossless, RGB order kept
        back = gallery.face_sample(fid)
        np.testing.assert_array_equal(back.crop, s.crop)
        np.testing.assert_array_equal(back.landmarks, s.landmarks)
        assert back.quality == pytest.approx(s.quality) and back.source == s.source
    records = gallery.faces(pid)
    assert [r.id for r in records] == fids and not any(r.flagged for r in records)
    assert records[1].landmarks.shape == (5, 2) and records[1].source == "b.jpg"

    # the same name again adds to that person; so does the id
    pid2, fids2 = gallery.enroll("ada", [sample(crops[2])], {"m128": vectors(1, 128, 3)})
    pid3, fids3 = gallery.enroll(pid, [sample(crops[3])], {"m128": vectors(1, 128, 4)})
    assert pid2 == pid3 == pid and gallery.person(pid).face_count == 4
    face_ids, person_ids, matrix = gallery.embeddings("m128")
    assert face_ids.dtype == np.int64 and person_ids.dtype == np.int64
    assert matrix.dtype == np.float32 and matrix.shape == (4, 128)
    assert list(face_ids) == fids + fids2 + fids3 and set(person_ids) == {pid}
    np.testing.assert_array_equal(matrix[:2], emb["m128"])
    assert gallery.models() == {"m128": 4, "m64": 2}
    assert gallery.faces_missing_embeddings("m64") == fids2 + fids3
    with pytest.raises(NotFound):
        gallery.enroll(424242, [sample(crops[0])], {})


def test_bad_enrollment_writes_nothing(gallery, crops):
    before = state(gallery)
    with pytest.raises(ValueError, match="2 faces"):
        gallery.enroll("Ada", [sample(crops[0]), sample(crops[1])], {"m": vectors(3, 8, 0)})
    bad = vectors(1, 8, 0)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        gallery.enroll("Ada", [sample(crops[0])], {"m": bad})
    with pytest.raises(ValueError, match="uint8"):
        gallery.enroll("Ada", [sample(crops[0].astype(np.float32))], {})
    with pytest.raises(ValueError, match="5 x 2"):
        gallery.enroll("Ada", [FaceSample(crops[0], np.zeros((4, 2)), 1.0, "")], {})
    gallery.enroll("Ada", [sample(crops[0])], {"m": vectors(1, 8, 0)})
    after_first = state(gallery)
    # a model's embedding size is fixed: a wrong one is refused inside the
    # transaction, and the person and faces created before the check are rolled back
    with pytest.raises(GalleryError, match="8-d"):
        gallery.enroll("Grace", [sample(crops[1])], {"m": vectors(1, 16, 1)})
    assert gallery.find_person("Grace") is None
    assert state(gallery) == after_first != before


def test_embeddings_of_models_are_kept_apart(gallery, crops):
    pid, fids = gallery.enroll("Ada", [sample(c) for c in crops[:3]],
                               {"a": vectors(3, 32, 0), "b": vectors(3, 16, 1)})
    fa, _, ma = gallery.embeddings("a")
    fb, _, mb = gallery.embeddings("b")
    assert ma.shape == (3, 32) and mb.shape == (3, 16)
    np.testing.assert_array_equal(mb, vectors(3, 16, 1))
    assert gallery.embeddings("c")[2].shape == (0, 0)

    new = vectors(1, 32, 9)[0]
    gallery.set_embeddings("a", {fids[1]: new})
    np.testing.assert_array_equal(gallery.embeddings("a")[2][1], new)
    np.testing.assert_array_equal(gallery.embeddings("b")[2], vectors(3, 16, 1))
    with pytest.raises(GalleryError, match="32-d"):
        gallery.set_embeddings("a", {fids[0]: np.ones(16, np.float32)})
    with pytest.raises(NotFound):
        gallery.set_embeddings("a", {99999: new})

    gallery.set_embeddings("c", {fids[2]: np.ones(4)})
    assert gallery.faces_missing_embeddings("c") == fids[:2]
    assert gallery.drop_embeddings("a") == 3
    assert gallery.models() == {"b": 3, "c": 1}
    assert gallery.embeddings("a")[0].size == 0
    gallery.set_embeddings("a", {fids[0]: np.ones(64)})  # after a drop, a new size is fine
    assert gallery.embeddings("a")[2].shape == (1, 64)


def test_flagged_faces_leave_the_embeddings(gallery, crops):
    pid, fids = gallery.enroll("Ada", [sample(c) for c in crops[:3]], {"m": vectors(3, 8, 0)})
    gallery.flag_face(fids[1])
    face_ids, person_ids, matrix = gallery.embeddings("m")
    assert list(face_ids) == [fids[0], fids[2]]
    np.testing.assert_array_equal(matrix, vectors(3, 8, 0)[[0, 2]])
    assert [r.flagged for r in gallery.faces(pid)] == [False, True, False]
    assert gallery.person(pid).flagged_count == 1 and gallery.person(pid).face_count == 3
    gallery.flag_face(fids[1], False)
    assert list(gallery.embeddings("m")[0]) == fids
    with pytest.raises(NotFound):
        gallery.flag_face(12345)


def test_remove_face_and_delete_person_cascade(gallery, crops):
    ada, ada_faces = gallery.enroll("Ada", [sample(c) for c in crops[:2]], {"m": vectors(2, 8, 0)})
    bob, bob_faces = gallery.enroll("Bob", [sample(c) for c in crops[2:5]],
                                    {"m": vectors(3, 8, 1)})
    gallery.add_event(bob, 0.9, "cam")
    gallery.add_event(None, 0.1, "cam")
    gallery.remove_face(ada_faces[0])
    assert gallery.models() == {"m": 4}
    with pytest.raises(NotFound):
        gallery.face_crop(ada_faces[0])

    gallery.delete_person(bob, events=False)
    assert [p.name for p in gallery.people()] == ["Ada"]
    assert gallery.models() == {"m": 1} and gallery.face_count() == 1
    assert gallery.faces_missing_embeddings("m") == []
    with pytest.raises(NotFound):
        gallery.faces(bob)
    # Bob's event stays, with his name and no person id; it is not an unknown face
    events = gallery.events()
    assert [(e.person_id, e.name) for e in events] == [(None, None), (None, "Bob")]
    assert len(gallery.events(unknown_only=True)) == 1
    with gallery.reading() as db:
        orphans = db.execute("SELECT count(*) FROM faces WHERE person_id NOT IN "
                             "(SELECT id FROM people)").fetchone()[0]
    assert orphans == 0


def test_merge_moves_faces_embeddings_and_events(gallery, crops):
    keep, keep_faces = gallery.enroll("Robert", [sample(crops[0])], {"m": vectors(1, 8, 0)})
    gallery.set_notes(keep, "desk 4")
    absorb, absorb_faces = gallery.enroll("Bob", [sample(c) for c in crops[1:3]],
                                          {"m": vectors(2, 8, 1)})
    gallery.set_notes(absorb, "likes tea")
    event = gallery.add_event(absorb, 0.8, "door")
    gallery.merge_people(keep, absorb)
    people = gallery.people()
    assert [(p.id, p.name, p.face_count) for p in people] == [(keep, "Robert", 3)]
    assert people[0].notes == "desk 4\nlikes tea"
    face_ids, person_ids, _ = gallery.embeddings("m")
    assert sorted(face_ids) == sorted(keep_faces + absorb_faces) and set(person_ids) == {keep}
    moved = gallery.events(person_id=keep)
    assert [(e.id, e.name) for e in moved] == [(event, "Bob")]  # the name at the time
    with pytest.raises(NotFound):
        gallery.person(absorb)
    with pytest.raises(ValueError):
        gallery.merge_people(keep, keep)
    with pytest.raises(NotFound):
        gallery.merge_people(keep, absorb)


def test_data_version_follows_changes_that_matter_to_an_index(new_location, crops):
    path = new_location()
    with connect(path) as g, connect(path) as other:
        v0 = g.data_version()
        pid, fids = g.enroll("Ada", [sample(crops[0])], {"m": vectors(1, 8, 0)})
        v1 = g.data_version()
        assert v1 > v0 and other.data_version() == v1  # seen by another connection too
        g.add_event(pid, 0.9, "cam")
        g.prune_events(timedelta(days=1))
        assert g.data_version() == v1, "events do not invalidate an index"
        other.flag_face(fids[0])
        assert g.data_version() > v1
        v2 = g.data_version()
        g.rename_person(pid, "Ada L.")
        assert g.data_version() > v2


def test_events_filters_csv_and_pruning(gallery, crops, tmp_path):
    ada = gallery.add_person("=Ada")
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    thumb = encode_crop(crops[0])  # not JPEG: refused
    with pytest.raises(ValueError, match="JPEG"):
        gallery.add_event(ada, 0.9, "cam", thumb)
    ok, jpeg = cv2.imencode(".jpg", crops[0][:, :, ::-1])
    ids = [gallery.add_event(ada, 0.91, "cam-1", jpeg.tobytes(), time=t0),
           gallery.add_event(None, 0.2, "cam-1", None, time=t0 + timedelta(hours=1)),
           gallery.add_event(ada, 0.85, "cam-2", None, time=t0 + timedelta(hours=2)),
           gallery.add_event(None, 0.3, "cam-2", None, time=t0 + timedelta(days=3))]
    events = gallery.events()
    assert [e.id for e in events] == ids[::-1]  # newest first
    assert events[-1].time == t0 and events[-1].has_thumbnail and events[-1].name == "=Ada"
    assert gallery.event_thumbnail(ids[0]) == jpeg.tobytes()
    assert [e.id for e in gallery.events(person_id=ada)] == [ids[2], ids[0]]
    assert [e.id for e in gallery.events(unknown_only=True)] == [ids[3], ids[1]]
    assert [e.id for e in gallery.events(since=t0 + timedelta(hours=1),
                                         until=t0 + timedelta(days=3))] == [ids[2], ids[1]]
    assert [e.id for e in gallery.events(limit=1)] == [ids[3]]

    out = tmp_path / "events.csv"
    assert gallery.export_events_csv(out) == 4
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0][:4] == ["time", "name", "score", "source"]
    assert rows[1][:5] == ["2024-05-01T12:00:00.000000Z", "'=Ada", "0.91", "cam-1", "match"]
    assert [r[1] for r in rows[1:]] == ["'=Ada", "unknown", "'=Ada", "unknown"]

    assert gallery.prune_events(t0 + timedelta(hours=1, minutes=30)) == 2
    assert [e.id for e in gallery.events()] == [ids[3], ids[2]]
    assert gallery.prune_events(timedelta(days=1)) == 2  # all of 2024 is older than a day
    assert gallery.events() == []


def test_closed_gallery_and_missing_folder(tmp_path):
    g = connect(tmp_path / "g.db")
    g.close()
    g.close()
    with pytest.raises(GalleryError, match="closed"):
        g.people()
    with pytest.raises(GalleryError, match="cannot be created"):
        connect(tmp_path / "no" / "such" / "folder" / "g.db")
    assert not (tmp_path / "no").exists()


def test_empty_file_becomes_an_owner_only_gallery(tmp_path, open_umask):
    path = tmp_path / "prepared.db"
    path.touch(mode=0o644)
    assert mode(path) == 0o644
    with connect(path) as g:
        g.add_person("Ada")
        assert mode(path) == 0o600 and mode(Path(f"{path}-wal")) == 0o600


# ----------------------------------------------------------------- damaged / foreign

def _real_gallery(path: Path, crops) -> None:
    with connect(path) as g:
        for i in range(12):
            g.enroll(f"P{i}", [sample(c) for c in crops[:4]], {"m": vectors(4, 128, i)})


def _random_bytes(path: Path, crops) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(8192))


def _text(path: Path, crops) -> None:
    path.write_text("name,face\nAda,1\n")


def _truncated(path: Path, crops) -> None:
    _real_gallery(path, crops)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 // 4096 * 4096])


def _cut_mid_page(path: Path, crops) -> None:
    _real_gallery(path, crops)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 1000])


def _scribbled(path: Path, crops) -> None:
    _real_gallery(path, crops)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2:page * 3] = np.random.default_rng(1).bytes(page)  # a b-tree page
    path.write_bytes(bytes(data))


def _foreign(path: Path, crops) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('shopping list')")
    conn.close()


def _foreign_meta(path: Path, crops) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('app', 'someone-else'), ('schema_version', '1')")
    conn.close()


def _newer(path: Path, crops) -> None:
    _real_gallery(path, crops)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     [str(SCHEMA_VERSION + 1)])
    conn.close()


@pytest.mark.parametrize("make, message", [
    (_random_bytes, "not an SQLite database"),
    (_text, "not an SQLite database"),
    (_truncated, "truncated"),
    (_cut_mid_page, "truncated"),
    (_scribbled, "damaged"),
    (_foreign, "another program's SQLite database .*notes"),
    (_foreign_meta, "someone-else"),
    (_newer, "newer faceapp"),
])
def test_unusable_files_are_refused_and_left_untouched(tmp_path, crops, make, message):
    path = tmp_path / "gallery.db"
    make(path, crops)
    before, listing = digest(path), sorted(os.listdir(tmp_path))
    for _ in range(2):
        with pytest.raises(GalleryError, match=message):
            connect(path)
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == listing, "no -wal, -shm or backup left beside it"


def test_a_usable_gallery_opens_again_after_those_checks(tmp_path, crops):
    path = tmp_path / "g.db"
    _real_gallery(path, crops)
    with connect(path) as g:
        assert len(g.people()) == 12 and g.models() == {"m": 48}


# ------------------------------------------------------------------------ migration

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL, updated TEXT NOT NULL, notes TEXT NOT NULL DEFAULT '');
CREATE TABLE faces (id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE, crop BLOB NOT NULL,
    landmarks TEXT NOT NULL, quality REAL NOT NULL, source TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL);
CREATE INDEX faces_person ON faces(person_id);
CREATE TABLE embeddings (face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL, dim INTEGER NOT NULL CHECK (dim > 0),
    vector BLOB NOT NULL CHECK (length(vector) = 4 * dim), PRIMARY KEY (face_id, model_id));
CREATE INDEX embeddings_model ON embeddings(model_id);
CREATE TABLE events (id INTEGER PRIMARY KEY, time TEXT NOT NULL,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL, score REAL,
    source TEXT NOT NULL DEFAULT '', thumbnail BLOB);
CREATE INDEX events_time ON events(time);
CREATE INDEX events_person ON events(person_id, time);
"""
T = "2023-01-02T03:04:05.000000Z"


def make_v1(path: Path, crops, broken: bool = False) -> None:
    """A gallery as faceapp wrote it with schema version 1 (WAL, no flagged column,
    no events.name)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V1_SCHEMA)
    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                     [("app", "faceapp-gallery"), ("schema_version", "1"), ("created", T)])
    conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, '')",
                     [(1, "Ada", "ada", T, T), (2, "Bob", "bob", T, T)])
    lm = "[[38,50],[74,50],[56,70],[42,90],[70,90]]"
    for fid, (pid, crop) in enumerate([(1, crops[0]), (1, crops[1]), (2, crops[2])], start=1):
        conn.execute("INSERT INTO faces VALUES (?, ?, ?, ?, 0.9, 'old.jpg', ?)",
                     (fid, pid, encode_crop(crop), lm, T))
        conn.execute("INSERT INTO embeddings VALUES (?, 'm', 8, ?)",
                     (fid, vectors(1, 8, fid)[0].tobytes()))
    conn.execute("INSERT INTO events VALUES (1, ?, 1, 0.9, 'cam', NULL)", (T,))
    conn.execute("INSERT INTO events VALUES (2, ?, NULL, 0.1, 'cam', NULL)", (T,))
    if broken:  # a face whose person is gone, left by a bug of the v1 days
        conn.execute("INSERT INTO faces VALUES (9, 77, ?, ?, 0.9, '', ?)",
                     (encode_crop(crops[3]), lm, T))
    conn.close()


def structure(path: Path) -> dict:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        out = {}
        for t in tables:
            out[t] = (conn.execute(f"PRAGMA table_info({t})").fetchall(),
                      sorted(conn.execute(f"PRAGMA foreign_key_list({t})").fetchall()),
                      sorted((r[1], r[2], r[4]) for r in conn.execute(f"PRAGMA index_list({t})")))
        # the same index, whether written "t(c)" by hand or "t (c)" by SQLAlchemy
        out["indices"] = sorted(" ".join(r[0].replace("(", " (").split()) for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    conn.close()
    return out


def test_v1_gallery_is_backed_up_then_migrated(tmp_path, crops, open_umask):
    path = tmp_path / "old.db"
    make_v1(path, crops)
    os.chmod(path, 0o600)
    original = digest(path)
    with connect(path) as g:
        backup = tmp_path / "old.db.v1.bak"
        assert g.last_backup == backup and mode(backup) == 0o600
        assert g.schema_version() == SCHEMA_VERSION == 7
        assert [(p.name, p.face_count) for p in g.people()] == [("Ada", 2), ("Bob", 1)]
        np.testing.assert_array_equal(g.face_crop(2), crops[1])
        assert [(e.id, e.person_id, e.name) for e in g.events()] == \
            [(2, None, None), (1, 1, "Ada")]
        assert [e.id for e in g.events(unknown_only=True)] == [2]
        # v2 features work on the migrated file
        g.flag_face(1)
        assert list(g.embeddings("m")[0]) == [2, 3]
        g.add_event(2, 0.7, "cam")
        assert g.events(person_id=2)[0].name == "Bob"
        # v4: every sample knows its content, and the database refuses a second copy
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT count(*) FROM faces WHERE length(content_hash) = 32"
                                ).fetchone() == (3,)
        conn.close()
        ada = g.find_person("Ada").id
        assert g.add_faces(ada, [sample(crops[0])]) == []  # Ada already holds this crop
        assert len(g.add_faces(ada, [sample(crops[5])])) == 1
        # v3: old events keep what they knew; new ones say why and where
        assert [e.reason for e in g.events()][1:] == ["", "match"]
        g.add_event(None, 0.9, "door.jpg", details=EventDetails(
            reason="ambiguous", nearest_id=1, runner_up_id=2, runner_up_score=0.89,
            box=(1.0, 2.0, 30.0, 40.0)))
        why = g.events(unknown_only=True)[0]
        assert (why.name, why.reason, why.nearest, why.runner_up, why.runner_up_score,
                why.box) == (None, "ambiguous", "Ada", "Bob", 0.89, (1.0, 2.0, 30.0, 40.0))
        g.export_events_csv(tmp_path / "log.csv")
        header, *rows = (tmp_path / "log.csv").read_text().splitlines()
        assert header == ("time,name,score,source,reason,nearest,runner_up,runner_up_score,"
                          "box,station")
        assert rows[-1].endswith(",unknown,0.9,door.jpg,ambiguous,Ada,Bob,0.89,1.0 2.0 30.0 40.0,"
                                 + g.station)
        # v6: events from before the migration name no station
        assert g.events()[-1].station == "" and g.events()[0].station == g.station
        # v7: meta keeps what the gallery is; what programs change lives in gallery_state
        with g.reading() as db:
            assert sorted(r[0] for r in db.execute("SELECT key FROM meta")) == \
                ["app", "created", "schema_version"]
            assert g.read_state(db, "data_version") > 0
    # the backup is the v1 file as it was
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            == ("1",)
        assert "flagged" not in [r[1] for r in conn.execute("PRAGMA table_info(faces)")]
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone() == (3,)
    conn.close()
    assert digest(path) != original
    # a migrated file has the same structure as a new one
    with connect(tmp_path / "new.db"):
        pass
    assert structure(path) == structure(tmp_path / "new.db")
    # opening again migrates nothing and makes no second backup
    with connect(path) as g:
        assert g.last_backup is None
    assert sorted(p.name for p in tmp_path.glob("*.bak")) == ["old.db.v1.bak"]


def test_failed_migration_leaves_the_v1_file(tmp_path, crops):
    path = tmp_path / "old.db"
    make_v1(path, crops, broken=True)
    with pytest.raises(GalleryError, match="broken references"):
        connect(path)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            == ("1",)
        assert "flagged" not in [r[1] for r in conn.execute("PRAGMA table_info(faces)")]
        assert "name" not in [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    conn.close()
    assert (tmp_path / "old.db.v1.bak").exists()


# ------------------------------------------------------------ crashes and processes

def check_worker_people(path: Path, photos: Path, expect: int | None = None) -> int:
    crops = gallery_worker.person_crops(photos)
    with connect(path) as g:
        people = g.people()
        n = len(people)
        if expect is not None:
            assert n == expect
        assert [p.name for p in people] == [f"person-{i:04d}" for i in range(n)]
        assert all(p.face_count == gallery_worker.FACES_PER_PERSON for p in people)
        for model, dim in gallery_worker.MODELS.items():
            face_ids, person_ids, matrix = g.embeddings(model)
            assert matrix.shape == (n * gallery_worker.FACES_PER_PERSON, dim)
            for i, p in enumerate(people):
                rows = person_ids == p.id
                np.testing.assert_array_equal(matrix[rows],
                                              gallery_worker.person_embeddings(i)[model])
        assert g.faces_missing_embeddings("model-a") == []
        last = people[-1].id if people else None
        if last is not None:
            for k, f in enumerate(g.faces(last)):
                np.testing.assert_array_equal(g.face_crop(f.id), crops[k])
        g.add_person("after the crash")  # writable again
    return n


@pytest.mark.slow
def test_sigkill_during_enrollment_loop_leaves_whole_people(tmp_path, photos):
    path = tmp_path / "g.db"
    proc = spawn("enroll", str(path), str(photos), "300")
    try:
        wait_for_line(proc, "enrolled 1")
        start, done = time.monotonic(), 1
        while time.monotonic() - start < 1.0 and done < 150:
            line = proc.stdout.readline()
            if line.startswith("enrolled"):
                done = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        stop(proc)
    n = check_worker_people(path, photos)
    assert done <= n < 300, "the worker was killed mid-way"


@pytest.mark.slow
def test_sigkill_inside_an_enrollment_transaction(tmp_path, photos):
    path = tmp_path / "g.db"
    proc = spawn("enroll", str(path), str(photos), "300", "5")
    try:
        wait_for_line(proc, "stalled")  # person-0005's faces are in, its embeddings not yet
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    assert check_worker_people(path, photos, expect=5) == 5
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM faces").fetchone() == (20,)
        assert conn.execute("SELECT count(*) FROM people WHERE name = 'person-0005'") \
            .fetchone() == (0,)
    conn.close()


def test_other_process_reads_while_this_one_writes(new_location, crops):
    import json

    path = new_location()
    with connect(path, timeout=30) as g:
        g.enroll("Ada", [sample(crops[0])], {"m": vectors(1, 8, 0)})
        with g.writing() as tx:  # an open write transaction, as during a long enrollment
            g.insert_person(tx, "Pending")
            started = time.monotonic()
            out = subprocess.run([sys.executable, str(WORKER), "read", str(path)],
                                 capture_output=True, text=True, timeout=60)
            elapsed = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        assert seen["people"] == [["Ada", 1]] and seen["models"] == {"m": 1}
        assert elapsed < 20, "the reader waited for the writer (its timeout is 30 s)"
        out = subprocess.run([sys.executable, str(WORKER), "read", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert json.loads(out.stdout)["people"] == [["Ada", 1], ["Pending", 0]]


@pytest.mark.slow
def test_reads_stay_consistent_during_another_process_writes(new_location, photos):
    path = new_location()
    counts, versions = set(), set()
    with connect(path, timeout=30) as g:
        proc = spawn("enroll", str(path), str(photos), "80")
        try:
            while proc.poll() is None:
                with g.snapshot():
                    people = g.people()
                    version = g.data_version()
                    face_ids, person_ids, matrix = g.embeddings("model-a")
                assert all(p.face_count == 4 for p in people)
                assert matrix.shape[0] == 4 * len(people)
                assert set(person_ids.tolist()) == {p.id for p in people}
                counts.add(len(people))
                versions.add(version)
            assert proc.returncode == 0, proc.stderr.read()
        finally:
            stop(proc)
        assert len(g.people()) == 80
    assert len(counts - {0, 80}) >= 2, f"reads never overlapped the writes: {sorted(counts)}"
    assert len(versions) >= len(counts)


def test_write_lock_held_by_another_process_gives_gallery_locked(new_location, crops):
    path = new_location()
    with connect(path) as g:
        g.add_person("Ada")
    proc = spawn("hold-write", str(path), "30")
    try:
        wait_for_line(proc, "writing")
        with connect(path, timeout=0.5) as g:
            assert [p.name for p in g.people()] == ["Ada"]  # reading is not blocked
            started = time.monotonic()
            with pytest.raises(GalleryLocked, match="locked by another program"):
                g.add_person("Bob")
            assert 0.4 < time.monotonic() - started < 10
    finally:
        stop(proc)
    with connect(path) as g:
        assert [p.name for p in g.people()] == ["Ada"]
        g.add_person("Bob")


def test_exclusive_lock_held_by_another_process_refuses_opening(tmp_path):
    path = tmp_path / "g.db"
    connect(path).close()
    proc = spawn("hold-lock", str(path), "30")
    try:
        wait_for_line(proc, "locked")
        started = time.monotonic()
        with pytest.raises(GalleryLocked, match="locked"):
            connect(path, timeout=0.5)
        assert time.monotonic() - started < 10
    finally:
        stop(proc)
    connect(path).close()


# ------------------------------------------------------------------- export/import

def filled(path: Path, crops) -> Gallery:
    g = connect(path)
    ada, ada_faces = g.enroll("Ada", [sample(c, k, f"a{k}.jpg") for k, c in enumerate(crops[:3])],
                              {"m128": vectors(3, 128, 1), "m64": vectors(3, 64, 2)})
    g.set_notes(ada, "front desk")
    g.flag_face(ada_faces[2])
    g.enroll("Émile", [sample(crops[3]), sample(crops[4])], {"m128": vectors(2, 128, 3)})
    g.add_person("Nobody Yet")
    g.add_event(ada, 0.9, "cam")
    return g


def contents(g: Gallery) -> dict:
    """People and faces by name, comparable across galleries (ids differ)."""
    out = {}
    for p in g.people():
        faces = []
        for f in g.faces(p.id):
            faces.append((g.face_crop(f.id).tobytes(), f.landmarks.tobytes(), f.quality,
                          f.source, f.flagged, f.created))
        out[p.name] = (p.notes, p.created, faces)
    return out


def vectors_by_face(g: Gallery, model: str) -> dict[bytes, bytes]:
    face_ids, _, matrix = g.embeddings(model)
    return {g.face_crop(int(f)).tobytes(): row.tobytes() for f, row in zip(face_ids, matrix)}


@pytest.mark.parametrize("passphrase", [None, "correct horse battery staple"])
def test_export_import_round_trip(tmp_path, new_location, backend, crops, open_umask,
                                  passphrase):
    src = filled(new_location("src"), crops)
    out = tmp_path / "export.fgx"
    out.write_bytes(b"an older export")
    os.chmod(out, 0o644)
    summary = export_gallery(src, out, passphrase)
    assert (summary.people, summary.faces) == (3, 5)
    assert summary.models == {"m128": 5, "m64": 3} and summary.encrypted == (passphrase is not None)
    assert mode(out) == 0o600
    expected = ["export.fgx"] + (["src.db", "src.db-wal", "src.db-shm"]
                                 if backend == "sqlite" else [])
    assert sorted(os.listdir(tmp_path)) == sorted(expected), "no temp file left"
    data = out.read_bytes()
    if passphrase:
        assert b"\x89PNG" not in data and "Émile".encode() not in data and b"m128" not in data
    else:
        assert zipfile.is_zipfile(out)

    with connect(new_location("dst")) as dst:
        report = import_gallery(dst, out, passphrase)
        assert (report.people_added, report.faces_added, report.embeddings_added) == (3, 5, 0)
        assert report.embeddings_ignored == 8  # never trusted: computed from the crops
        assert contents(dst) == contents(src)
        assert dst.models() == {} and len(dst.faces_missing_embeddings("m128")) == 5
        assert dst.events() == [], "events are not exported"
        # the same names again: refused until the user chooses, nothing changes
        before = state(dst)
        with pytest.raises(NameClash, match=r"3 people .* \(Ada, Émile, Nobody Yet\)"):
            import_gallery(dst, out, passphrase)
        assert state(dst) == before
        skipped = import_gallery(dst, out, passphrase, on_conflict="skip")
        assert skipped.people_skipped == ["Ada", "Émile", "Nobody Yet"]
        assert skipped.faces_added == 0 and state(dst)[:3] == before[:3]
        # merging the same file again adds nothing
        again = import_gallery(dst, out, passphrase, on_conflict="merge")
        assert (again.people_merged, again.faces_added, again.faces_skipped) == (3, 0, 5)
        assert dst.face_count() == 5
        renamed = import_gallery(dst, out, passphrase, on_conflict="rename")
        assert renamed.renamed == {"Ada": "Ada (2)", "Émile": "Émile (2)",
                                   "Nobody Yet": "Nobody Yet (2)"}
        assert dst.find_person("ada (2)").face_count == 3 and dst.face_count() == 10
    src.close()


def test_wrong_or_missing_passphrase_changes_nothing(tmp_path, crops):
    src = filled(tmp_path / "src.db", crops)
    out = tmp_path / "export.fgx"
    export_gallery(src, out, "s3cret")
    with connect(tmp_path / "dst.db") as dst:
        dst.enroll("Zed", [sample(crops[5])], {"m128": vectors(1, 128, 7)})
        before = state(dst)
        with pytest.raises(WrongPassphrase, match="wrong passphrase"):
            import_gallery(dst, out, "S3cret")
        with pytest.raises(WrongPassphrase, match="encrypted"):
            import_gallery(dst, out)
        assert state(dst) == before
        assert import_gallery(dst, out, "s3cret").people_added == 3
    src.close()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


@pytest.mark.parametrize("damage", ["flip-middle", "flip-end", "truncate", "empty", "not-zip"])
@pytest.mark.parametrize("passphrase", [None, "pw"])
def test_damaged_archive_is_refused_and_gallery_unchanged(tmp_path, crops, damage, passphrase):
    src = filled(tmp_path / "src.db", crops)
    out = tmp_path / "export.fgx"
    export_gallery(src, out, passphrase)
    src.close()
    data = out.read_bytes()
    damaged = {"flip-middle": lambda d: _flip(d, len(d) // 2),
               "flip-end": lambda d: _flip(d, len(d) - 30),
               "truncate": lambda d: d[:len(d) * 2 // 3],
               "empty": lambda d: b"",
               "not-zip": lambda d: b"name,face\n" + d}[damage](data)
    out.write_bytes(damaged)
    with connect(tmp_path / "dst.db") as dst:
        dst.enroll("Zed", [sample(crops[5])], {"m128": vectors(1, 128, 7)})
        before = state(dst)
        if damage == "flip-middle" and passphrase is None:
            # the middle of a plain export is a stored crop: that face is skipped and
            # listed, the rest comes through
            report = import_gallery(dst, out, passphrase)
            assert len(report.damaged) == 1 and report.faces_added == 4
            return
        with pytest.raises(ArchiveError) as info:
            import_gallery(dst, out, passphrase)
        assert not isinstance(info.value, WrongPassphrase), "damage is not a wrong passphrase"
        assert state(dst) == before


def test_a_damaged_crop_skips_that_face_and_the_rest_comes_through(tmp_path, crops):
    src = filled(tmp_path / "src.db", crops)
    out = tmp_path / "export.fgx"
    export_gallery(src, out)
    src.close()
    for name, damage in (("png", lambda b: b[:40] + b"\0" * 200 + b[240:]),
                         ("crc", None)):
        rebuilt = tmp_path / f"rebuilt-{name}.fgx"
        with zipfile.ZipFile(out) as zin, zipfile.ZipFile(rebuilt, "w") as zout:
            for info in zin.infolist():
                body = zin.read(info)
                if info.filename == "faces/4.png":
                    if damage:  # a consistent CRC, a broken PNG
                        body = damage(body)
                    else:  # the bytes change under the recorded CRC
                        zout.writestr(info, body)
                        continue
                zout.writestr(info, body)
        if damage is None:
            data = bytearray(rebuilt.read_bytes())
            at = data.find(b"IDAT", data.find(b"faces/4.png"))
            data[at + 8] ^= 0xFF
            rebuilt.write_bytes(bytes(data))
        with connect(tmp_path / f"dst-{name}.db") as dst:
            report = import_gallery(dst, rebuilt)
            assert [item for item, _ in report.damaged] == ["face 4 (faces/4.png)"], name
            assert report.faces_added == 4 and dst.face_count() == 4


def test_export_leaves_out_and_reports_a_damaged_crop(tmp_path, crops):
    src = filled(tmp_path / "src.db", crops)
    ada = src.find_person("Ada").id
    broken = src.faces(ada)[1].id
    src._conn.execute("UPDATE faces SET crop = ? WHERE id = ?", [b"\x89PNG broken", broken])
    out = tmp_path / "export.fgx"
    summary = export_gallery(src, out)
    assert summary.faces == 4 and len(summary.skipped) == 1
    assert summary.skipped[0][0].startswith(f"sample {broken} of Ada")
    with connect(tmp_path / "dst.db") as dst:
        report = import_gallery(dst, out)
        assert report.faces_added == 4 and not report.damaged
    src.close()


def test_import_conflict_rolls_back_everything(tmp_path, new_location, crops):
    from faceapp.core.embed import Embedder

    embedder = Embedder.from_pack("dlib-resnet-v1")
    src = filled(tmp_path / "src.db", crops)
    out = tmp_path / "export.fgx"
    export_gallery(src, out)
    src.close()
    with connect(new_location("dst")) as dst:
        # the active model's id with another embedding size: refused when the computed
        # templates are written, after people and faces were added in that transaction
        dst.enroll("Zed", [sample(crops[5])], {embedder.model_id: vectors(1, 32, 7)})
        before = state(dst)
        with pytest.raises(GalleryError, match="32-d"):
            import_gallery(dst, out, embedder=embedder)
        assert state(dst) == before
        assert dst.find_person("Ada") is None
def test_failed_export_keeps_the_previous_file(tmp_path, crops):
    src = filled(tmp_path / "src.db", crops)
    out = tmp_path / "export.fgx"
    export_gallery(src, out)
    before = digest(out)
    src.close()
    with pytest.raises(GalleryError, match="closed"):
        export_gallery(src, out)
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with connect(tmp_path / "src.db") as again, pytest.raises(ValueError):
        export_gallery(again, out, "")
    assert digest(out) == before


def test_a_gallery_keeps_the_model_its_templates_were_made_with(gallery, crops):
    """With no model chosen, a gallery enrolled with another model (or before the default
    changed) goes on with the model its templates are in; a new one takes the default."""
    from faceapp.core.models import DEFAULT_EMBEDDER, embedder_for_gallery

    other = "dlib-resnet-v1"  # the default before the student took over
    assert other != DEFAULT_EMBEDDER
    assert embedder_for_gallery(gallery) == (DEFAULT_EMBEDDER, None)
    _, faces = gallery.enroll("Ada", [sample(crops[0]), sample(crops[1], 1)],
                              {f"{other}:int8": vectors(2, 128, 0)})
    gallery.enroll("Bo", [sample(crops[2], 2)], {f"{other}:fp32": vectors(1, 128, 1)})
    assert embedder_for_gallery(gallery) == (other, "int8")  # the most templates
    gallery.set_embeddings(f"{DEFAULT_EMBEDDER}:int8", dict(zip(faces, vectors(2, 128, 2))))
    assert embedder_for_gallery(gallery) == (DEFAULT_EMBEDDER, None)


def test_templates_of_a_model_no_longer_installed_fall_back_to_the_default(gallery, crops):
    from faceapp.core.models import DEFAULT_EMBEDDER, embedder_for_gallery

    gallery.enroll("Ada", [sample(crops[0])], {"retired-model-v0:int8": vectors(1, 64, 0)})
    assert embedder_for_gallery(gallery) == (DEFAULT_EMBEDDER, None)
