"""The pipeline: frame -> detect -> align -> quality -> embed -> search -> decision.

`FacePipeline` analyses one still image. `Recognizer` adds the gallery, the operating
point (identify.py: the decisions; operating.py: thresholds for the gallery's size) and,
for video, a tracker: faces are followed from frame to frame by box overlap, a track
is embedded again only every few frames, and its identity is a vote over the track,
so live video stays fast and names do not flicker.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .align import align_face, align_faces, storage_crop
from .detect import Face, MTCNNDetector
from .embed import Embedder
from .imageio import as_rgb8
from .gallery import EventDetails, NotFound
from .gallery_files import GalleryUnavailable
from .identify import POOR_QUALITY, TRACK_VOTE, Decision, Identifier
from .models import ModelPack, ModelPackError
from .operating import OperatingPoint
from .quality import ENROLLMENT, RECOGNITION, Quality, QualityPolicy, assess
from .unknowns import UnknownFace, UnknownFaces, retention_days

# Decisions whose face is kept as an unknown face (poor-quality faces are not; an
# ambiguous face is near two enrolled people, so it is probably one of them).
KEPT_AS_UNKNOWN = ("below threshold", "no gallery")

# How often a station asks its gallery server whether the gallery changed (seconds):
# a person enrolled at one desk is recognised at the others within this.
SERVER_POLL = 0.5

DEFAULT_DETECTOR = "mtcnn-v1"
# The distilled student: as accurate as the teacher on LFW pairs at under half its
# time per searched face, and within 3 points of it naming 1,680 people (README,
# "Distilled students"). The teacher (dlib-resnet-v1) is the accurate choice.
DEFAULT_EMBEDDER = "dlib-taper-150-v1"


def embedder_for_gallery(gallery) -> tuple[str, str | None]:
    """The embedder (pack, variant) for a gallery whose user has chosen none.

    The default, unless every template in the gallery belongs to another installed
    pack (enrolled with `--model`, or before the default changed): the gallery keeps
    recognising its people with the model that made their templates, until the user
    switches in Settings (which computes the new model's templates first).
    """
    models = gallery.models() if gallery is not None else {}
    if not models or any(model_id.partition(":")[0] == DEFAULT_EMBEDDER for model_id in models):
        return DEFAULT_EMBEDDER, None
    for model_id, _count in sorted(models.items(), key=lambda item: -item[1]):
        pack, _, variant = model_id.partition(":")
        try:
            ModelPack.load(pack)
        except ModelPackError:  # that model is no longer installed
            continue
        return pack, variant or None
    return DEFAULT_EMBEDDER, None

# Correlation of a track's tiny face thumbnail with the previous frame's below which
# the face is looked at again before any name is shown. Measured on LFW's aligned faces:
# one face with sensor noise, a 5% gain and a pixel of landmark jitter stays above 0.89
# in 99% of cases; two different people exceed 0.83 in 0.1% of pairs (and 0.6 in 5%,
# the old value, which carried names across cuts).
APPEARANCE_CHANGE = 0.85
# Correlation of the whole frame's thumbnail with the previous one below which the
# frame is a cut (another shot, another camera): every face is looked at again.
SCENE_CUT = 0.9


def appearance(crop: np.ndarray, size: int = 16) -> np.ndarray:
    """A tiny zero-mean, unit-variance grey thumbnail: cheap to compare every frame."""
    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (size, size),
                      interpolation=cv2.INTER_AREA).astype(np.float32)
    grey -= grey.mean()
    return grey / max(float(grey.std()), 1e-3)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two thumbnails made by appearance()."""
    return float(np.mean(a * b))


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

    def analyze(self, image: np.ndarray) -> list[AnalyzedFace]:
        """Every face in the image, best detection first, all embedded in one batch."""
        image = as_rgb8(image)
        faces = self.detector.detect(image)
        crops = align_faces(image, [f.landmarks for f in faces], self.embedder.template)
        embeddings = self.embedder.embed(crops)
        return [AnalyzedFace(f, c, e) for f, c, e in zip(faces, crops, embeddings)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N x 4) and b (M x 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass(eq=False)
class Track:
    track_id: int
    face: Face
    last_seen: int  # frame number
    embedded_at: int = -1_000_000
    embeddings: int = 0
    votes: dict[int | None, float] = field(default_factory=dict)
    best: dict[int | None, float] = field(default_factory=dict)  # best score per identity
    decision: Decision | None = None
    quality: Quality | None = None
    logged_person: object = "nobody yet"  # the identity last written to the event log
    reference: np.ndarray | None = None  # embedding of the last look
    thumbnail: np.ndarray | None = None  # tiny normalised face in the previous frame


@dataclass
class RecognizedFace:
    track_id: int
    face: Face
    decision: Decision
    quality: Quality | None
    fresh: bool  # embedded in this frame (else the track's identity was carried over)
    embedding: np.ndarray | None = None  # the track's latest look (unit length)


@dataclass
class FrameResult:
    faces: list[RecognizedFace]
    timings_ms: dict[str, float]


class Tracker:
    """Greedy IoU association of detections with the tracks of the previous frames."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 10):
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def split(self, track: Track) -> Track:
        """A different person took over this track (a cut, or someone stepping in)."""
        fresh = Track(self._next_id, track.face, track.last_seen, thumbnail=track.thumbnail)
        self._next_id += 1
        del self.tracks[track.track_id]
        self.tracks[fresh.track_id] = fresh
        return fresh

    def update(self, faces: list[Face], frame_no: int) -> list[Track]:
        live = [t for t in self.tracks.values() if frame_no - t.last_seen <= self.max_missed]
        self.tracks = {t.track_id: t for t in live}
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        iou = box_iou(boxes, np.array([t.face.box for t in live]).reshape(-1, 4))
        assigned: list[Track | None] = [None] * len(faces)
        while iou.size and iou.max() >= self.min_iou:
            i, j = np.unravel_index(int(np.argmax(iou)), iou.shape)
            assigned[i] = live[j]
            iou[i, :] = -1
            iou[:, j] = -1
        result = []
        for face, track in zip(faces, assigned):
            if track is None:
                track = Track(self._next_id, face, frame_no)
                self.tracks[track.track_id] = track
                self._next_id += 1
            track.face, track.last_seen = face, frame_no
            result.append(track)
        return result


class EventWriter:
    """Writes events (and unknown faces) without ever stopping recognition.

    While another program holds the gallery's write lock, they wait in memory (the
    newest MAX_PENDING) and are written when it is free, retrying with a growing
    pause (1 s up to RETRY_MAX). While a gallery server cannot be reached, events go
    to a local spool file (event_spool.py) and are sent, oldest first and each once,
    when it is back; unknown faces wait in memory meanwhile."""

    MAX_PENDING = 2000
    WAIT = 0.5  # seconds one try waits for the lock (recognition is waiting too)
    RETRY_MAX = 30.0

    def __init__(self, gallery, unknowns: UnknownFaces | None = None, spool=None):
        self.gallery = gallery
        self.unknowns = unknowns
        self.pending: list = []  # QueuedEvent and UnknownFace objects, in order
        self.dropped = 0  # past MAX_PENDING while locked
        self.locked_since: float | None = None  # monotonic time; None: saving normally
        self.offline_since: float | None = None  # the server could not be reached
        if spool is None and getattr(gallery, "remote", False):
            from .event_spool import EventSpool, spool_path_for

            spool = EventSpool(spool_path_for(str(gallery.path)))
        self.spool = spool
        self.spooled = len(spool) if spool is not None else 0
        self._retry_at = 0.0
        self._pause = 1.0

    @property
    def paused(self) -> bool:
        return self.locked_since is not None

    @property
    def offline(self) -> bool:
        return self.offline_since is not None

    def add(self, person_id, score, source, thumbnail, details) -> None:
        from .event_spool import QueuedEvent
        from .gallery_values import _fmt_time, utc_now

        # its id and time are fixed now: sent later, or twice, it is the same event
        self._queue(QueuedEvent(uuid.uuid4().hex, _fmt_time(utc_now()), person_id, score,
                                source, thumbnail, details))

    def keep(self, face: UnknownFace) -> None:
        """Keep an unknown face (in order with the events)."""
        self._queue(face)

    def _queue(self, item) -> None:
        self.pending.append(item)
        if self.offline_since is not None:
            self._spool_pending()  # on disk at once: the station may be closed before
        if len(self.pending) > self.MAX_PENDING:
            del self.pending[0]
            self.dropped += 1
        self.flush()

    def _send(self, event, wait: float) -> None:
        from .gallery_values import _parse_time

        when = _parse_time(event.time)
        try:
            self.gallery.add_event(event.person_id, event.score, event.source, event.thumbnail,
                                   time=when, details=event.details, wait=wait, uid=event.uid)
        except NotFound:  # the person was deleted meanwhile
            self.gallery.add_event(None, event.score, event.source, event.thumbnail,
                                   time=when, details=event.details, wait=wait, uid=event.uid)

    def _spool_pending(self) -> None:
        from .event_spool import QueuedEvent

        if self.spool is None:
            return
        events = [item for item in self.pending if isinstance(item, QueuedEvent)]
        if events:
            self.spool.put(events)
            self.spooled += len(events)
            self.pending = [item for item in self.pending if not isinstance(item, QueuedEvent)]

    def flush(self, force: bool = False, wait: float | None = None) -> None:
        """Write what waits (force: now, not at the next retry time; wait: seconds to
        wait for the lock on each write, e.g. longer before a program ends)."""
        from .gallery import GalleryLocked

        wait = self.WAIT if wait is None else wait
        now = time.monotonic()
        if not (self.pending or self.spooled) or (not force and now < self._retry_at):
            return
        try:
            while self.spooled:
                batch = self.spool.oldest()
                if not batch:
                    self.spooled = 0
                    break
                for event in batch:
                    self._send(event, wait)
                    self.spool.remove(event.uid)  # only once the server has it
                    self.spooled -= 1
            while self.pending:
                if isinstance(self.pending[0], UnknownFace):
                    if self.unknowns is not None:
                        try:
                            self.unknowns.add([self.pending[0]])
                        except ValueError:  # a face that cannot be kept is dropped
                            self.dropped += 1
                    self.pending.pop(0)
                    continue
                self._send(self.pending[0], wait)
                self.pending.pop(0)
        except GalleryLocked:
            if self.locked_since is None:
                self.locked_since = now
            self._retry_later(now)
            return
        except GalleryUnavailable:
            if self.offline_since is None:
                self.offline_since = now
            self._spool_pending()
            self._retry_later(now)
            return
        self.locked_since = self.offline_since = None
        self._pause = 1.0

    def _retry_later(self, now: float) -> None:
        self._retry_at = now + self._pause
        self._pause = min(self._pause * 2, self.RETRY_MAX)


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
        if keep_unknowns and not getattr(gallery, "read_only", False) \
                and retention_days(gallery) > 0:
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
                path: str | None = None) -> FrameResult:
        """source: where the frame is, in words (events); path: the file it came from."""
        timings = {}
        started = time.perf_counter()
        image = as_rgb8(image)
        self.refresh_index()
        self.events.flush()  # what waits from before (a lock, a server away)
        faces = self.pipeline.detector.detect(image)
        timings["detect"] = (time.perf_counter() - started) * 1000
        self._frame_no += 1
        if track:
            tracks = self.tracker.update(faces, self._frame_no)
        else:
            tracks = [Track(-1, face, self._frame_no) for face in faces]

        t0 = time.perf_counter()
        embedder = self.pipeline.embedder
        all_crops = align_faces(image, [t.face.landmarks for t in tracks], embedder.template)
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
        vectors = embedder.embed(crops[chosen]) if chosen else np.zeros((0, embedder.dim))
        timings["embed"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        matches = self.identifier.search(vectors)
        for i, found, vector in zip(chosen, matches, vectors):
            t = todo[i]
            if track and t.reference is not None and float(vector @ t.reference) < self.same_face:
                t = todo[i] = tracks[chosen_rows[i]] = self.tracker.split(t)
            t.reference = vector
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
        timings["search"] = (time.perf_counter() - t0) * 1000

        embedded_now = {id(t) for t in todo}
        results = [RecognizedFace(t.track_id, t.face, t.decision, t.quality,
                                  fresh=id(t) in embedded_now, embedding=t.reference)
                   for t in tracks]
        if self.log_events:
            self._log(image, tracks, source, settle=track, path=path)
        timings["total"] = (time.perf_counter() - started) * 1000
        return FrameResult(results, timings)

    def _log(self, image: np.ndarray, tracks: list[Track], source: str, settle: bool,
             path: str | None = None) -> None:
        """One event per track and identity: when it is decided, and when it changes.
        In video an unknown face is logged once a second look confirms it."""
        for t in tracks:
            if t.decision is None or t.decision.reason == "poor quality":
                continue
            settled = (not settle or t.embeddings >= min(self.confident_votes, 2)
                       or t.decision.known)
            if not settled or t.logged_person == t.decision.person_id:
                continue
            thumbnail = None
            if self.keep_thumbnails:
                crop = align_face(image, t.face.landmarks, "arcface112")
                ok, encoded = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
                thumbnail = encoded.tobytes() if ok else None
            d = t.decision
            self.events.add(d.person_id, d.score, source, thumbnail, EventDetails(
                reason=d.reason, nearest_id=d.nearest_id, runner_up_id=d.runner_up_id,
                runner_up_score=d.runner_up, box=tuple(float(v) for v in t.face.box)))
            t.logged_person = t.decision.person_id
            if self.unknowns is not None and d.reason in KEPT_AS_UNKNOWN \
                    and t.reference is not None:
                self.events.keep(self.unknown_face(image, t.face, t.quality, t.reference,
                                                   source, path))

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
