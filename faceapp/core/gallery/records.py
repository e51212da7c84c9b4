"""What a gallery holds, as Python values: people, face samples and stored faces, names
and how they compare, times as stored, ids; and the checks every value passes before
it is written (either backend).

``name_key`` is the name folded for comparison (NFKC + casefold), so names are unique
case-insensitively, accents and all. Times are ISO 8601 UTC strings with a fixed
width (``2024-05-01T12:34:56.000000Z``) so that text order is time order.
"""

from __future__ import annotations

import json
import math
import os
import socket
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

MAX_NAME_LENGTH = 200
MAX_MODEL_ID_LENGTH = 200
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(t: datetime) -> str:
    # a naive datetime is local time, as everywhere in Python
    return t.astimezone(timezone.utc).strftime(TIME_FORMAT)


def parse_time(s: str | None) -> datetime | None:
    if s is None:
        return None
    return datetime.strptime(s, TIME_FORMAT).replace(tzinfo=timezone.utc)


def check_id(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"a {what} id is an int, got {type(value).__name__}")
    return int(value)


def default_station() -> str:
    """The name this machine's events carry: FACEAPP_STATION, or the host name."""
    return (os.environ.get("FACEAPP_STATION") or socket.gethostname() or "station")[:100]


# -------------------------------------------------------------------------- records

@dataclass(eq=False)
class FaceSample:
    """One face to enroll: the crop (H x W x 3 uint8 RGB), the five landmarks inside
    it (5 x 2 float, x/y pixels: eyes, nose, mouth corners), a quality score and
    where it came from (a file name, "camera", ...)."""

    crop: np.ndarray
    landmarks: np.ndarray
    quality: float = 0.0
    source: str = ""


@dataclass
class Person:
    id: int
    name: str
    face_count: int
    created: datetime
    updated: datetime | None = None
    notes: str = ""
    flagged_count: int = 0


@dataclass(eq=False)
class FaceRecord:
    id: int
    person_id: int
    landmarks: np.ndarray  # float32 (5, 2), in crop coordinates
    quality: float
    source: str
    created: datetime
    flagged: bool


# -------------------------------------------------------------------------- helpers

def normalize_name(name: str) -> str:
    """The name as stored: NFC, surrounding and repeated white space removed."""
    if not isinstance(name, str):
        raise TypeError(f"a name is a str, got {type(name).__name__}")
    clean = " ".join(unicodedata.normalize("NFC", name).split())
    if not clean:
        raise ValueError("a name cannot be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise ValueError(f"a name is at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in clean):
        raise ValueError(f"the name {clean!r} contains control characters")
    return clean


def name_skeleton(name: str) -> str:
    """What a name looks like, whatever letters it is written with: "Аlice" with a
    Cyrillic А and "Alice" look the same (transliterated with anyascii, case-folded,
    spaces dropped). Two different names with one skeleton deserve a warning."""
    from anyascii import anyascii

    return "".join(anyascii(unicodedata.normalize("NFKC", name)).casefold().split())


def name_key(name: str) -> str:
    """What two names are compared by: "ÉMILE" and "émile" are the same person."""
    return unicodedata.normalize("NFKC", normalize_name(name)).casefold()


def check_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError("a model id is a non-empty str")
    if len(model_id) > MAX_MODEL_ID_LENGTH:
        raise ValueError(f"a model id is at most {MAX_MODEL_ID_LENGTH} characters")
    return model_id


def check_landmarks(landmarks) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.size != 10:
        raise ValueError(f"landmarks are 5 x 2, got shape {np.shape(landmarks)}")
    arr = arr.reshape(5, 2)
    if not np.isfinite(arr).all():
        raise ValueError("landmarks must be finite")
    return arr


def landmarks_json(arr: np.ndarray) -> str:
    return json.dumps([[float(x), float(y)] for x, y in arr])


def landmarks_from_json(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32).reshape(5, 2)


def check_quality(quality) -> float:
    q = float(quality)
    if not math.isfinite(q):
        raise ValueError("a quality score must be finite")
    return q


def as_matrix(values, rows: int | None, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 1 and rows in (None, 1):
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{what}: embeddings are N x D, got shape {np.shape(values)}")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{what}: {arr.shape[0]} embeddings for {rows} faces")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{what}: embeddings must be numbers, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype="<f4")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: embeddings must be finite")
    return arr


def decode_vectors(rows) -> tuple[list[int], np.ndarray, list[int]]:
    """Stored embeddings (face id, dim, float32 blob) as (usable face ids, their N x D
    matrix, damaged face ids). The size most rows have is the model's; a row of
    another size, of the wrong length or not finite is damaged (one bad row must not
    stop a search, an export or an enrolment)."""
    rows = list(rows)
    if not rows:
        return [], np.zeros((0, 0), np.float32), []
    dims = [r[1] for r in rows]
    dim = max(set(dims), key=dims.count)
    good, vectors, damaged = [], [], []
    for face_id, row_dim, blob in rows:
        vector = (np.frombuffer(blob, "<f4") if row_dim == dim and blob is not None
                  and len(blob) == 4 * dim else None)
        if vector is None or not np.isfinite(vector).all() or not vector.any():
            damaged.append(int(face_id))
            continue
        good.append(int(face_id))
        vectors.append(vector)
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return good, matrix, damaged
