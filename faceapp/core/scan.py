"""Photo archives: `scan` finds every face in every photo of a folder and remembers
which file it came from, so "photos of X" can list them.

A face of someone enrolled is recorded as a sighting of that person; any other
usable face is kept as an unknown face (unknowns.py) with a sighting of it, so
naming its cluster later turns those sightings into the person's. A file seen
before with the same size and modification time is not decoded again; a changed
file is scanned afresh. Scanning writes no events: an archive is not a door.

Speed: in photos of 12 megapixels and more (LARGE_PHOTO) a scan looks for faces of
SMALLEST_FACE pixels and up, and decodes a JPEG at the smallest of 1/2, 1/4 or 1/8
of its size at which such a face still has the detector's DETECT_MIN (the codec skips
the fine detail; the detector's pyramid starts 4x smaller). The recognizer then gets
the photo at its full size, filled in from that decode only around the faces found
(untouched zero pages cost no memory), so boxes, landmarks and quality are in the
file's pixels as before; a face that fails the sharpness check on the reduced pixels
alone is judged on a full decode. Worker threads read and search the next photos
while the recognizer embeds and stores the current one (OpenCV and onnxruntime
release the GIL). bench/bench_scan.py measures it.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .align import Template, align_face, alignment_matrix, get_template
from .detect import Face
from .gallery import GalleryStore, format_time, utc_now
from .filenames import display_name
from .imageio import (MAX_PIXELS, PIXEL_LIMITS, ImageError, decode_image_scaled, probe_header,
                      read_file)
from .models import InferenceError
from .quality import assess
from .recognize import KEPT_AS_UNKNOWN, Recognizer
from .sources import ImageFolderSource

Progress = Callable[[int, int, str], None]

# Photos whose longer side is at least LARGE_PHOTO pixels (12 megapixels and up) are
# searched for faces of SMALLEST_FACE pixels and more (or the detector's minimum if
# larger); smaller photos for faces down to the detector's minimum, as always.
LARGE_PHOTO = 4000
SMALLEST_FACE = 80
# A face this large in the reduced decode is found as reliably as at full size (the
# app's default minimum face): the reduction is picked to keep the smallest face there.
DETECT_MIN = 40
# What the recognizer reads around a face: the crops it cuts (the embedder's, the
# stored face canvas, the event thumbnail), plus a margin for interpolation.
_CUT_TEMPLATES = ("storage256", "arcface112")
_CUT_MARGIN = 4


@dataclass
class ScanReport:
    files: int = 0  # photos looked at in this run
    unchanged: int = 0  # skipped: scanned before and not changed since
    faces: int = 0
    known: int = 0  # faces of enrolled people
    unknown: int = 0  # faces kept as unknown faces
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    cancelled: bool = False


def _file_key(path: Path) -> tuple[int, float]:
    st = os.stat(path)
    return st.st_size, st.st_mtime


def stored_path(path: str | os.PathLike) -> str:
    """A file as the gallery records it: its folder absolute and resolved, so one photo
    scanned by a relative path and by an absolute one is one file (a link to a photo
    stays the link the person put there); as text SQLite can hold (a name that is not
    UTF-8 is stored escaped, see filenames.display_name)."""
    path = Path(path)
    return display_name(path.parent.resolve() / path.name)


@dataclass
class _Photo:
    """A photo read and searched (by a worker), waiting for the recognizer."""
    path: Path
    key: tuple[int, float]  # size and modification time when it was read
    image: np.ndarray  # what the recognizer reads: maybe filled only around the faces
    scale: float  # image pixels -> the file's pixels
    faces: list[Face]  # found in it, in image pixels


def _template(pipeline) -> Template:
    template = pipeline.embedder.template
    return template if isinstance(template, Template) else get_template(template)


def _reach(landmarks: np.ndarray, templates) -> tuple[float, float, float, float]:
    """The part of the image (x1, y1, x2, y2) that aligned crops of a face read."""
    corners = []
    for tpl in templates:
        inverse = cv2.invertAffineTransform(alignment_matrix(landmarks, tpl))
        w, h = tpl.size
        square = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
        corners.append(square @ inverse.T)
    points = np.concatenate(corners)
    return (float(points[:, 0].min()), float(points[:, 1].min()),
            float(points[:, 0].max()), float(points[:, 1].max()))


class PhotoScanner:
    def __init__(self, recognizer: Recognizer):
        if recognizer.unknowns is None:
            raise ValueError("scanning keeps unknown faces: the gallery's retention period "
                             "is 0 days, or it is read-only")
        self.recognizer = recognizer
        self.gallery: GalleryStore = recognizer.gallery
        self.pipeline = recognizer.pipeline
        # photos read and searched at once: as many as the inference threads asked for
        self.workers = max(1, int(getattr(self.pipeline.detector, "threads", 1)))

    def _seen(self, path: Path) -> bool:
        size, mtime = _file_key(path)
        path = stored_path(path)  # the key below
        with self.gallery.reading() as db:
            row = db.execute("SELECT size, mtime FROM scanned_files WHERE path = ?",
                             [str(path)]).fetchone()
        return row is not None and row[0] == size and abs(row[1] - mtime) < 1e-6

    def scan(self, root: str | os.PathLike, progress: Progress | None = None,
             cancelled: Callable[[], bool] | None = None, rescan: bool = False) -> ScanReport:
        """Raises SourceError when the folder cannot be listed; a photo that cannot be
        read is skipped with the reason and the scan goes on."""
        report = ScanReport()
        images, others = ImageFolderSource(root, recursive=True).list_images()
        report.skipped += [(display_name(p), why) for p, why in others]
        ahead: deque[Future] = deque()
        queued = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="scan") as pool:
            try:
                for done, path in enumerate(images):
                    if cancelled and cancelled():
                        report.cancelled = True
                        break
                    # the next photos are read and searched while this one is stored;
                    # no more than one waits beyond the busy workers (memory)
                    while queued < len(images) and queued <= done + self.workers:
                        ahead.append(self._submit(pool, images[queued], rescan))
                        queued += 1
                    job = ahead.popleft()
                    if progress:
                        progress(done, len(images), display_name(path))
                    try:
                        photo = job.result()
                        if photo is None:
                            report.unchanged += 1
                            continue
                        self._store(photo, report)
                    except (ImageError, InferenceError, MemoryError, OSError) as exc:
                        report.skipped.append((display_name(path), str(exc) or "out of memory"))
            finally:
                for job in ahead:
                    job.cancel()
        if progress and not report.cancelled:
            progress(len(images), len(images), "")
        return report

    def scan_file(self, path: Path, report: ScanReport) -> None:
        """One photo, read, searched and stored in this thread."""
        self._store(self._prepare(path), report)

    def _submit(self, pool: ThreadPoolExecutor, path: Path, rescan: bool) -> Future:
        """A photo to a worker; None for a file scanned before and unchanged (the gallery
        is read in this thread). What goes wrong comes out at the photo's turn."""
        try:
            if not rescan and self._seen(path):
                job: Future = Future()
                job.set_result(None)
                return job
        except Exception as exc:
            job = Future()
            job.set_exception(exc)
            return job
        return pool.submit(self._prepare, path)

    def smallest_face(self, width: float, height: float) -> float:
        """The smallest face (pixels) looked for in a photo of this size."""
        detector_min = float(self.pipeline.detector.min_face)
        if max(width, height) < LARGE_PHOTO:
            return detector_min
        return max(detector_min, float(SMALLEST_FACE))

    def _prepare(self, path: Path) -> _Photo:
        """Read and search one photo (in a worker thread)."""
        key = _file_key(path)
        name = display_name(path)
        data = read_file(path)
        header = probe_header(data, name) if data else None
        if header is None or header.format not in ("JPEG", "MPO") \
                or header.width * header.height > PIXEL_LIMITS.get(header.format, MAX_PIXELS):
            # not a JPEG, or one so large it is decoded reduced anyway: as it comes
            image, scale = decode_image_scaled(data, name)
            del data
            wanted = self.smallest_face(image.shape[1] * scale, image.shape[0] * scale)
            faces = self.pipeline.detect_reduced(image, 1.0, wanted / scale)
            return _Photo(path, key, image, scale, faces)
        wanted = self.smallest_face(header.width, header.height)
        factor = 1
        while factor < 8 and wanted / (2 * factor) >= DETECT_MIN:
            factor *= 2
        small, scale = decode_image_scaled(data, name, reduce=factor)
        faces = self.pipeline.detect_reduced(small, scale, wanted)
        if scale == 1:
            return _Photo(path, key, small, 1.0, faces)
        height, width = (header.height, header.width) if header.orientation < 5 \
            else (header.width, header.height)  # upright, as decoded
        for face in faces:  # the reduced decode's last pixel may reach past the file's
            np.clip(face.box[0::2], 0, width, out=face.box[0::2])
            np.clip(face.box[1::2], 0, height, out=face.box[1::2])
        if self._needs_detail(small, scale, faces):
            del small  # never two decodes of one photo at once
            image, _ = decode_image_scaled(data, name)  # within the limit: at full size
            return _Photo(path, key, image, 1.0, faces)
        del data
        return _Photo(path, key, self._filled(small, scale, (height, width), faces), 1.0, faces)

    def _needs_detail(self, small: np.ndarray, scale: float, faces: list[Face]) -> bool:
        """Whether a face fails the recognizer's sharpness check on the reduced decode,
        and nothing else, where that decode had fewer pixels than its crop: the
        file's own pixels (sharper) must decide, as they would have without the
        reduction."""
        policy = self.recognizer.quality_policy
        but_sharpness = replace(policy, min_sharpness=1e-6)  # (0 would divide by 0)
        template = _template(self.pipeline)
        for face in faces:
            matrix = alignment_matrix(face.landmarks, template)
            magnified = math.sqrt(abs(np.linalg.det(matrix[:, :2]))) * scale > 1.0
            if not magnified:
                continue
            crop = align_face(small, face.landmarks / scale, template)
            quality = assess(face, crop, but_sharpness)
            if quality.ok and quality.measures["sharpness"] < policy.min_sharpness:
                return True
        return False

    def _filled(self, small: np.ndarray, scale: float, shape: tuple[int, int],
                faces: list[Face]) -> np.ndarray:
        """The photo at its full size (shape: height, width), filled in from the reduced
        decode only where the recognizer's crops of the faces read; zeros elsewhere,
        which numpy takes from the system as untouched pages (no memory, no time)."""
        height, width = shape
        image = np.zeros((height, width, 3), np.uint8)
        templates = [get_template(n) for n in _CUT_TEMPLATES] + [_template(self.pipeline)]
        f = int(scale)
        sh, sw = small.shape[:2]
        for face in faces:
            x1, y1, x2, y2 = _reach(face.landmarks, templates)
            # whole reduced pixels, a few more each side so the upsampling's edge (it
            # repeats the last pixel) stays outside what is read
            rx1 = max(0, math.floor(x1 / f) - _CUT_MARGIN)
            ry1 = max(0, math.floor(y1 / f) - _CUT_MARGIN)
            rx2 = min(sw, math.ceil(x2 / f) + _CUT_MARGIN)
            ry2 = min(sh, math.ceil(y2 / f) + _CUT_MARGIN)
            if rx2 <= rx1 or ry2 <= ry1:
                continue
            ox2, oy2 = min(width, rx2 * f), min(height, ry2 * f)
            # pixel centres: the reduced pixel i covers full pixels f*i .. f*i + f - 1
            patch = cv2.resize(small[ry1:ry2, rx1:rx2], ((rx2 - rx1) * f, (ry2 - ry1) * f),
                               interpolation=cv2.INTER_LINEAR)
            image[ry1 * f:oy2, rx1 * f:ox2] = patch[:oy2 - ry1 * f, :ox2 - rx1 * f]
        return image

    def _store(self, photo: _Photo, report: ScanReport) -> None:
        size, mtime = photo.key
        image, scale = photo.image, photo.scale
        path = stored_path(photo.path)  # from here on: the file as the gallery records it
        recognizer = self.recognizer
        # the faces the worker found: the recognizer does the rest as for any photo
        result = recognizer.process(image, source=str(path), track=False, path=str(path),
                                    faces=photo.faces)
        known, unknown = [], []
        for face in result.faces:
            box = [round(float(v) * scale, 1) for v in face.face.box]  # the file's pixels
            decision = face.decision
            if decision.known:
                known.append((decision.person_id, box, decision.score))
            elif decision.reason in KEPT_AS_UNKNOWN and face.embedding is not None:
                kept = recognizer.unknown_face(image, face.face, face.quality, face.embedding,
                                               str(path), str(path))
                kept.box = tuple(box)
                unknown.append(kept)
        now = format_time(utc_now())
        with self.gallery.writing(bump=False) as db:
            db.execute("DELETE FROM sightings WHERE path = ?", [str(path)])
            db.executemany(
                "INSERT INTO sightings(path, person_id, box, score, scanned) VALUES (?, ?, ?, ?, ?)",
                [(str(path), pid, json.dumps(box), score, now) for pid, box, score in known])
        if unknown:
            recognizer.unknowns.add(unknown, sightings=True)
        with self.gallery.writing(bump=False) as db:
            db.execute("INSERT INTO scanned_files(path, size, mtime, faces, scanned) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                       "size = excluded.size, mtime = excluded.mtime, faces = excluded.faces, "
                       "scanned = excluded.scanned",
                       [str(path), size, mtime, len(result.faces), now])
        report.files += 1
        report.faces += len(result.faces)
        report.known += len(known)
        report.unknown += len(unknown)


def photos_of(gallery: GalleryStore, person_id: int) -> list[str]:
    """The files `scan` found this person in (named unknown clusters included)."""
    with gallery.reading() as db:
        return [r[0] for r in db.execute(
            "SELECT DISTINCT path FROM sightings WHERE person_id = ? ORDER BY path",
            [int(person_id)])]
