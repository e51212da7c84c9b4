"""The pipeline: frame -> detect -> align -> quality -> embed -> search -> decision.

`FacePipeline` holds the stages (detect, align, embed) and analyses one still image
with them. `Recognizer` runs the same stages with the gallery, the operating point
(identify.py: the decisions; operating.py: thresholds for the gallery's size) and,
for video, a tracker (tracking.py): faces are followed from frame to frame by box
overlap, a track is embedded again only every few frames, and its identity is a vote
over the track, so live video stays fast and names do not flicker. What it decides
goes to the event log through event_writer.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .align import align_face, align_faces, storage_crop
from .detect import Face, MTCNNDetector
from .embed import Embedder
from .event_writer import EventWriter
from .gallery import EventDetails, GalleryUnavailable, retention_days, utc_now
from .identify import ALREADY_IN_PHOTO, POOR_QUALITY, TRACK_VOTE, Decision, Identifier
from .imageio import as_rgb8
from .models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, ModelPack
from .operating import OperatingPoint
from .quality import ENROLLMENT, RECOGNITION, Quality, QualityPolicy, assess
from .tracking import Track, Tracker, appearance, similarity, APPEARANCE_CHANGE, SCENE_CUT
from .unknowns import UnknownFace, UnknownFaces

# Decisions whose face is kept as an unknown face (poor-quality faces are not; an
# ambiguous face is near two enrolled people, so it is probably one of them; a face
# that gave way to a better match of the same person in its photo is someone else:
# a sibling, a look-alike, to be named later).
KEPT_AS_UNKNOWN = ("below threshold", "no gallery", ALREADY_IN_PHOTO)

# How often a station asks its gallery server whether the gallery changed (seconds):
# a person enrolled at one desk is recognised at the others within this.
SERVER_POLL = 0.5


@dataclass
class AnalyzedFace:
    face: Face
    crop: np.ndarray  # aligned, as the embedder takes it (H x W x 3 uint8 RGB)
    embedding: np.ndarray  # unit length


class FacePipeline:
    def __init__(self, detector: MTCNNDetector, embedder: Embedder):
        self.detector = detector
        self.embedder = embedder

    @classmethod
    def create(cls, detector_pack: str | ModelPack = DEFAULT_DETECTOR,
               embedder_pack: str | ModelPack = DEFAULT_EMBEDDER, min_face: int = 40,
               threads: int = 2, variant: str | None = None, flip: bool | None = None):
        detector = MTCNNDetector.from_pack(detector_pack, min_face=min_face, threads=threads)
        embedder = Embedder.from_pack(embedder_pack, variant=variant, threads=threads, flip=flip)
        return cls(detector, embedder)

    # the stages, shared by analyze() and Recognizer.process()

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in an RGB image, best detection first."""
        return self.detector.detect(image)

    def detect_reduced(self, image: np.ndarray, scale: float,
                       min_face: float | None = None) -> list[Face]:
        """Every face of at least min_face pixels of the original (default: the
        detector's minimum times scale) in an image decoded at 1/scale of its size;
        boxes and landmarks in the original's pixels."""
        if min_face is None:
            min_face = self.detector.min_face * scale
        faces = self.detector.detect(image, min_face=min_face / scale)
        for face in faces:  # continuous coordinates: a reduced pixel is scale x scale
            face.box *= np.float32(scale)
            face.landmarks *= np.float32(scale)
        return faces

    def align(self, image: np.ndarray, faces) -> np.ndarray:
        """The faces (Face objects, or their landmarks) as the embedder takes them."""
        landmarks = [getattr(f, "landmarks", f) for f in faces]
        return align_faces(image, landmarks, self.embedder.template)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Unit embeddings of aligned crops, in one batch (searches: one pass)."""
        if len(crops) == 0:
            return np.zeros((0, self.embedder.dim), np.float32)
        return self.embedder.embed(crops)

    def analyze(self, image: np.ndarray) -> list[AnalyzedFace]:
        """Every face in the image, best detection first, all embedded in one batch."""
        image = as_rgb8(image)
        faces = self.detect(image)
        crops = self.align(image, faces)
        embeddings = self.embed(crops)
        return [AnalyzedFace(f, c, e) for f, c, e in zip(faces, crops, embeddings)]


@dataclass
class RecognizedFace:
    track_id: int
    face: Face
    decision: Decision
    quality: Quality | None
    fresh: bool  # embedded in this frame (else the track's identity was carried over)
    embedding: np.ndarray | None = None  # the track's latest look (unit length)
    event_uid: str | None = None  # the event the log holds for this face's track, if any


@dataclass
class FrameResult:
    faces: list[RecognizedFace]
    timings_ms: dict[str, float]


class Recognizer:
    """Identifies faces against a gallery; one instance per video stream."""

    def __init__(self, pipeline: FacePipeline, gallery,
                 point: OperatingPoint | str | float | None = None,
                 quality_policy: QualityPolicy = RECOGNITION, reembed_every: int = 10,
                 confident_votes: int = 3, log_events: bool = True,
                 keep_thumbnails: bool = True, keep_unknowns: bool = True):
        self.pipeline = pipeline
        self.gallery = gallery
        self.quality_policy = quality_policy
        self.reembed_every = reembed_every
        self.confident_votes = confident_votes
        # a gallery this user cannot write (read-only use) keeps no log
        self.log_events = log_events and not getattr(gallery, "read_only", False)
        self.keep_thumbnails = keep_thumbnails
        self.tracker = Tracker()
        # Two looks at one track below this similarity are two different people.
        self.same_face = pipeline.embedder.threshold(1e-2)
        self.identifier = Identifier(pipeline.embedder.dim, pipeline.embedder.calibration(),
                                     point,
                                     own_calibration=pipeline.embedder.template_calibration())
        self._index_version = None
        self._next_poll = 0.0
        self.offline = False  # a gallery server could not be reached at the last look
        self.names: dict[int, str] = {}  # person id -> name, as of the index
        # faces nobody was recognised as are kept (and grouped) while the gallery's
        # retention period is above 0 days
        self.unknowns = None
        # with a retention of 0 days no face picture of a stranger is kept anywhere,
        # their events' pictures included
        self.keeps_strangers = retention_days(gallery) > 0
        if keep_unknowns and not getattr(gallery, "read_only", False) \
                and self.keeps_strangers:
            embedder = pipeline.embedder
            self.unknowns = UnknownFaces(gallery, embedder.model_id, embedder.dim,
                                         embedder.clustering_threshold())
        self.events = EventWriter(gallery, self.unknowns)
        self._frame_no = 0
        self._last_frame = None  # whole-frame thumbnail, to notice cuts
        self.refresh_index()

    @property
    def model_id(self) -> str:
        return self.pipeline.embedder.model_id

    @property
    def index(self):
        return self.identifier.index

    @property
    def rule(self):
        """The operating point as it stands for the gallery now (threshold, FPIR)."""
        return self.identifier.rule

    def set_point(self, point: OperatingPoint | str | float) -> None:
        self.identifier.set_point(point)

    def refresh_index(self, force: bool = False) -> None:
        """Rebuild the in-memory index (and re-resolve the operating point for the
        gallery's new size) when the gallery changed. The templates and the names come
        from one snapshot, so a face is never matched to a person whose name this
        reader has not seen (imports may be writing meanwhile).

        A gallery on a server is asked at most every SERVER_POLL seconds (another
        station's enrollment shows within that); while the server cannot be reached,
        recognition goes on with the last index (`offline` says so)."""
        remote = getattr(self.gallery, "remote", False)
        now = time.monotonic()
        if remote and not force and self._index_version is not None \
                and now < self._next_poll:
            return
        self._next_poll = now + SERVER_POLL
        try:
            with self.gallery.snapshot():
                version = self.gallery.data_version()
                if not force and version == self._index_version:
                    self.offline = False
                    return
                face_ids, person_ids, matrix = self.gallery.embeddings(self.model_id)
                names = self.gallery.person_names()
        except GalleryUnavailable:
            if not remote or self._index_version is None:
                raise
            self.offline = True
            return
        self.offline = False
        self.identifier.replace(face_ids, person_ids, matrix, owned=True)
        self.names = names
        self._index_version = version

    def _needs_embedding(self, track: Track, thumbnail: np.ndarray, cut: bool) -> str | None:
        """Why this track must be embedded in this frame ("new", "changed", "due"), or
        None when its identity can be carried over."""
        if track.embeddings == 0 or track.thumbnail is None:
            return "new"
        if cut or similarity(track.thumbnail, thumbnail) < APPEARANCE_CHANGE:
            return "changed"  # maybe someone else now: no name until it is looked at
        unsettled = track.embeddings < self.confident_votes
        age = self._frame_no - track.embedded_at
        return "due" if age >= (1 if unsettled else self.reembed_every) else None

    def _scene_cut(self, image: np.ndarray) -> bool:
        frame = appearance(image, 32)
        previous, self._last_frame = self._last_frame, frame
        return previous is not None and similarity(previous, frame) < SCENE_CUT

    def process(self, image: np.ndarray, source: str = "", track: bool = True,
                path: str | None = None, faces: list[Face] | None = None) -> FrameResult:
        """source: where the frame is, in words (events); path: the file it came from;
        faces: already found in this image (a scan detects on a reduced decode in its
        workers), else the detector looks."""
        timings = {}
        started = time.perf_counter()
        image = as_rgb8(image)
        self.refresh_index()
        self.events.flush()  # what waits from before (a lock, a server away)
        faces = self.pipeline.detect(image) if faces is None else list(faces)
        timings["detect"] = (time.perf_counter() - started) * 1000
        self._frame_no += 1
        if track:
            tracks = self.tracker.update(faces, self._frame_no)
        else:
            tracks = [Track(-1, face, self._frame_no) for face in faces]

        t0 = time.perf_counter()
        all_crops = self.pipeline.align(image, [t.face for t in tracks])
        thumbnails = [appearance(crop) for crop in all_crops]
        cut = track and self._scene_cut(image)
        why = [self._needs_embedding(t, thumbnails[i], cut) if track else "new"
               for i, t in enumerate(tracks)]
        for t, thumbnail in zip(tracks, thumbnails):
            t.thumbnail = thumbnail
        chosen_rows = [i for i, reason in enumerate(why) if reason]
        todo = [tracks[i] for i in chosen_rows]
        crops = all_crops[chosen_rows]
        usable = []
        for row, t, crop in zip(chosen_rows, todo, crops):
            t.quality = assess(t.face, crop, self.quality_policy)
            usable.append(t.quality.ok)
            if not t.quality.ok and why[row] == "changed":
                # the face under this track changed and cannot be checked: drop the name
                t.decision = Decision(None, 0.0, None, POOR_QUALITY)
        timings["align+quality"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        chosen = [i for i, ok in enumerate(usable) if ok]
        vectors = self.pipeline.embed(crops[chosen])
        timings["embed"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        matches = self.identifier.search(vectors)
        looked = {}  # track -> (its candidates now, its embedding now)
        for i, found, vector in zip(chosen, matches, vectors):
            t = todo[i]
            if track and t.reference is not None and float(vector @ t.reference) < self.same_face:
                t = todo[i] = tracks[chosen_rows[i]] = self.tracker.split(t)
            t.reference = vector
            looked[id(t)] = (found, vector)
            single = self.identifier.decide(found)
            t.embeddings += 1
            t.embedded_at = self._frame_no
            # Vote with the score, so one strong sighting outweighs a weak one.
            voter = single.person_id
            t.votes[voter] = t.votes.get(voter, 0.0) + max(single.score, 0.01)
            t.best[voter] = max(t.best.get(voter, -1.0), single.score)
            winner = max(t.votes, key=t.votes.get)
            if winner == voter:
                t.decision = single
            else:  # the track's earlier looks outvote this one: say so, and who was nearest
                t.decision = replace(single, person_id=winner, score=t.best[winner],
                                     reason=TRACK_VOTE)
        for i, ok in enumerate(usable):
            if not ok and todo[i].decision is None:
                todo[i].decision = Decision(None, 0.0, None, POOR_QUALITY)
        # Nobody is two faces of one frame (siblings, look-alikes): the better match
        # keeps the name, the other takes its next candidate or gives way (identify.py).
        # Tracks not looked at now compete with the name they carry; votes stay as cast.
        now = [looked.get(id(t), ([], None)) for t in tracks]
        for t, decision in zip(tracks, self.identifier.decide_together(
                [found for found, _ in now], [t.decision for t in tracks],
                [vector for _, vector in now])):
            t.decision = decision
        timings["search"] = (time.perf_counter() - t0) * 1000

        if self.log_events:
            self._log(image, tracks, source, settle=track, path=path)
        embedded_now = {id(t) for t in todo}
        results = [RecognizedFace(t.track_id, t.face, t.decision, t.quality,
                                  fresh=id(t) in embedded_now, embedding=t.reference,
                                  event_uid=t.event_uid)
                   for t in tracks]
        timings["total"] = (time.perf_counter() - started) * 1000
        return FrameResult(results, timings)

    def _log(self, image: np.ndarray, tracks: list[Track], source: str, settle: bool,
             path: str | None = None) -> None:
        """One event per track and identity: when it is decided, and when it changes.
        In video an unknown face is logged once a second look confirms it."""
        # one time for this frame's faces: a camera's frame is told apart by it, and
        # faces of one frame are never grouped as one person (unknowns.photo_key)
        seen = utc_now()
        for t in tracks:
            if t.decision is None or t.decision.reason == "poor quality":
                continue
            settled = (not settle or t.embeddings >= min(self.confident_votes, 2)
                       or t.decision.known)
            if not settled or t.logged_person == t.decision.person_id:
                continue
            thumbnail = None
            d = t.decision
            if self.keep_thumbnails and (d.known or self.keeps_strangers):
                crop = align_face(image, t.face.landmarks, "arcface112")
                ok, encoded = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
                thumbnail = encoded.tobytes() if ok else None
            uid = self.events.add(d.person_id, d.score, source, thumbnail, EventDetails(
                reason=d.reason, nearest_id=d.nearest_id, runner_up_id=d.runner_up_id,
                runner_up_score=d.runner_up, box=tuple(float(v) for v in t.face.box)))
            t.logged_person, t.event_uid = t.decision.person_id, uid
            if self.unknowns is not None and d.reason in KEPT_AS_UNKNOWN \
                    and t.reference is not None:
                face = self.unknown_face(image, t.face, t.quality, t.reference, source, path)
                face.event_uid = uid
                face.seen = seen
                self.events.keep(face)

    def unknown_face(self, image: np.ndarray, face: Face, quality: Quality | None,
                     vector: np.ndarray, source: str, path: str | None) -> UnknownFace:
        """A face as an unknown face to keep: its canvas and its embedding."""
        canvas, landmarks = storage_crop(image, face.landmarks)
        model_crop = align_face(image, face.landmarks, self.pipeline.embedder.template)
        return UnknownFace(
            crop=canvas, landmarks=landmarks, vector=vector,
            quality=quality.score if quality else 0.0,
            enrollable=assess(face, model_crop, ENROLLMENT).ok,
            source=source, path=path, box=tuple(float(v) for v in face.box))
