"""Frame sources: one interface over a webcam, a video file, an image folder and a stream.

Every source delivers `Frame`s holding HxWx3 uint8 RGB images::

    with open_source("0") as source:          # camera 0; or a folder, a file, a URL
        for frame in source:                   # stops at the end of a finite source
            ...

Failures raise `SourceError` with a message a person can act on. Nothing here may hang
its caller: cameras and network streams are driven from a private daemon thread, and
every call into OpenCV for them is abandoned after a timeout (the stuck capture is
released by that thread whenever the driver lets go of it). `reopen()` tries again.

A source is used from one thread at a time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import re
import stat
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

import cv2
import numpy as np

from .filenames import display_name, special_file
from .imageio import IMAGE_SUFFIXES, ImageError, as_rgb8, load_image, read_image

__all__ = [
    "Frame", "SourceError", "FrameSource", "CameraSource", "VideoFileSource",
    "ImageFolderSource", "ImageFileSource", "StreamSource", "open_source", "list_cameras",
    "STREAM_SCHEMES",
]

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
# Files in image folders that are neither images nor worth reporting.
_IGNORED_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}


@dataclass
class Frame:
    """One image from a source.

    image: HxWx3 uint8 RGB. index: the frame's number in the source (position in a
    video file, count of frames delivered for live sources and folders). timestamp:
    seconds; media time for files and folders, wall clock (time.time()) for live
    sources. source: the source's label. path: the image file, for folder sources.
    """

    image: np.ndarray
    index: int
    timestamp: float
    source: str
    path: str | None = None
    live: bool = False  # from a camera or a stream (timestamp is wall-clock time)
    scale: float = 1.0  # a huge photo decoded smaller: pixel positions x scale = the file's
    media: str | None = None  # the video file a frame came from

    @staticmethod
    def parse_where(where: str) -> tuple[str, int | None]:
        """(file, frame number) back from `where`: (photo, None) or (video, index)."""
        found = _WHERE_IN_VIDEO.match(where)
        return (found.group(1), int(found.group(2))) if found else (where, None)

    @property
    def where(self) -> str:
        """Where this frame came from, for the event log: the photo's file, or the
        source with the frame's number and media time."""
        if self.path:
            return self.path
        if self.live:
            return self.source
        minutes, seconds = divmod(max(self.timestamp, 0.0), 60)
        hours, minutes = divmod(int(minutes), 60)
        return (f"{self.media or self.source} #{self.index} "
                f"{hours:02d}:{minutes:02d}:{seconds:06.3f}")


_WHERE_IN_VIDEO = re.compile(r"^(.*) #(\d+) \d{2}:\d{2}:\d{2}\.\d{3}$")


class SourceError(RuntimeError):
    """A source cannot be opened or stopped delivering frames; the message says why."""


