"""The store API every gallery offers, in a file or on a server: people, their face
samples and the embeddings of each model (the event log is mixed in from events.py).

A backend supplies the transactions (``reading()``, ``writing()``) and
``checkpoint()``; everything here is written once, in the SQL both databases speak.
The parts a writer outside this class composes into one transaction (finding,
creating and checking people, inserting faces) take the transaction's ``db``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager

import numpy as np

from .errors import GalleryError, NameTaken, NotFound
from .events import EventLog
from .records import (FaceRecord, FaceSample, Person, as_matrix, check_id, check_landmarks,
                      check_model_id, check_quality, decode_vectors, format_time, landmarks_from_json,
                      landmarks_json, name_key, name_skeleton, normalize_name, parse_time,
                      utc_now)
from .schema import STATE_DATA_VERSION, crop_digest, decode_crop, encode_crop
from .sql import Sql


class GalleryStore(EventLog):
    """People, faces and embeddings; the backends (``Gallery`` for a file,
    ``ServerGallery`` for a server) add how a transaction runs."""

    remote = False  # a server shared by stations, not a file
    station: str

    # ------------------------------------------------------------ backend's part

    def reading(self) -> AbstractContextManager[Sql]:
        """A read transaction: every query in it sees the same snapshot."""
        raise NotImplementedError

    def writing(self, *, bump: bool = True,
                wait: float | None = None) -> AbstractContextManager[Sql]:
        """One write transaction, serial with every other writer. bump: the change
        concerns people, faces or embeddings, so in-memory indices must rebuild
        (events do not bump). wait: how long to wait for another writer (default:
        the gallery's timeout)."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Make deleted rows leave every file the backend keeps (best effort)."""

    @property
    def path(self):
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[GalleryStore]:
        """Reads inside this block all see the same committed state, e.g.
        ``with g.snapshot(): v = g.data_version(); ids, pids, m = g.embeddings(model)``.
        Other processes go on writing meanwhile; this one must not write in it."""
        with self.reading():
            yield self

    # --------------------------------------------------------------------- meta

    def schema_version(self) -> int:
        with self.reading() as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                       .fetchone()[0])

    def data_version(self) -> int:
        """A counter that grows with every committed change to people, faces or
        embeddings, by any process (events do not count). An in-memory index keeps
        the value it was built at and rebuilds when this differs."""
        with self.reading() as db:
            return self.read_state(db, STATE_DATA_VERSION)

    @staticmethod
    def read_state(db: Sql, key: str, default: int = 0) -> int:
        """A counter or setting in gallery_state (inside a transaction)."""
        row = db.execute("SELECT value FROM gallery_state WHERE key = ?", [key]).fetchone()
        return int(row[0]) if row else default

    @staticmethod
    def write_state(db: Sql, key: str, value: int) -> None:
        db.execute("INSERT INTO gallery_state(key, value) VALUES (?, ?) ON CONFLICT(key) "
                   "DO UPDATE SET value = excluded.value", [key, str(int(value))])

    # ------------------------------------------------------------------- people

    @staticmethod
    def _person_row(row) -> Person:
        return Person(id=row[0], name=row[1], created=parse_time(row[2]),
                      updated=parse_time(row[3]), notes=row[4], face_count=row[5] or 0,
                      flagged_count=row[6] or 0)

    _PERSON_SQL = ("SELECT p.id, p.name, p.created, p.updated, p.notes, count(f.id), "
                   "CAST(coalesce(sum(f.flagged), 0) AS INTEGER) FROM people p "
                   "LEFT JOIN faces f ON f.person_id = p.id ")

    def person_id_by_name(self, db: Sql, name: str) -> int | None:
        row = db.execute("SELECT id FROM people WHERE name_key = ?", [name_key(name)]).fetchone()
        return row[0] if row else None

    def require_person(self, db: Sql, person_id) -> int:
        pid = check_id(person_id, "person")
        if db.execute("SELECT 1 FROM people WHERE id = ?", [pid]).fetchone() is None:
            raise NotFound(f"no person with id {pid}")
        return pid

    def person_for(self, db: Sql, name_or_person_id: str | int) -> int:
        """The id of the person a name or an id stands for; a new name is created."""
        if not isinstance(name_or_person_id, str):
            return self.require_person(db, name_or_person_id)
        pid = self.person_id_by_name(db, name_or_person_id)
        return pid if pid is not None else self.insert_person(db, name_or_person_id)

    def insert_person(self, db: Sql, name: str, notes: str = "",
                       created: str | None = None) -> int:
        clean = normalize_name(name)
        if self.person_id_by_name(db, clean) is not None:
            raise NameTaken(f"there is already a person named {clean!r}")
        now = format_time(utc_now())
        return db["people"].insert({"name": clean, "name_key": name_key(clean),
                                    "created": created or now, "updated": now,
                                    "notes": notes}).last_pk

    def confusable_names(self, name: str) -> list[str]:
        """People whose names look like `name` but are written with other letters (a
        new "Аlice" beside "Alice"): callers warn before, or after, creating it."""
        clean, skeleton = normalize_name(name), name_skeleton(name)
        with self.reading() as db:
            names = [r[0] for r in db.execute("SELECT name FROM people ORDER BY id")]
        return [n for n in names if name_skeleton(n) == skeleton and name_key(n) != name_key(clean)]

    def add_person(self, name: str, notes: str = "") -> int:
        with self.writing() as db:
            return self.insert_person(db, name, notes)

    def rename_person(self, person_id: int, name: str) -> None:
        """Past events keep the name they were recorded with."""
        clean = normalize_name(name)
        with self.writing() as db:
            pid = self.require_person(db, person_id)
            other = self.person_id_by_name(db, clean)
            if other is not None and other != pid:
                raise NameTaken(f"there is already a person named {clean!r}")
            db["people"].update(pid, {"name": clean, "name_key": name_key(clean),
                                      "updated": format_time(utc_now())})

    def set_notes(self, person_id: int, notes: str) -> None:
        if not isinstance(notes, str):
            raise TypeError("notes are a str")
        with self.writing() as db:
            pid = self.require_person(db, person_id)
            db["people"].update(pid, {"notes": notes, "updated": format_time(utc_now())})

    def merge_people(self, keep_id: int, absorb_id: int) -> None:
        """absorb_id's faces (with their embeddings) and events move to keep_id, its
        notes are appended, and absorb_id is deleted."""
        keep, absorb = check_id(keep_id, "person"), check_id(absorb_id, "person")
        if keep == absorb:
            raise ValueError("a person cannot be merged into itself")
        with self.writing() as db:
            self.require_person(db, keep)
            self.require_person(db, absorb)
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
            db["people"].update(keep, {"notes": merged, "updated": format_time(utc_now())})
            db["people"].delete(absorb)

    def delete_person(self, person_id: int, events: bool = True) -> int:
        """Deletes the person, their faces and embeddings and, with `events`, their
        events (thumbnails of their face, those recorded while they were still an
        unknown face and then named included) and their name, whatever it was then,
        wherever an event names them as nearest or runner-up: templates and face
        pictures are biometric data. With events=False their events stay, with the
        name they were recorded with and no person id. The WAL is checkpointed so the
        deleted rows leave it too. Returns the number of events deleted."""
        with self.writing() as db:
            pid = self.require_person(db, person_id)
            name = db.execute("SELECT name FROM people WHERE id = ?", [pid]).fetchone()[0]
            gone = 0
            if events:
                gone = db.execute("DELETE FROM events WHERE person_id = ?", [pid]).rowcount
                for column in ("nearest", "runner_up"):
                    extra = ", runner_up_score = NULL" if column == "runner_up" else ""
                    # by id; events from before schema v7 carry only the name
                    db.execute(f"UPDATE events SET {column} = NULL, {column}_id = NULL{extra} "
                               f"WHERE {column}_id = ? OR ({column}_id IS NULL AND "
                               f"{column} = ?)", [pid, name])
            db["people"].delete(pid)
        self.checkpoint()
        return gone

    def set_portrait(self, person_id: int, face_id: int | None) -> None:
        """The sample shown for this person (None: their best-quality one)."""
        with self.writing(bump=False) as db:
            pid = self.require_person(db, person_id)
            if face_id is not None:
                fid = self.require_face(db, face_id)
                owner = db.execute("SELECT person_id FROM faces WHERE id = ?", [fid]).fetchone()
                if owner[0] != pid:
                    raise ValueError(f"sample {fid} is not one of this person's")
                face_id = fid
            db.execute("UPDATE people SET portrait_id = ? WHERE id = ?", [face_id, pid])

    def portrait(self, person_id: int) -> int | None:
        """The sample chosen to show this person, or their best unflagged one."""
        pid = check_id(person_id, "person")
        with self.reading() as db:
            row = db.execute("SELECT portrait_id FROM people WHERE id = ?", [pid]).fetchone()
            if row is None:
                raise NotFound(f"no person with id {pid}")
            if row[0] is not None:
                return row[0]
            best = db.execute("SELECT id FROM faces WHERE person_id = ? "
                              "ORDER BY flagged, quality DESC, id LIMIT 1", [pid]).fetchone()
        return best[0] if best else None

    def people(self) -> list[Person]:
        with self.reading() as db:
            rows = db.execute(self._PERSON_SQL + "GROUP BY p.id ORDER BY p.name_key, p.id")
            return [self._person_row(r) for r in rows]

    def person_names(self) -> dict[int, str]:
        """Person id -> name, for everyone (what an index shows; cheaper than people())."""
        with self.reading() as db:
            return dict(db.execute("SELECT id, name FROM people").fetchall())

    def person(self, person_id: int) -> Person:
        pid = check_id(person_id, "person")
        with self.reading() as db:
            row = db.execute(self._PERSON_SQL + "WHERE p.id = ? GROUP BY p.id", [pid]).fetchone()
        if row is None:
            raise NotFound(f"no person with id {pid}")
        return self._person_row(row)

    def find_person(self, name: str) -> Person | None:
        """The person with this name (compared case-insensitively), or None."""
        key = name_key(name)
        with self.reading() as db:
            row = db.execute(self._PERSON_SQL + "WHERE p.name_key = ? GROUP BY p.id",
                             [key]).fetchone()
        return self._person_row(row) if row else None

    # -------------------------------------------------------------------- faces

    @staticmethod
    def prepare_samples(samples: Sequence[FaceSample],
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
                         "landmarks": landmarks_json(check_landmarks(s.landmarks)),
                         "quality": check_quality(s.quality), "source": s.source,
                         "content_hash": crop_digest(s.crop)})
        vectors = {}
        for model_id, matrix in (embeddings or {}).items():
            vectors[check_model_id(model_id)] = as_matrix(matrix, len(rows), model_id)
        return rows, vectors

    def check_dim(self, db: Sql, model_id: str, dim: int) -> None:
        row = db.execute("SELECT dim FROM embeddings WHERE model_id = ? AND dim != ? LIMIT 1",
                         [model_id, dim]).fetchone()
        if row is not None and row[0] != dim:
            raise GalleryError(f"model {model_id!r} has {row[0]}-d embeddings in the gallery, "
                               f"not {dim}-d; drop_embeddings({model_id!r}) first")

    def insert_faces(self, db: Sql, person_id: int, rows: list[dict],
                      vectors: dict[str, np.ndarray]) -> list[int | None]:
        """The new faces' ids, in the order of rows; None where the person already has
        that crop (the unique index decides, so two imports at once cannot both add
        it)."""
        now = format_time(utc_now())
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
            self.check_dim(db, model_id, matrix.shape[1])
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
        rows, vectors = self.prepare_samples(samples, embeddings)
        with self.writing() as db:
            pid = self.person_for(db, name_or_person_id)
            return pid, [f for f in self.insert_faces(db, pid, rows, vectors) if f is not None]

    def add_faces(self, person_id: int, samples: Sequence[FaceSample],
                  embeddings: Mapping[str, np.ndarray] | None = None) -> list[int]:
        rows, vectors = self.prepare_samples(samples, embeddings)
        with self.writing() as db:
            pid = self.require_person(db, person_id)
            return [f for f in self.insert_faces(db, pid, rows, vectors) if f is not None]

    def require_face(self, db: Sql, face_id) -> int:
        fid = check_id(face_id, "face")
        if db.execute("SELECT 1 FROM faces WHERE id = ?", [fid]).fetchone() is None:
            raise NotFound(f"no face with id {fid}")
        return fid

    def remove_face(self, face_id: int) -> None:
        with self.writing() as db:
            fid = self.require_face(db, face_id)
            db["faces"].delete(fid)

    def flag_face(self, face_id: int, flagged: bool = True) -> None:
        """Mark a face as "this was not that person": it stays stored but its
        embeddings are left out of embeddings()."""
        with self.writing() as db:
            fid = self.require_face(db, face_id)
            db["faces"].update(fid, {"flagged": int(bool(flagged))})

    def faces(self, person_id: int) -> list[FaceRecord]:
        with self.reading() as db:
            pid = self.require_person(db, person_id)
            rows = db.execute("SELECT id, person_id, landmarks, quality, source, created, "
                              "flagged FROM faces WHERE person_id = ? ORDER BY id", [pid])
            return [FaceRecord(id=r[0], person_id=r[1], landmarks=landmarks_from_json(r[2]),
                               quality=r[3], source=r[4], created=parse_time(r[5]),
                               flagged=bool(r[6])) for r in rows]

    def face_crop(self, face_id: int) -> np.ndarray:
        fid = check_id(face_id, "face")
        with self.reading() as db:
            row = db.execute("SELECT crop FROM faces WHERE id = ?", [fid]).fetchone()
        if row is None:
            raise NotFound(f"no face with id {fid}")
        try:
            return decode_crop(row[0])
        except ValueError as exc:
            raise GalleryError(f"face {fid} in {self._path} is damaged: {exc}") from None

    def face_sample(self, face_id: int) -> FaceSample:
        fid = check_id(face_id, "face")
        with self.reading() as db:
            row = db.execute("SELECT crop, landmarks, quality, source FROM faces WHERE id = ?",
                             [fid]).fetchone()
        if row is None:
            raise NotFound(f"no face with id {fid}")
        try:
            crop = decode_crop(row[0])
        except ValueError as exc:
            raise GalleryError(f"face {fid} in {self._path} is damaged: {exc}") from None
        return FaceSample(crop=crop, landmarks=landmarks_from_json(row[1]), quality=row[2],
                          source=row[3])

    def face_count(self) -> int:
        with self.reading() as db:
            return db.execute("SELECT count(*) FROM faces").fetchone()[0]

    # --------------------------------------------------------------- embeddings

    def set_embeddings(self, model_id: str, vectors: Mapping[int, np.ndarray]) -> None:
        """Store (or replace) one model's embedding of each given face."""
        model_id = check_model_id(model_id)
        ids = [check_id(k, "face") for k in vectors]
        if not ids:
            return
        flat = [np.asarray(v).reshape(-1) for v in vectors.values()]
        if len({v.size for v in flat}) != 1:
            raise ValueError(f"{model_id}: the embeddings have different sizes")
        matrix = as_matrix(np.stack(flat), len(ids), model_id)
        dim = matrix.shape[1]
        with self.writing() as db:
            self.check_dim(db, model_id, dim)
            for fid in ids:
                self.require_face(db, fid)
            db.executemany(
                "INSERT INTO embeddings(face_id, model_id, dim, vector) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(face_id, model_id) DO UPDATE SET dim = excluded.dim, "
                "vector = excluded.vector",
                [(fid, model_id, dim, vec.tobytes()) for fid, vec in zip(ids, matrix)])

    def embeddings(self, model_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face ids int64[N], person ids int64[N], float32[N, D]) of the unflagged
        faces that have an embedding from this model, ordered by face id. A damaged
        row (wrong size, not finite) is left out: damaged_embeddings() names it and
        re-embedding rebuilds it from the stored crop."""
        model_id = check_model_id(model_id)
        with self.reading() as db:
            rows = db.execute(
                "SELECT e.face_id, f.person_id, e.dim, e.vector FROM embeddings e "
                "JOIN faces f ON f.id = e.face_id "
                "WHERE e.model_id = ? AND f.flagged = 0 ORDER BY e.face_id", [model_id]
            ).fetchall()
        good, matrix, _damaged = decode_vectors([(r[0], r[2], r[3]) for r in rows])
        person_of = {r[0]: r[1] for r in rows}
        face_ids = np.asarray(good, np.int64)
        return (face_ids, np.fromiter((person_of[f] for f in good), np.int64, len(good)),
                matrix)

    def damaged_embeddings(self, model_id: str) -> list[int]:
        """Faces whose stored embedding from this model cannot be used (wrong size,
        not finite): left out of searches until re-embedded."""
        model_id = check_model_id(model_id)
        with self.reading() as db:
            rows = db.execute("SELECT face_id, dim, vector FROM embeddings WHERE model_id = ? "
                              "ORDER BY face_id", [model_id]).fetchall()
        return decode_vectors(rows)[2]

    def template_counts(self, model_id: str) -> tuple[int, int]:
        """(people, samples) the index of this model would hold: what the operating
        point is resolved for."""
        model_id = check_model_id(model_id)
        with self.reading() as db:
            people, samples = db.execute(
                "SELECT count(DISTINCT f.person_id), count(*) FROM embeddings e "
                "JOIN faces f ON f.id = e.face_id WHERE e.model_id = ? AND f.flagged = 0",
                [model_id]).fetchone()
        return int(people), int(samples)

    def faces_missing_embeddings(self, model_id: str) -> list[int]:
        """Faces (flagged ones too) with no usable embedding from this model (none, or
        a damaged one): what re-embedding computes."""
        model_id = check_model_id(model_id)
        with self.reading() as db:
            missing = [r[0] for r in db.execute(
                "SELECT id FROM faces WHERE id NOT IN "
                "(SELECT face_id FROM embeddings WHERE model_id = ?) ORDER BY id", [model_id])]
        return sorted(missing + self.damaged_embeddings(model_id))

    def drop_embeddings(self, model_id: str) -> int:
        model_id = check_model_id(model_id)
        with self.writing() as db:
            return db.execute("DELETE FROM embeddings WHERE model_id = ?", [model_id]).rowcount

    def models(self) -> dict[str, int]:
        with self.reading() as db:
            return dict(db.execute("SELECT model_id, count(*) FROM embeddings "
                                   "GROUP BY model_id ORDER BY model_id").fetchall())
