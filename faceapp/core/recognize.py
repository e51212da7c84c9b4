"""The pipeline: frame -> detect -> align -> quality -> embed -> search -> decision.

`FacePipeline` analyses one still image. `Recognizer` adds the gallery, thresholds and,
for video, a tracker: faces are followed from frame to frame by box overlap, a track
is embedded again only every few frames, and its identity is a vote over the track,
so live video stays fast and names do not flicker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from .align import align_face, align_faces
from .detect import Face, MTCNNDetector
from .embed import Embedder
from .imageio import as_rgb8
from .index import FaceIndex, Match
from .models import ModelPack, ModelPackError
from .quality import RECOGNITION, Quality, QualityPolicy, assess

DEFAULT_DETECTOR = "mtcnn-v1"
DEFAULT_EMBEDDER = "dlib-resnet-v1"

# Named operating points: the false accept rate each one allows between two people.
OPERATING_POINTS = {"strict": 1e-4, "balanced": 1e-3, "lenient": 1e-2}
# Correlation of a track's tiny face thumbnails below which it is looked at again.
APPEARANCE_CHANGE = 0.6


def appearance(crop: np.ndarray) -> np.ndarray:
    """A 16x16 zero-mean, unit-variance grey thumbnail: cheap to compare every frame."""
    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (16, 16),
                      interpolation=cv2.INTER_AREA).astype(np.float32)
    grey -= grey.mean()
    return grey / max(float(grey.std()), 1e-3)


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


@dataclass(frozen=True)
class Thresholds:
    accept: float  # cosine a person's best score must reach
    margin: float = 0.05  # and by how much it must beat the next person

    @classmethod
    def for_embedder(cls, embedder: Embedder, level: str | float = "balanced",
                     margin: float = 0.05) -> "Thresholds":
        """A named operating point (strict / balanced / lenient) or a cosine value."""
        if isinstance(level, str):
            if level not in OPERATING_POINTS:
                raise ValueError(f"unknown operating point '{level}' "
                                 f"(choose {', '.join(OPERATING_POINTS)} or a number)")
            return cls(embedder.threshold(OPERATING_POINTS[level]), margin)
        return cls(float(level), margin)


@dataclass
class Decision:
    person_id: int | None  # None: unknown
    score: float  # best person's score (even when unknown)
    runner_up: float | None
    reason: str  # "match", "no gallery", "below threshold", "ambiguous", "poor quality"

    @property
    def known(self) -> bool:
        return self.person_id is not None


def decide(matches: list[Match], thresholds: Thresholds) -> Decision:
    if not matches:
        return Decision(None, 0.0, None, "no gallery")
    best = matches[0]
    second = matches[1].score if len(matches) > 1 else None
    if best.score < thresholds.accept:
        return Decision(None, best.score, second, "below threshold")
    if second is not None and best.score - second < thresholds.margin:
        return Decision(None, best.score, second, "ambiguous")
    return Decision(best.person_id, best.score, second, "match")


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
    thumbnail: np.ndarray | None = None  # tiny normalised face at the last look


@dataclass
class RecognizedFace:
    track_id: int
    face: Face
    decision: Decision
    quality: Quality | None
    fresh: bool  # embedded in this frame (else the track's identity was carried over)


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
        fresh = Track(self._next_id, track.face, track.last_seen)
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


class Recognizer:
    """Identifies faces against a gallery; one instance per video stream."""

    def __init__(self, pipeline: FacePipeline, gallery, thresholds: Thresholds,
                 quality_policy: QualityPolicy = RECOGNITION, reembed_every: int = 10,
                 confident_votes: int = 3, log_events: bool = True,
                 keep_thumbnails: bool = True):
        self.pipeline = pipeline
        self.gallery = gallery
        self.thresholds = thresholds
        self.quality_policy = quality_policy
        self.reembed_every = reembed_every
        self.confident_votes = confident_votes
        self.log_events = log_events
        self.keep_thumbnails = keep_thumbnails
        self.tracker = Tracker()
        # Two looks at one track below this similarity are two different people.
        try:
            self.same_face = pipeline.embedder.threshold(1e-2)
        except ModelPackError:
            self.same_face = thresholds.accept
        self.index = FaceIndex(pipeline.embedder.dim)
        self._index_version = None
        self._frame_no = 0
        self.refresh_index()

    @property
    def model_id(self) -> str:
        return self.pipeline.embedder.model_id

    def refresh_index(self, force: bool = False) -> None:
        """Rebuild the in-memory index when the gallery changed."""
        version = self.gallery.data_version()
        if force or version != self._index_version:
            face_ids, person_ids, matrix = self.gallery.embeddings(self.model_id)
            self.index.replace(face_ids, person_ids, matrix, owned=True)
            self._index_version = version

    def _needs_embedding(self, track: Track, thumbnail: np.ndarray) -> bool:
        if track.embeddings == 0 or track.thumbnail is None:
            return True
        if float(np.mean(track.thumbnail * thumbnail)) < APPEARANCE_CHANGE:
            return True  # the face looks different now: look again at once
        unsettled = track.embeddings < self.confident_votes
        age = self._frame_no - track.embedded_at
        return age >= (1 if unsettled else self.reembed_every)

    def process(self, image: np.ndarray, source: str = "", track: bool = True) -> FrameResult:
        timings = {}
        started = time.perf_counter()
        image = as_rgb8(image)
        self.refresh_index()
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
        chosen_rows = [i for i, t in enumerate(tracks)
                       if not track or self._needs_embedding(t, thumbnails[i])]
        todo = [tracks[i] for i in chosen_rows]
        crops = all_crops[chosen_rows]
        usable = []
        for t, crop in zip(todo, crops):
            t.quality = assess(t.face, crop, self.quality_policy)
            usable.append(t.quality.ok)
        timings["align+quality"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        chosen = [i for i, ok in enumerate(usable) if ok]
        vectors = embedder.embed(crops[chosen]) if chosen else np.zeros((0, embedder.dim))
        timings["embed"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        matches = self.index.search(vectors, k=2)
        for i, found, vector in zip(chosen, matches, vectors):
            t = todo[i]
            if track and t.reference is not None and float(vector @ t.reference) < self.same_face:
                t = todo[i] = tracks[chosen_rows[i]] = self.tracker.split(t)
            t.reference = vector
            t.thumbnail = thumbnails[chosen_rows[i]]
            single = decide(found, self.thresholds)
            t.embeddings += 1
            t.embedded_at = self._frame_no
            # Vote with the score, so one strong sighting outweighs a weak one.
            voter = single.person_id
            t.votes[voter] = t.votes.get(voter, 0.0) + max(single.score, 0.01)
            t.best[voter] = max(t.best.get(voter, -1.0), single.score)
            winner = max(t.votes, key=t.votes.get)
            t.decision = Decision(winner, t.best[winner], single.runner_up,
                                  single.reason if winner == voter else "track vote")
        for i, ok in enumerate(usable):
            if not ok and todo[i].decision is None:
                todo[i].decision = Decision(None, 0.0, None, "poor quality")
        timings["search"] = (time.perf_counter() - t0) * 1000

        embedded_now = {id(t) for t in todo}
        results = [RecognizedFace(t.track_id, t.face, t.decision, t.quality,
                                  fresh=id(t) in embedded_now) for t in tracks]
        if self.log_events:
            self._log(image, tracks, source, settle=track)
        timings["total"] = (time.perf_counter() - started) * 1000
        return FrameResult(results, timings)

    def _log(self, image: np.ndarray, tracks: list[Track], source: str, settle: bool) -> None:
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
            self.gallery.add_event(t.decision.person_id, t.decision.score, source, thumbnail)
            t.logged_person = t.decision.person_id