class FrameSource(ABC):
    """Common behaviour: open/read/close, context manager, iteration, reopen().

    read() opens the source on first use; it returns None at the end of a finite source
    (and keeps returning None). Sources are reusable: close() then open() (or reopen())
    starts again; for files and folders that means from the beginning.
    """

    def __init__(self, label: str):
        self._label = label
        self._is_open = False

    # -- what subclasses provide ------------------------------------------------------
    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> Frame | None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @property
    @abstractmethod
    def is_live(self) -> bool:
        """True for cameras and network streams (frames are dropped if not read)."""

    # -- public interface ----------------------------------------------------------------
    @property
    def label(self) -> str:
        """A short name for people and logs ("Camera 0", "clip.mp4", a redacted URL)."""
        return self._label

    @property
    def is_open(self) -> bool:
        return self._is_open

    def open(self) -> "FrameSource":
        """Open the source (no-op if it is open); raises SourceError. Returns self."""
        if not self._is_open:
            try:
                self._open()
            except BaseException:
                self._safe_close()
                raise
            self._is_open = True
        return self

    def read(self) -> Frame | None:
        """The next frame, or None at the end of a finite source; raises SourceError."""
        if not self._is_open:
            self.open()
        return self._read()

    def close(self) -> None:
        """Release the device/file/connection. Safe to call more than once."""
        was_open, self._is_open = self._is_open, False
        if was_open:
            self._close()

    def reopen(self) -> "FrameSource":
        """Close and open again, e.g. after a SourceError from a camera or stream."""
        self.close()
        return self.open()

    def _safe_close(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        self._is_open = False

    def __enter__(self) -> "FrameSource":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def __repr__(self) -> str:
        state = "open" if self._is_open else "closed"
        return f"<{type(self).__name__} {self._label!r} {state}>"


# -- helpers ---------------------------------------------------------------------------

def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return as_rgb8(frame, channel_order="BGR")


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


@contextlib.contextmanager
def _quiet_opencv():
    """Silence OpenCV's console warnings ("can't open camera by index") while opening.

    OpenCV's log level is global, so nested and concurrent uses are counted and the
    level is restored when the last one ends.
    """
    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                _quiet_saved = cv2.utils.logging.getLogLevel()
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            except Exception:  # pragma: no cover - builds without the logging module
                _quiet_saved = None
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_saved is not None:
                with contextlib.suppress(Exception):
                    cv2.utils.logging.setLogLevel(_quiet_saved)


class _Stuck(Exception):
    """A call into OpenCV did not return in time."""


class _CaptureThread:
    """Owns one cv2.VideoCapture; every call on it runs on this daemon thread.

    call() waits at most `timeout` seconds. When a call is stuck in a driver the owner
    abandons the thread with stop(); the capture is released once the call returns.
    """

    def __init__(self, name: str):
        self.cap: cv2.VideoCapture | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            fn, reply = job
            try:
                reply.put((fn(), None))
            except BaseException as exc:  # handed to the caller
                reply.put((None, exc))
        cap, self.cap = self.cap, None
        if cap is not None:
            with contextlib.suppress(Exception):
                cap.release()

    def call(self, fn: Callable, timeout: float):
        reply: queue.SimpleQueue = queue.SimpleQueue()
        self._jobs.put((fn, reply))
        try:
            value, exc = reply.get(timeout=timeout)
        except queue.Empty:
            raise _Stuck() from None
        if exc is not None:
            raise exc
        return value

    def stop(self, wait: float = 0.0) -> None:
        """Release the capture and end the thread (waits up to `wait` seconds)."""
        self._jobs.put(None)
        if wait > 0 and threading.current_thread() is not self._thread:
            self._thread.join(wait)


class _ThreadedCaptureSource(FrameSource):
    """Cameras and streams: a VideoCapture behind a watchdog thread; wall-clock stamps."""

    #: seconds the watchdog allows beyond open_timeout/read_timeout before it gives up
    #: on a call into OpenCV (which normally times out by itself first)
    watchdog_grace = 5.0

    def __init__(self, label: str, open_timeout: float, read_timeout: float,
                 warmup_reads: int):
        super().__init__(label)
        self.open_timeout = float(open_timeout)
        self.read_timeout = float(read_timeout)
        self.warmup_reads = max(1, int(warmup_reads))
        self._worker: _CaptureThread | None = None
        self._delivered = 0          # frames delivered since open (this connection)
        self._count = 0              # frames delivered over the source's lifetime
        self.resolution: tuple[int, int] | None = None
        self.fps: float | None = None

    @property
    def is_live(self) -> bool:
        return True

    # subclasses: build and configure the capture (runs on the worker thread)
    @abstractmethod
    def _create_capture(self) -> cv2.VideoCapture | None: ...

    @abstractmethod
    def _open_error(self, detail: str) -> SourceError: ...

    @abstractmethod
    def _stopped_error(self, detail: str) -> SourceError: ...

    def _call_timeout(self, base: float) -> float:
        return base + self.watchdog_grace

    def _open(self) -> None:
        worker = _CaptureThread(f"faceapp-source {self._label}")
        self._worker = worker
        self._delivered = 0

        def create():
            cap = self._create_capture()
            worker.cap = cap
            if cap is None or not cap.isOpened():
                return None
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            return width, height, fps

        try:
            info = worker.call(create, self._call_timeout(self.open_timeout))
        except _Stuck:
            self._abandon()
            raise self._open_error(f"no answer within {self.open_timeout:g} s") from None
        except cv2.error as exc:
            raise self._open_error(f"OpenCV error: {exc}") from None
        if info is None:
            raise self._open_error("")
        width, height, fps = info
        self.resolution = (width, height) if width > 0 and height > 0 else None
        self.fps = fps if 0 < fps < 1000 else None

    def _read_once(self, timeout: float) -> np.ndarray | None:
        worker = self._worker
        assert worker is not None

        def grab():
            cap = worker.cap
            if cap is None:
                return None
            ok, image = cap.read()
            return image if ok and image is not None and image.size else None

        try:
            return worker.call(grab, self._call_timeout(timeout))
        except _Stuck:
            self._abandon()
            raise self._stopped_error(f"no frame for {timeout:g} s") from None
        except cv2.error as exc:
            raise self._stopped_error(f"OpenCV error: {exc}") from None

    def _read(self) -> Frame | None:
        if self._worker is None:
            raise self._stopped_error("")
        if self._delivered == 0:
            # Some devices return nothing for the first reads while they start up.
            image = None
            deadline = time.monotonic() + max(self.open_timeout, self.read_timeout)
            for _ in range(self.warmup_reads):
                image = self._read_once(max(0.5, deadline - time.monotonic()))
                if image is not None or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            if image is None:
                self._disconnect()
                raise self._stopped_error(
                    f"it opened but sent no frames ({self.warmup_reads} reads failed)")
        else:
            image = self._read_once(self.read_timeout)
            if image is None:
                self._disconnect()
                raise self._stopped_error("")
        frame = Frame(image=_bgr_to_rgb(image), index=self._count, timestamp=time.time(),
                      source=self._label, live=True)
        self._delivered += 1
        self._count += 1
        return frame

    def _abandon(self) -> None:
        """Give up on a stuck worker without waiting for it."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(wait=0.0)

    def _disconnect(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(wait=2.0)

    def _close(self) -> None:
        self._disconnect()

    def __del__(self):  # a forgotten source must not keep a camera busy
        with contextlib.suppress(Exception):
            self._abandon()


# -- cameras ---------------------------------------------------------------------------

def _camera_backends() -> list[int]:
    if sys.platform.startswith("linux"):
        return [cv2.CAP_V4L2, cv2.CAP_ANY]
    if sys.platform == "win32":
        # DirectShow opens quickly; Media Foundation can take many seconds per camera.
        return [cv2.CAP_DSHOW, cv2.CAP_MSMF]
    if sys.platform == "darwin":
        return [cv2.CAP_AVFOUNDATION]
    return [cv2.CAP_ANY]


def _no_device_node(index: int) -> bool:
    """On Linux, True when /dev/video<index> does not exist (so there is no camera)."""
    return sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}")


def _linux_video_nodes() -> list[int]:
    nodes = []
    for name in glob.glob("/dev/video*"):
        suffix = name[len("/dev/video"):]
        if suffix.isdigit():
            nodes.append(int(suffix))
    return sorted(nodes)


class CameraSource(_ThreadedCaptureSource):
    """A local camera by index (0 = the default camera).

    width/height/fps are requests; the driver may pick something else (see
    `resolution` and `fps` once open). A missing camera raises SourceError at open();
    a camera that stops sending frames (unplugged, taken by another program) raises
    SourceError from read(), after at most `read_timeout` (+5 s) seconds.
    """

    def __init__(self, index: int, width: int | None = None, height: int | None = None,
                 fps: float | None = None, *, open_timeout: float = 10.0,
                 read_timeout: float = 5.0, warmup_reads: int = 10,
                 backends: list[int] | None = None):
        index = int(index)
        if index < 0:
            raise ValueError(f"camera index must be 0 or more, not {index}")
        super().__init__(f"Camera {index}", open_timeout, read_timeout, warmup_reads)
        self.index = index
        self.requested = (width, height, fps)
        self.backends = list(backends) if backends is not None else _camera_backends()

    def _open(self) -> None:
        if _no_device_node(self.index):
            present = _linux_video_nodes()
            found = ", ".join(str(n) for n in present) if present else "none"
            raise self._open_error(f"no device /dev/video{self.index}; "
                                   f"video devices present: {found}")
        super()._open()

    def _create_capture(self) -> cv2.VideoCapture | None:
        cap = None
        with _quiet_opencv():
            for backend in self.backends:
                try:
                    cap = cv2.VideoCapture(self.index, backend)
                except cv2.error:
                    cap = None
                if cap is not None and cap.isOpened():
                    break
                if cap is not None:
                    cap.release()
                cap = None
        if cap is None:
            return None
        width, height, fps = self.requested
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(width))
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(height))
        if fps:
            cap.set(cv2.CAP_PROP_FPS, float(fps))
        return cap

    def _open_error(self, detail: str) -> SourceError:
        message = (f"Camera {self.index} is not available: it may be unplugged or used by "
                   f"another application")
        if sys.platform == "darwin":
            message += (", or this app may not be allowed to use the camera (System "
                        "Settings > Privacy & Security > Camera)")
        if detail:
            message += f" ({detail})"
        return SourceError(message)

    def _stopped_error(self, detail: str) -> SourceError:
        message = f"Camera {self.index} stopped sending frames (unplugged?)"
        if detail:
            message += f": {detail}"
        return SourceError(message + "; reconnect it and try again")


def list_cameras(max_index: int = 5, timeout: float = 3.0) -> list[int]:
    """Indexes 0..max_index (inclusive) of cameras that can be opened, probed quickly.

    On Linux only existing /dev/videoN nodes are probed (so a machine without cameras
    answers at once; metadata nodes of UVC cameras fail to open and are left out). Each
    probe runs on a daemon thread and the whole probe stops after `timeout` seconds.
    A camera held by another program may be left out.
    """
    if sys.platform.startswith("linux"):
        candidates = [n for n in _linux_video_nodes() if n <= max_index]
    else:
        candidates = list(range(max_index + 1))
    found: list[int] = []
    deadline = time.monotonic() + timeout
    backends = _camera_backends()[:1]
    for index in candidates:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        worker = _CaptureThread(f"faceapp-probe {index}")

        def probe(index=index, worker=worker):
            with _quiet_opencv():
                cap = cv2.VideoCapture(index, backends[0])
            worker.cap = cap
            return cap.isOpened()

        try:
            if worker.call(probe, remaining):
                found.append(index)
        except (_Stuck, cv2.error):
            pass
        finally:
            worker.stop(wait=min(1.0, max(0.0, deadline - time.monotonic())))
    return found


# -- network streams ---------------------------------------------------------------------

def _redact(url: str) -> str:
    """The URL with any password replaced by ***, for labels and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class StreamSource(_ThreadedCaptureSource):
    """rtsp://, http(s):// (MJPEG, HLS) and other URLs FFmpeg reads, with timeouts.

    open() fails after about `open_timeout` seconds when nothing answers; read() fails
    after about `read_timeout` seconds without data, or at once when the server closes
    the connection. reopen() reconnects. Credentials in the URL are kept out of `label`
    and messages.
    """

    def __init__(self, url: str, *, open_timeout: float = 10.0, read_timeout: float = 5.0,
                 warmup_reads: int = 3):
        super().__init__(_redact(url), open_timeout, read_timeout, warmup_reads)
        self.url = url

    def _create_capture(self) -> cv2.VideoCapture | None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        with _quiet_opencv():
            return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _open_error(self, detail: str) -> SourceError:
        message = (f"Stream {self._label} cannot be opened: check the address, the network "
                   f"and that the camera or server is on")
        return SourceError(message + (f" ({detail})" if detail else ""))

    def _stopped_error(self, detail: str) -> SourceError:
        message = f"Stream {self._label} stopped sending frames (connection lost?)"
        if detail:
            message += f": {detail}"
        return SourceError(message + "; reopen it to reconnect")


# -- video files -------------------------------------------------------------------------

class VideoFileSource(FrameSource):
    """Frames of a video file in order; read() returns None at the end unless `loop`.

    Frame.index is the frame's number in the file and Frame.timestamp its media time
    (both start again from 0 on each loop). With realtime=True, read() waits so frames
    come at the file's frame rate, and skips frames when the caller falls behind (like
    a camera would), which makes a file usable as a stand-in for a live view.
    """

    def __init__(self, path: str | os.PathLike, loop: bool = False, realtime: bool = False):
        self.path = Path(path)
        super().__init__(display_name(self.path.name or self.path))
        self.loop = bool(loop)
        self.realtime = bool(realtime)
        self._cap: cv2.VideoCapture | None = None
        self._next_index = 0
        self._pending: np.ndarray | None = None
        self._ended = False
        self._clock_start: float | None = None   # monotonic time of media time 0
        self.fps: float | None = None
        self.frame_count: int | None = None
        self.loops = 0
        #: True when the file ended before the frame count its header declares
        #: (usually a truncated file; the count is only an estimate for some formats)
        self.ended_early = False

    @property
    def is_live(self) -> bool:
        return False

    def _error(self, why: str) -> SourceError:
        return SourceError(f"Video file {self.path.name} cannot be opened: {why}")

    def _new_capture(self) -> cv2.VideoCapture | None:
        with _quiet_opencv():
            for backend in (cv2.CAP_FFMPEG, cv2.CAP_ANY):
                try:
                    cap = cv2.VideoCapture(str(self.path), backend)
                except cv2.error:
                    continue
                if cap.isOpened():
                    return cap
                cap.release()
        return None

    def _open(self) -> None:
        if not self.path.exists():
            raise self._error(f"the file does not exist ({display_name(self.path)})")
        if self.path.is_dir():
            raise self._error(f"{display_name(self.path)} is a folder (use it as an image "
                              "folder instead)")
        special = special_file(self.path)
        # FFmpeg would wait for ever on a FIFO and read a device without end; a camera
        # node (/dev/video*, character major 81) is the one device that is a video
        if special and not _is_v4l_device(self.path):
            raise self._error(f"{display_name(self.path)} is {special}")
        if not os.access(self.path, os.R_OK):
            raise self._error(f"no permission to read {display_name(self.path)}")
        cap = self._new_capture()
        if cap is None:
            raise self._error("it is not a video OpenCV can decode "
                              "(corrupt, truncated or an unsupported format)")
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        ok, image = cap.read()
        if not ok or image is None or not image.size:
            raise self._error("it contains no frames that can be decoded "
                              "(corrupt, truncated or an unsupported codec)")
        self._pending = image
        self._next_index = 0
        self._ended = False
        self._clock_start = None
        self.loops = 0
        self.ended_early = False

    def _timestamp(self, index: int) -> float:
        if self.fps:
            return index / self.fps
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC) if self._cap is not None else 0.0
        return max(0.0, float(msec or 0.0) / 1000.0)

    def _next_image(self) -> np.ndarray | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
            return image
        ok, image = self._cap.read()
        if ok and image is not None and image.size:
            return image
        if not self.loop:
            return None
        # Back to the start: seek, or open the file again when seeking is not supported.
        self.loops += 1
        self._next_index = 0
        self._clock_start = None
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = self._cap.read()
            if ok and image is not None and image.size:
                return image
        self._cap.release()
        self._cap = self._new_capture()
        if self._cap is None:
            raise SourceError(f"Video file {self.path.name} could not be read again "
                              f"for looping; was it moved or deleted?")
        ok, image = self._cap.read()
        return image if ok and image is not None and image.size else None

    def _read(self) -> Frame | None:
        if self._ended or self._cap is None:
            return None
        image = self._next_image()
        if image is None:
            self._ended = True
            self.ended_early = bool(self.frame_count and self._next_index < self.frame_count
                                    and not self.loops)
            return None
        index = self._next_index
        self._next_index += 1
        timestamp = self._timestamp(index)
        if self.realtime and self.fps:
            now = time.monotonic()
            if self._clock_start is None:
                self._clock_start = now - timestamp
            due = self._clock_start + timestamp
            if due > now:
                time.sleep(due - now)
            else:
                # Behind: skip frames that are already overdue (bounded to one second).
                behind = int((now - due) * self.fps)
                for _ in range(min(behind, int(self.fps) + 1)):
                    if not self._cap.grab():
                        break
                    self._next_index += 1
                if behind:
                    ok, newer = self._cap.retrieve()
                    if ok and newer is not None and newer.size:
                        image, index = newer, self._next_index - 1
                        timestamp = self._timestamp(index)
                    if now - due > 1.0:  # very far behind: start the clock again
                        self._clock_start = now - timestamp
        return Frame(image=_bgr_to_rgb(image), index=index, timestamp=timestamp,
                     source=self._label, media=display_name(self.path))

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        self._pending = None
        if cap is not None:
            cap.release()

    # -- pause and seek (the Live page) --------------------------------------------------

    @property
    def duration(self) -> float | None:
        """Seconds of media, when the header says (None: unknown, or not open)."""
        if self.fps and self.frame_count:
            return self.frame_count / self.fps
        return None

    def seek(self, seconds: float) -> None:
        """The next read() returns the frame at media time `seconds` (clamped to the
        file); realtime pacing starts again from there. Call from the reading thread."""
        if self._cap is None:
            raise SourceError(f"Video file {self.path.name} is not open")
        index = max(0, int(round(float(seconds) * (self.fps or 25.0))))
        if self.frame_count:
            index = min(index, self.frame_count - 1)
        self._pending = None
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, index):
            # no frame seeking in this file: read again from the start up to it
            self._cap.release()
            self._cap = self._new_capture()
            if self._cap is None:
                raise SourceError(f"Video file {self.path.name} could not be read again; "
                                  "was it moved or deleted?")
            for _ in range(index):
                if not self._cap.grab():
                    break
        self._next_index = index
        self._ended = False
        self._clock_start = None

    def resume_clock(self) -> None:
        """After a pause: realtime pacing starts again from the next frame (nothing is
        skipped to catch up with the time spent paused)."""
        self._clock_start = None


