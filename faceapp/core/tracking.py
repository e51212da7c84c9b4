"""Following faces through video: a face's tiny thumbnail to notice that it changed,
boxes matched from frame to frame by overlap, and the track each face belongs to (its
votes and its latest look)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import Face
from .identify import Decision
from .quality import Quality

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
    event_uid: str | None = None  # the id of the event last written for it
    reference: np.ndarray | None = None  # embedding of the last look
    thumbnail: np.ndarray | None = None  # tiny normalised face in the previous frame


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
