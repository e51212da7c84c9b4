"""The live worker: a QThread that reads frames from a source, analyses each one and
hands the GUI a finished LiveFrame (a display-sized QImage plus the face overlays).

What "analyse" means is given by an analyser object made inside the thread:
RecognizeAnalyzer names faces against the gallery (the Live page); the guided
capture of the Enroll page uses its own (capture.py).

Back-pressure: for files and folders the worker waits until the GUI has shown the
previous frame (nothing is skipped); for cameras and streams it drops frames the
GUI has no time to show, and keeps analysing the newest ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from ..core.detect import Face
from ..core.recognize import Recognizer
from ..core.sources import (CameraSource, Frame, FrameSource, ImageFolderSource,
                            VideoFileSource, open_source)
from .images import shrink, to_qimage
from .jobs import describe
from .words import why_text

_STUCK: list = []  # workers still running when their window closed

DISPLAY_MAX_SIDE = 1280  # frames are shrunk to this in the worker, not in paintEvent

# Overlay kinds (the video view picks a colour for each)
KNOWN, UNKNOWN, UNCLEAR, ACCEPTED, WAITING = "known", "unknown", "unclear", "accepted", "waiting"


@dataclass
class FaceOverlay:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    label: str  # "Alice", "Unknown", ...
    kind: str  # KNOWN, UNKNOWN, UNCLEAR (live) or ACCEPTED, WAITING (capture)
    score: float | None = None  # the score the decision compared with `bar`
    hint: str = ""  # a quality remark a person can act on, or why nobody was named
    person_id: int | None = None
    track_id: int = -1
    face: Face | None = None  # the detection, to enroll this face from a click
    bar: float | None = None  # the threshold `score` was compared with


@dataclass
class LiveFrame:
    image: QImage  # display-sized
    scale: float  # display pixels per frame pixel
    rgb: np.ndarray  # the whole frame, for enrolling a clicked face
    overlays: list[FaceOverlay]
    timings_ms: dict[str, float]
    fps: float
    source: str
    index: int
    path: str | None = None
    extra: object = None  # what the analyser adds (the capture's progress)
    position: float | None = None  # a video file's media time of this frame (seconds)
    duration: float | None = None  # and its length, when known


class Analyzer(Protocol):
    def analyze(self, frame: Frame, track: bool) -> tuple[list[FaceOverlay], dict, object]: ...


class RecognizeAnalyzer:
    """Names each face with the core Recognizer; options() is read on every frame so
    threshold and thumbnail settings apply at once."""

    def __init__(self, pipeline, gallery, options: Callable[[], object], log_events=True,
                 alerts: Callable[[Recognizer], object] | None = None):
        self.gallery = gallery
        self.options = options
        current = options()
        self.recognizer = Recognizer(pipeline, gallery, current.point,
                                     log_events=log_events,
                                     keep_thumbnails=current.keep_thumbnails)
        # the watch list's alerts (faceapp/core/alerts.py AlertWatcher), if wanted
        self.alerts = alerts(self.recognizer) if alerts is not None else None
        self._hints: dict[int, str] = {}

    def _name(self, person_id: int) -> str:
        # the names of the recognizer's own snapshot: the same one its index came from
        return self.recognizer.names.get(person_id, f"person {person_id}")

    def analyze(self, frame: Frame, track: bool):
        current = self.options()
        if current.point is not None and current.point != self.recognizer.identifier.point:
            self.recognizer.set_point(current.point)
        self.recognizer.keep_thumbnails = current.keep_thumbnails
        result = self.recognizer.process(frame.image, source=frame.where, track=track,
                                         path=frame.path or frame.media)
        if self.alerts is not None:  # never raises: recognition goes on
            self.alerts.observe(result, frame.image)
        overlays = []
        rule = self.recognizer.identifier.rule
        for found in result.faces:
            decision = found.decision
            if found.quality is not None:  # assessed this frame; else keep the last hint
                reasons = found.quality.reasons
                self._hints[found.track_id] = reasons[0] if reasons else ""
            hint = self._hints.get(found.track_id, "")
            if decision.known:
                kind, label = KNOWN, self._name(decision.person_id)
            elif decision.reason == "poor quality":
                kind, label = UNCLEAR, "Unclear"
            else:  # say why, and who was nearest
                kind, label = UNKNOWN, "Unknown"
                hint = why_text(decision.reason,
                                self._name(decision.nearest_id) if decision.nearest_id
                                else None,
                                self._name(decision.runner_up_id) if decision.runner_up_id
                                else None) or hint
            # the score the decision compared with the threshold (not the plain
            # similarity): what a person asking for the figures should see
            score = None
            if decision.reason not in ("poor quality", "track vote", "no gallery"):
                score = rule.decision_score(decision.score, decision.runner_up)
            overlays.append(FaceOverlay(
                box=tuple(float(v) for v in found.face.box), label=label, kind=kind,
                score=score, hint=hint, person_id=decision.person_id,
                track_id=found.track_id, face=found.face, bar=rule.threshold))
        live_tracks = {o.track_id for o in overlays}
        self._hints = {t: h for t, h in self._hints.items() if t in live_tracks}
        events = self.recognizer.events
        note = ("the gallery is locked by another program: events wait and are saved "
                "when it is free") if events.paused else None
        if self.recognizer.offline or events.offline:
            note = (f"the gallery server cannot be reached: recognising with the people known "
                    f"before; {events.spooled} event(s) kept on this computer until it is back")
        return overlays, result.timings_ms, note


def make_source(spec: str, folder_fps: float | None = 1.0, loop: bool = False,
                camera_size: tuple[int, int] | None = None) -> FrameSource:
    """The source for what the person typed; folders are paced so each photo can be
    seen, video files play at their own speed, cameras are asked for camera_size
    (raises SourceError)."""
    source = open_source(spec)
    if isinstance(source, CameraSource) and camera_size:
        return CameraSource(source.index, *camera_size)
    if isinstance(source, ImageFolderSource):
        return ImageFolderSource(source.path, fps=folder_fps)
    if isinstance(source, VideoFileSource):
        return VideoFileSource(source.path, loop=loop, realtime=True)
    return source


class LiveWorker(QThread):
    frame_ready = Signal(object)  # LiveFrame
    failed = Signal(str)  # the source or the analysis failed; the worker has stopped
    ended = Signal(str)  # a file or folder came to its end

    def __init__(self, make_source: Callable[[], FrameSource],
                 make_analyzer: Callable[[], Analyzer], parent=None,
                 start_at: float | None = None):
        super().__init__(parent)
        self._make_source = make_source
        self._make_analyzer = make_analyzer
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._seek_lock = threading.Lock()
        self._seek_to: float | None = start_at
        self._display_free = threading.Semaphore(1)
        self.frames = 0

    # -- GUI thread -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end; it does after the current frame (never blocks)."""
        self._stop.set()

    def frame_shown(self) -> None:
        """The GUI painted the last frame: the next may come."""
        self._display_free.release()

    def pause(self, paused: bool) -> None:
        """Hold a video file on its frame (or go on); other sources ignore it."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def seek(self, seconds: float) -> None:
        """Show a video file's frame at this media time next (paused or not)."""
        with self._seek_lock:
            self._seek_to = max(0.0, float(seconds))

    # -- worker thread ----------------------------------------------------------------------
    def run(self) -> None:
        source = None
        try:
            source = self._make_source()
            source.open()
            analyzer = self._make_analyzer()
            self._loop(source, analyzer)
        except Exception as exc:  # SourceError, GalleryError, ModelPackError...
            if not self._stop.is_set():
                self.failed.emit(describe(exc))
        finally:
            if source is not None:
                try:
                    source.close()
                except Exception:
                    pass

    def _loop(self, source: FrameSource, analyzer: Analyzer) -> None:
        track = source.is_live or isinstance(source, VideoFileSource)  # folders: stills
        video = source if isinstance(source, VideoFileSource) else None
        fps, last, was_paused = 0.0, None, False
        while not self._stop.is_set():
            with self._seek_lock:
                seek, self._seek_to = self._seek_to, None
            if video is not None and seek is not None:
                video.seek(seek)
                last = None
            elif video is not None and self._paused.is_set():
                was_paused = True
                self._stop.wait(0.03)  # hold the frame on screen
                continue
            if was_paused and video is not None:
                video.resume_clock()
                was_paused, last = False, None
            frame = source.read()
            if frame is None:
                self.ended.emit(f"{source.label}: end")
                return
            if self._stop.is_set():
                return
            overlays, timings, extra = analyzer.analyze(frame, track)
            now = time.perf_counter()
            if last is not None:
                rate = 1.0 / max(now - last, 1e-6)
                fps = rate if fps == 0.0 else 0.8 * fps + 0.2 * rate
            last = now
            self.frames += 1
            if self._wait_for_display(source.is_live):
                small, scale = shrink(frame.image, DISPLAY_MAX_SIDE)
                self.frame_ready.emit(LiveFrame(
                    image=to_qimage(small), scale=scale, rgb=frame.image, overlays=overlays,
                    timings_ms=timings, fps=fps, source=source.label, index=frame.index,
                    path=frame.path, extra=extra,
                    position=frame.timestamp if video is not None else None,
                    duration=video.duration if video is not None else None))

    def _wait_for_display(self, live: bool) -> bool:
        if live:
            return self._display_free.acquire(blocking=False)
        while not self._stop.is_set():
            if self._display_free.acquire(timeout=0.1):
                return True
        return False