def _is_v4l_device(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 81


# -- image folders and single images -------------------------------------------------------

def _natural_key(path: Path, root: Path) -> tuple:
    rel = path.relative_to(root).as_posix().lower()
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", rel) if part)


class _ImageListSource(FrameSource):
    """Images read one by one from a list of files; unreadable ones are skipped."""

    def __init__(self, label: str, fps: float | None):
        super().__init__(label)
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        self.fps = float(fps) if fps else None
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        self._position = 0
        self._delivered = 0
        self._clock_start: float | None = None

    @property
    def is_live(self) -> bool:
        return False

    def _list(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        raise NotImplementedError

    def _open(self) -> None:
        self.files, self.skipped = self._list()
        self._position = 0
        self._delivered = 0
        self._clock_start = None

    def _read(self) -> Frame | None:
        while self._position < len(self.files):
            path = self.files[self._position]
            self._position += 1
            try:
                image, scale = read_image(path)
            except ImageError as exc:
                self.skipped.append((path, str(exc)))
                continue
            index = self._delivered
            self._delivered += 1
            timestamp = index / self.fps if self.fps else float(index)
            if self.fps:
                now = time.monotonic()
                if self._clock_start is None:
                    self._clock_start = now - timestamp
                due = self._clock_start + timestamp
                if due > now:
                    time.sleep(due - now)
                elif now - due > 1.0:
                    self._clock_start = now - timestamp
            return Frame(image=image, index=index, timestamp=timestamp, source=self._label,
                         path=display_name(path), scale=scale)
        return None

    def _close(self) -> None:
        pass


class ImageFolderSource(_ImageListSource):
    """The images in a folder, in natural name order (img2 before img10).

    Files that are not images, or images that cannot be decoded, are skipped and listed
    in `skipped` as (path, reason) instead of stopping the stream. A missing folder or
    one without image files raises SourceError at open(). With fps, read() paces frames
    to that rate and timestamps are index/fps; without it timestamps are the index.
    Hidden files are ignored; recursive=True includes subfolders.
    """

    def __init__(self, path: str | os.PathLike, recursive: bool = False,
                 fps: float | None = None):
        self.path = Path(path)
        super().__init__(f"{display_name(self.path.name or self.path)}/", fps)
        self.recursive = bool(recursive)

    def list_images(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        """(image files in order, (other file, why it is skipped)) without decoding."""
        return self._list()

    def _list(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        root = self.path
        if not root.exists():
            raise SourceError(f"Image folder {display_name(root)} does not exist")
        if not root.is_dir():
            raise SourceError(f"{display_name(root)} is not a folder")
        try:
            entries = root.rglob("*") if self.recursive else root.iterdir()
            files = []
            for entry in entries:
                rel_parts = entry.relative_to(root).parts
                if any(part.startswith(".") for part in rel_parts):
                    continue
                # is_dir only stats: a FIFO or device is listed below, never opened
                if entry.name.lower() in _IGNORED_FILES or entry.is_dir():
                    continue
                files.append(entry)
        except OSError as exc:
            raise SourceError(f"Image folder {display_name(root)} cannot be read "
                              f"({exc.strerror or exc})") from None
        files.sort(key=lambda p: _natural_key(p, root))
        images, skipped = [], []
        for entry in files:
            special = special_file(entry)  # a FIFO, a device, a link to one or to nothing
            if special:
                skipped.append((entry, f"{display_name(entry.name)}: {special}"))
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                images.append(entry)
            else:
                suffix = display_name(entry.suffix) or "no extension"
                skipped.append((entry, f"{display_name(entry.name)}: not an image file "
                                       f"({suffix})"))
        if not images:
            kinds = ", ".join(IMAGE_SUFFIXES)
            others = f"; {len(skipped)} other file(s) ignored" if skipped else ""
            where = " or its subfolders" if self.recursive else ""
            raise SourceError(f"Image folder {display_name(root)} contains no images{where} "
                              f"(looked for {kinds}{others})")
        return images, skipped


class ImageFileSource(_ImageListSource):
    """A single image as a one-frame source; an unreadable image raises SourceError."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(display_name(self.path.name or self.path), None)

    def _list(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        try:
            load_image(self.path)  # fail at open(), not as an empty stream
        except ImageError as exc:
            raise SourceError(f"Image {display_name(self.path.name)} cannot be opened: "
                              f"{exc.reason}") from None
        return [self.path], []


# -- dispatch ----------------------------------------------------------------------------------

def open_source(spec: str | os.PathLike | int, **options) -> FrameSource:
    """A source for what a person typed: a camera index, a folder, a URL or a file.

    "0", "1", ... -> CameraSource; an existing folder -> ImageFolderSource; a URL
    (rtsp://, http(s)://, ...) -> StreamSource; file:// URLs and everything else are
    paths: an image file -> ImageFileSource, otherwise VideoFileSource. `options` go to
    the source's constructor (e.g. loop=True, recursive=True, width=1280).

    The source is returned unopened: errors appear at open(), the first read() or
    `with open_source(...) as source:`.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        return CameraSource(spec, **options)
    text = os.fspath(spec).strip() if not isinstance(spec, str) else spec.strip()
    if not text:
        raise SourceError("No source given: use a camera number, a folder, a video file "
                          "or a stream URL")
    if text.isdigit():
        return CameraSource(int(text), **options)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "file":
            text = url2pathname(urlsplit(text).path)
        elif scheme in STREAM_SCHEMES:
            return StreamSource(text, **options)
        else:
            raise SourceError(f"Unsupported address {_redact(text)}: use one of "
                              + ", ".join(f"{s}://" for s in STREAM_SCHEMES))
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, **options)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFileSource(path, **options)
    return VideoFileSource(path, **options)
