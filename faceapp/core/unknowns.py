"""Unknown faces: kept for a while, grouped into people, named in one step.

Every face that got no name (Live, `identify`, `scan`) can be kept with its face
canvas, its embedding, where it was seen and when. They are grouped as they arrive
(clustering.py) and stored with their cluster in the gallery file, so every program
that opens the gallery sees the same groups. Naming a cluster enrolls its good faces
as samples of a new or existing person in the same transaction that removes them
from the unknowns.

They are biometric data: they are deleted when the retention period ends (checked
each time a gallery is opened for writing), when their cluster is named, removed or
its person deleted, and the WAL is checkpointed after each deletion so the rows
leave it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from .clustering import FaceClusters
from .gallery import (STATE_CLUSTER_COUNTER, STATE_UNKNOWNS_VERSION, FaceSample, GalleryError,
                      GalleryStore, NotFound, crop_digest, format_time, landmarks_from_json,
                      landmarks_json, parse_time, utc_now)
JPEG_QUALITY = 92  # canvases of unknown faces: ~15 KB each instead of ~90 KB as PNG


@dataclass(eq=False)
class UnknownFace:
    """One face nobody was recognised as, ready to keep."""
    crop: np.ndarray  # the gallery's storage canvas (align.storage_crop), RGB uint8
    landmarks: np.ndarray  # 5 x 2 inside the canvas
    vector: np.ndarray  # the active model's unit embedding
    quality: float
    enrollable: bool  # passes the enrollment quality checks
    source: str = ""  # where, in words: a file, "video #frame time", a camera
    path: str | None = None  # the file it came from, if any
    box: tuple[float, float, float, float] | None = None
    seen: datetime | None = None  # default: now
    event_uid: str | None = None  # the event that recorded it (EventWriter)


@dataclass
class StoredUnknown:
    id: int
    cluster_id: int
    seen: datetime
    source: str
    path: str | None
    box: tuple[float, float, float, float] | None
    quality: float
    enrollable: bool


@dataclass
class Cluster:
    id: int
    size: int
    ignored: bool
    first_seen: datetime
    last_seen: datetime
    paths: list[str]  # the distinct source files of its faces
    sources: list[str]  # where its faces were seen, in words (distinct, newest first)
    best_face_ids: list[int]  # best quality first


def photo_key(source: str | None, path: str | None, seen: str | None):
    """The photo or video frame a face was seen in: faces with one key are different
    people, so they are never grouped together (clustering.py). A file's photo is its
    path, a video file's frame its path and the frame's place in it (`source` says
    "clip.mp4 #120 00:00:04.800"); a camera's frame is the camera and the frame's time
    (the faces of one frame are kept with one time). None: not known (no file, no time
    given)."""
    if path:
        return ("file", path, source or "")
    if seen:
        return ("frame", source or "", seen)
    return None


def _encode_jpeg(crop: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the face could not be encoded")
    return data.tobytes()


def _decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise GalleryError("a stored unknown face is not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


class UnknownFaces:
    """The unknown faces of one gallery for one embedding model, and their clusters.

    It works inside the gallery's own transactions (the gallery is the one owner of
    the file); the in-memory clusters are rebuilt whenever another program changed
    the unknowns (a counter in the gallery's state)."""

    def __init__(self, gallery: GalleryStore, model_id: str, dim: int, threshold: float):
        self.gallery = gallery
        self.model_id = model_id
        self.dim = int(dim)
        self.clusters = FaceClusters(self.dim, threshold)
        self._version: int | None = None

    @property
    def threshold(self) -> float:
        return self.clusters.threshold

    # ------------------------------------------------------------------ in sync

    def _bump(self, db) -> None:
        self._version = self.gallery.read_state(db, STATE_UNKNOWNS_VERSION) + 1
        self.gallery.write_state(db, STATE_UNKNOWNS_VERSION, self._version)

    def _sync(self, db) -> None:
        """Reload the clusters if the stored unknowns changed since we last looked."""
        version = self.gallery.read_state(db, STATE_UNKNOWNS_VERSION)
        if version == self._version:
            return
        rows = db.execute("SELECT cluster_id, vector, source, path, seen FROM unknown_faces "
                          "WHERE model_id = ?", [self.model_id]).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        vectors = (np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, self.dim)
                   if rows else np.zeros((0, self.dim), np.float32))
        self.clusters.load(ids, vectors, [photo_key(*r[2:]) for r in rows])
        self.clusters.reserve_ids(self.gallery.read_state(db, STATE_CLUSTER_COUNTER, 1))
        self._version = version

    def refresh(self) -> None:
        with self.gallery.reading() as db:
            self._sync(db)

    # -------------------------------------------------------------------- adding

    def add(self, faces: list[UnknownFace], sightings: bool = False) -> list[tuple[int, int]]:
        """Keep these faces and group them; returns (face id, cluster id) of each kept
        face. A face already kept (the same canvas) is not added again. With
        `sightings`, each face's path is also recorded as a place it was seen
        (`scan`)."""
        for face in faces:
            vector = np.asarray(face.vector, np.float32).reshape(-1)
            if vector.size != self.dim or not np.all(np.isfinite(vector)):
                raise ValueError(f"an unknown face's embedding must be {self.dim} finite values")

        def encoded(face: UnknownFace) -> tuple[bytes, bytes]:
            return crop_digest(face.crop), _encode_jpeg(face.crop)

        if len(faces) >= 32:  # a scan's batch: both cores (hashlib and OpenCV free the GIL)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=2) as pool:
                codes = list(pool.map(encoded, faces))
        else:
            codes = [encoded(face) for face in faces]
        prepared, seen = [], set()
        for face, (digest, jpeg) in zip(faces, codes):
            if digest not in seen:
                seen.add(digest)
                prepared.append((face, np.asarray(face.vector, np.float32).reshape(-1), jpeg,
                                 digest))
        if not prepared:
            return []
        try:
            return self._add(prepared, sightings)
        except BaseException:
            self._version = None  # the transaction rolled back: reload the clusters
            raise

    def _add(self, prepared: list, sightings: bool) -> list[tuple[int, int]]:
        with self.gallery.writing(bump=False) as db:
            self._sync(db)
            known = {r[0]: r[1] for r in db.execute(
                "SELECT content_hash, id FROM unknown_faces WHERE content_hash IN (%s)"
                % ",".join("?" * len(prepared)), [p[3] for p in prepared])}
            fresh = [p for p in prepared if p[3] not in known]
            photos = [photo_key(p[0].source, p[0].path, p[0].seen and format_time(p[0].seen))
                      for p in fresh]
            change = self.clusters.add(np.array([p[1] for p in fresh]).reshape(-1, self.dim),
                                       range(len(fresh)), photos)
            now = format_time(utc_now())
            for cluster_id in change.created:
                db.execute("INSERT INTO unknown_clusters(id, created) VALUES (?, ?)",
                           [cluster_id, now])
            final = dict(change.merged)  # absorbed -> the cluster it went into

            def destination(cluster_id: int) -> int:
                while cluster_id in final:
                    cluster_id = final[cluster_id]
                return cluster_id

            for absorbed, _into in change.merged:
                if not self._cluster_exists(db, absorbed):
                    continue  # made and merged away within this call
                into = destination(absorbed)
                db.execute("UPDATE unknown_faces SET cluster_id = ? WHERE cluster_id = ?",
                           [into, absorbed])
                # a cluster the user ignored stays ignored with what it absorbed
                db.execute("UPDATE unknown_clusters SET ignored = 1 WHERE id = ? AND "
                           "(SELECT ignored FROM unknown_clusters WHERE id = ?) = 1",
                           [into, absorbed])
                db.execute("DELETE FROM unknown_clusters WHERE id = ?", [absorbed])
            result = []
            for key, (face, vector, jpeg, digest) in enumerate(fresh):
                cluster_id = change.assigned[key]
                row = db.execute(
                    "INSERT INTO unknown_faces(cluster_id, seen, source, path, box, crop, "
                    "landmarks, quality, enrollable, model_id, dim, vector, content_hash, "
                    "event_uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [cluster_id, format_time(face.seen or utc_now()), face.source, face.path,
                     json.dumps(list(face.box)) if face.box is not None else None, jpeg,
                     landmarks_json(np.asarray(face.landmarks, np.float32)),
                     float(face.quality), int(bool(face.enrollable)), self.model_id,
                     self.dim, vector.tobytes(), digest, face.event_uid]).fetchone()
                result.append((row[0], cluster_id))
            for face, _vector, _jpeg, digest in prepared:
                if digest in known:
                    cluster = db.execute("SELECT cluster_id FROM unknown_faces WHERE id = ?",
                                         [known[digest]]).fetchone()
                    result.append((known[digest], cluster[0]))
            if sightings:
                by_digest = {p[3]: p[0] for p in prepared}
                ids = dict(zip([p[3] for p in fresh], [r[0] for r in result[:len(fresh)]]))
                ids.update(known)
                for digest, face in by_digest.items():
                    if face.path and face.box is not None:
                        db.execute("INSERT INTO sightings(path, unknown_id, box, scanned) "
                                   "VALUES (?, ?, ?, ?)",
                                   [face.path, ids[digest], json.dumps(list(face.box)), now])
            self.gallery.write_state(db, STATE_CLUSTER_COUNTER, self.clusters.next_id)
            self._bump(db)
        return result

    @staticmethod
    def _cluster_exists(db, cluster_id: int) -> bool:
        return db.execute("SELECT 1 FROM unknown_clusters WHERE id = ?",
                          [cluster_id]).fetchone() is not None

    # ------------------------------------------------------------------- reading

    def list(self, include_ignored: bool = False, best: int = 6) -> list[Cluster]:
        """Clusters, biggest first."""
        with self.gallery.reading() as db:
            where = "" if include_ignored else "WHERE c.ignored = 0"
            rows = db.execute(
                "SELECT c.id, c.ignored, count(f.id), min(f.seen), max(f.seen) "
                "FROM unknown_clusters c JOIN unknown_faces f ON f.cluster_id = c.id "
                f"AND f.model_id = ? {where} GROUP BY c.id ORDER BY count(f.id) DESC, c.id",
                [self.model_id]).fetchall()
            clusters = []
            for cid, ignored, size, first, last in rows:
                faces = db.execute("SELECT id, path, source FROM unknown_faces "
                                   "WHERE cluster_id = ? ORDER BY seen DESC", [cid]).fetchall()
                ranked = db.execute("SELECT id FROM unknown_faces WHERE cluster_id = ? "
                                    "ORDER BY enrollable DESC, quality DESC LIMIT ?",
                                    [cid, best]).fetchall()
                paths = sorted({f[1] for f in faces if f[1]})
                sources = list(dict.fromkeys(f[2] for f in faces if f[2]))
                clusters.append(Cluster(cid, size, bool(ignored), parse_time(first),
                                        parse_time(last), paths, sources,
                                        [r[0] for r in ranked]))
        return clusters

    def cluster(self, cluster_id: int) -> Cluster:
        for c in self.list(include_ignored=True):
            if c.id == int(cluster_id):
                return c
        raise NotFound(f"no unknown cluster with id {cluster_id}")

    def faces(self, cluster_id: int) -> list[StoredUnknown]:
        """A cluster's faces, best quality first."""
        with self.gallery.reading() as db:
            rows = db.execute(
                "SELECT id, cluster_id, seen, source, path, box, quality, enrollable "
                "FROM unknown_faces WHERE cluster_id = ? "
                "ORDER BY enrollable DESC, quality DESC, id", [int(cluster_id)]).fetchall()
        return [StoredUnknown(r[0], r[1], parse_time(r[2]), r[3], r[4],
                              tuple(json.loads(r[5])) if r[5] else None, r[6], bool(r[7]))
                for r in rows]

    def crop(self, face_id: int) -> np.ndarray:
        """The face's storage canvas (RGB)."""
        with self.gallery.reading() as db:
            row = db.execute("SELECT crop FROM unknown_faces WHERE id = ?",
                             [int(face_id)]).fetchone()
        if row is None:
            raise NotFound(f"no unknown face with id {face_id}")
        return _decode(row[0])

    def count(self) -> int:
        with self.gallery.reading() as db:
            return db.execute("SELECT count(*) FROM unknown_faces").fetchone()[0]

    # ------------------------------------------------------------------ changes

    def _require_cluster(self, db, cluster_id) -> int:
        cid = int(cluster_id)
        if not self._cluster_exists(db, cid):
            raise NotFound(f"no unknown cluster with id {cid}")
        return cid

    def name_cluster(self, cluster_id: int, person: str | int,
                     embed=None) -> tuple[int, list[int], int]:
        """Enroll the cluster's good faces (those that passed the enrollment checks)
        as samples of `person` (a new name or a person id), in one transaction that
        also moves its sightings to the person and forgets its unknown faces. `embed`
        (samples -> vectors) re-embeds faces kept under another model. Returns
        (person id, new face ids, faces left out for their quality)."""
        with self.gallery.reading() as db:
            cid = self._require_cluster(db, cluster_id)
            rows = db.execute(
                "SELECT id, crop, landmarks, quality, source, model_id, vector, enrollable "
                "FROM unknown_faces WHERE cluster_id = ? ORDER BY quality DESC", [cid]).fetchall()
        good = [r for r in rows if r[7]]
        if not good:
            raise GalleryError(f"no face in cluster {cid} is good enough to enroll "
                               "(too small, blurred, turned or badly lit): enroll this "
                               "person from better photos")
        samples = [FaceSample(crop=_decode(r[1]), landmarks=landmarks_from_json(r[2]),
                              quality=float(r[3]), source=r[4] or f"unknown cluster {cid}")
                   for r in good]
        if all(r[5] == self.model_id for r in good):
            vectors = np.frombuffer(b"".join(r[6] for r in good), np.float32).reshape(-1, self.dim)
        elif embed is not None:
            vectors = np.asarray(embed(samples), np.float32)
        else:
            raise GalleryError(f"cluster {cid} was kept under another model: re-embed it")
        g = self.gallery
        rows_in, matrices = g.prepare_samples(samples, {self.model_id: vectors})
        with g.writing() as db:
            self._require_cluster(db, cid)
            pid = g.person_for(db, person)
            face_ids = [f for f in g.insert_faces(db, pid, rows_in, matrices) if f is not None]
            db.execute("UPDATE sightings SET person_id = ?, unknown_id = NULL WHERE unknown_id "
                       "IN (SELECT id FROM unknown_faces WHERE cluster_id = ?)", [pid, cid])
            # the events that recorded these faces become the person's: deleting the
            # person later deletes them (and their face pictures) too
            db.execute("UPDATE events SET person_id = ? WHERE uid IN (SELECT event_uid FROM "
                       "unknown_faces WHERE cluster_id = ? AND event_uid IS NOT NULL)",
                       [pid, cid])
            db.execute("DELETE FROM unknown_clusters WHERE id = ?", [cid])  # faces cascade
            self._bump(db)
        self._version = None  # the stored groups changed, the ones in memory did not
        g.checkpoint()
        return pid, face_ids, len(rows) - len(good)

    def ignore_cluster(self, cluster_id: int, ignored: bool = True) -> None:
        """An ignored cluster (a poster, a TV) is no longer listed; faces like it keep
        joining it silently."""
        with self.gallery.writing(bump=False) as db:
            cid = self._require_cluster(db, cluster_id)
            db.execute("UPDATE unknown_clusters SET ignored = ? WHERE id = ?",
                       [int(bool(ignored)), cid])
            self._bump(db)

    def split(self, face_ids) -> int:
        """Move these faces (all from one cluster) into a new cluster of their own."""
        ids = sorted({int(f) for f in face_ids})
        if not ids:
            raise ValueError("choose the faces to split off")
        try:
            return self._split(ids)
        except BaseException:
            self._version = None
            raise

    def _split(self, ids: list[int]) -> int:
        with self.gallery.writing(bump=False) as db:
            self._sync(db)
            rows = db.execute("SELECT id, cluster_id, vector, source, path, seen FROM "
                              "unknown_faces WHERE id IN (%s)" % ",".join("?" * len(ids)),
                              ids).fetchall()
            if len(rows) != len(ids):
                raise NotFound("some of these unknown faces are gone")
            sources = {r[1] for r in rows}
            if len(sources) != 1:
                raise ValueError("the faces to split off must come from one cluster")
            old = sources.pop()
            vectors = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(-1, self.dim)
            if len(ids) == self.clusters.size(old):
                return old  # the whole cluster: nothing to split
            photos = [photo_key(*r[3:]) for r in rows]
            self.clusters.remove(old, vectors, photos)
            new = self.clusters.place(vectors, photos)
            db.execute("INSERT INTO unknown_clusters(id, created) VALUES (?, ?)",
                       [new, format_time(utc_now())])
            db.execute("UPDATE unknown_faces SET cluster_id = ? WHERE id IN (%s)"
                       % ",".join("?" * len(ids)), [new, *ids])
            self.gallery.write_state(db, STATE_CLUSTER_COUNTER, self.clusters.next_id)
            self._bump(db)
        return new

    def remove_faces(self, face_ids) -> int:
        """Forget these unknown faces (clusters left empty go too)."""
        ids = sorted({int(f) for f in face_ids})
        if not ids:
            return 0
        with self.gallery.writing(bump=False) as db:
            gone = db.execute("DELETE FROM unknown_faces WHERE id IN (%s)"
                              % ",".join("?" * len(ids)), ids).rowcount
            db.execute("DELETE FROM unknown_clusters WHERE id NOT IN "
                       "(SELECT DISTINCT cluster_id FROM unknown_faces)")
            self._bump(db)
        self._version = None  # the stored groups changed, the ones in memory did not
        self.gallery.checkpoint()
        return gone

    def remove_cluster(self, cluster_id: int) -> int:
        with self.gallery.reading() as db:
            cid = self._require_cluster(db, cluster_id)
            ids = [r[0] for r in db.execute("SELECT id FROM unknown_faces WHERE cluster_id = ?",
                                            [cid])]
        return self.remove_faces(ids)