class VideoSession(QObject):
    """At most one running LiveWorker for a page. Signals come only from the current
    worker; a stopped worker is kept alive until its thread has ended."""

    frame_ready = Signal(object)  # LiveFrame (already acknowledged to the worker)
    failed = Signal(str)
    ended = Signal(str)
    running_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.worker: LiveWorker | None = None
        self._stopping: set[LiveWorker] = set()

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    def start(self, make_source: Callable[[], FrameSource],
              make_analyzer: Callable[[], Analyzer], start_at: float | None = None) -> None:
        """start_at: a video file's media time to begin at (seconds)."""
        self.stop()
        worker = LiveWorker(make_source, make_analyzer, start_at=start_at)
        worker.frame_ready.connect(lambda frame, w=worker: self._frame(w, frame))
        worker.failed.connect(lambda text, w=worker: self._end(w, self.failed, text))
        worker.ended.connect(lambda text, w=worker: self._end(w, self.ended, text))
        worker.finished.connect(lambda w=worker: self._finished(w))
        self.worker = worker
        worker.start()
        self.running_changed.emit(True)

    @property
    def paused(self) -> bool:
        return self.worker is not None and self.worker.paused

    def pause(self, paused: bool) -> None:
        if self.worker is not None:
            self.worker.pause(paused)

    def seek(self, seconds: float) -> None:
        if self.worker is not None:
            self.worker.seek(seconds)

    def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
            self._stopping.add(worker)
            self.running_changed.emit(False)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop and wait for the threads (only when the window closes)."""
        self.stop()
        for worker in list(self._stopping):
            if not worker.wait(timeout_ms):
                # a driver call that will not return: never destroy a running QThread
                worker.setParent(None)
                _STUCK.append(worker)

    def _frame(self, worker: LiveWorker, frame: LiveFrame) -> None:
        worker.frame_shown()
        if worker is self.worker:
            self.frame_ready.emit(frame)

    def _end(self, worker: LiveWorker, signal, text: str) -> None:
        if worker is self.worker:
            self.stop()
            signal.emit(text)

    def _finished(self, worker: LiveWorker) -> None:
        self._stopping.discard(worker)
        if worker is self.worker:  # ended without a word (should not happen)
            self.worker = None
            self.running_changed.emit(False)
        worker.deleteLater()
