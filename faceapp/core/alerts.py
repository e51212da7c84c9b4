"""Alerts: which recognised faces someone must be told about, now.

`AlertWatcher` follows one Recognizer (one camera). After each frame it looks at the
faces (FrameResult) and raises an alert for a track whose answer has settled (two
looks) on a person of the gallery's watch list, or on an unknown face when "any
unknown face" is watched, where the entry applies to this camera and outside its
quiet hours. Each track alerts once; a person at most once per `alert_every` minutes
(an unknown face: one that looks like a stranger alerted about within that time), so
someone standing an hour in front of the camera is one alert. An alert is recorded in
the gallery (linked to its event, whose thumbnail is its picture) and handed to
sinks: the app's notification, `CommandSink` (--on-alert CMD).

Nothing here ever stops recognition: a sink that fails is reported and skipped, a
gallery that is locked or away keeps the alert's record waiting, a command that
hangs is killed after its timeout.
"""

from __future__ import annotations

import base64
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from .align import align_face
from .gallery import (GalleryError, GalleryLocked, GalleryUnavailable, add_alert, alert_every,
                      is_quiet, last_alert, utc_now, watch_list)
from .recognize import KEPT_AS_UNKNOWN, FrameResult, Recognizer

SETTLE_LOOKS = 2  # looks at a track that agree before it alerts (one glance may be wrong)
WATCH_POLL = 2.0  # seconds between readings of the watch list (the CLI may change it)
MAX_TRACKS = 2000  # tracks remembered (alerted or counted), oldest forgotten first
MAX_WAITING = 200  # alert records waiting for a locked or absent gallery


@dataclass
class Alert:
    time: datetime  # aware, UTC
    person_id: int | None  # None: an unknown face
    name: str | None
    camera: str
    station: str
    score: float | None
    track: int
    picture: bytes | None  # the face, JPEG
    event_uid: str | None = None  # the event that recorded the face
    id: int | None = None  # once recorded in the gallery

    @property
    def who(self) -> str:
        return self.name or "an unknown face"

    def text(self) -> str:
        """One line a person reads: "Alice at door.mp4, 14:02:07"."""
        when = self.time.astimezone().strftime("%H:%M:%S")
        where = camera_words(self.camera) or self.station
        return f"{self.name or 'Unknown face'} at {where}, {when}"

    def as_json(self) -> dict:
        """What --on-alert's command reads on its standard input."""
        return {"name": self.name, "person_id": self.person_id, "camera": self.camera,
                "station": self.station,
                "time": self.time.astimezone().isoformat(timespec="seconds"),
                "score": None if self.score is None else round(float(self.score), 4),
                "track": self.track, "alert_id": self.id,
                "picture": base64.b64encode(self.picture).decode("ascii")
                if self.picture else None}


def camera_words(camera: str) -> str:
    """A camera as a person reads it: a file by its name, anything else as given."""
    if "://" not in camera and os.sep in camera:
        return os.path.basename(camera.rstrip(os.sep)) or camera
    return camera


def without_password(camera: str) -> str:
    """A stream's address with its password replaced by *** (alerts are stored and
    handed to commands)."""
    try:
        parts = urlsplit(camera)
        if parts.password is None:
            return camera
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, f"{parts.username or ''}:***@{host}", parts.path,
                           parts.query, parts.fragment))
    except ValueError:
        return camera


def _stderr(text: str) -> None:
    print(f"faceapp: {text}", file=sys.stderr, flush=True)


def face_picture(image: np.ndarray, landmarks) -> bytes | None:
    """The face as the event log stores it: aligned 112 x 112, JPEG."""
    crop = align_face(image, landmarks, "arcface112")
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, 85])
    return encoded.tobytes() if ok else None


class AlertWatcher:
    """The alerts of one camera's Recognizer. camera: the source as the user named it
    (a watch-list entry for it, its file name, its label or this station applies).
    clock: the time now (aware), injectable for tests."""

    def __init__(self, recognizer: Recognizer, camera: str,
                 sinks: list[Callable[[Alert], None]] | tuple = (),
                 clock: Callable[[], datetime] = utc_now, label: str | None = None,
                 report: Callable[[str], None] = _stderr):
        self.recognizer = recognizer
        self.gallery = recognizer.gallery
        self.camera = without_password(str(camera))
        self.names = {self.camera, os.path.basename(self.camera.rstrip("/\\")), label,
                      getattr(self.gallery, "station", "")}
        if self.camera.strip().isdigit():  # a camera index, as the app names it
            self.names.add(f"Camera {self.camera.strip()}")
        self.sinks = list(sinks)
        self.clock = clock
        self.report = report
        self.sent: list[Alert] = []  # this watcher's, oldest first (the last MAX_WAITING)
        self.entries: list = []
        self.every = timedelta(0)
        self._next_poll = 0.0
        self._looks: OrderedDict[int, int] = OrderedDict()  # track -> fresh looks
        self._done: OrderedDict[int, bool] = OrderedDict()  # tracks alerted (or limited)
        self._last: dict[int, datetime | None] = {}  # person -> their last alert
        self._strangers: list[tuple[datetime, np.ndarray]] = []  # unknowns alerted
        self._waiting: list[Alert] = []  # records for a gallery locked or away
        self._told: set[str] = set()

    # -- after each frame ---------------------------------------------------------------------
    def observe(self, result: FrameResult, image: np.ndarray) -> list[Alert]:
        """The alerts this frame raises (already recorded and handed to the sinks).
        Never raises: recognition goes on whatever an alert meets."""
        try:
            return self._observe(result, image)
        except Exception as exc:  # a bug here must not stop a desk's camera
            self._tell("check", f"alerts could not be checked: {exc}")
            return []

    def _observe(self, result: FrameResult, image: np.ndarray) -> list[Alert]:
        for found in result.faces:
            if found.fresh and found.track_id >= 0:
                _remember(self._looks, found.track_id, self._looks.get(found.track_id, 0) + 1)
        self._refresh()
        self._record_waiting()
        if not self.entries:
            return []
        now = self.clock()
        raised = []
        for found in result.faces:
            track, decision = found.track_id, found.decision
            if decision is None:
                continue
            if track >= 0 and (track in self._done
                               or self._looks.get(track, 0) < SETTLE_LOOKS):
                continue
            if decision.known:
                who = decision.person_id
            elif decision.reason in KEPT_AS_UNKNOWN:
                who = None
            else:  # unclear, or between two people: not worth waking someone
                continue
            if not self._watched(who, now):
                continue  # not watched here, or quiet hours (it may be later)
            if track >= 0:
                _remember(self._done, track, True)
            if self._limited(who, found.embedding, now):
                continue
            alert = Alert(time=now, person_id=who,
                          name=self.recognizer.names.get(who) if who is not None else None,
                          camera=self.camera, station=getattr(self.gallery, "station", ""),
                          score=float(decision.score), track=track,
                          picture=face_picture(image, found.face.landmarks),
                          event_uid=found.event_uid)
            raised.append(alert)
            self._record(alert)
            self._send(alert)
        return raised

    def _refresh(self) -> None:
        """The watch list and the rate limit, read again every WATCH_POLL seconds; the
        last ones stay while the gallery cannot be read."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + WATCH_POLL
        try:
            entries = watch_list(self.gallery)
            every = alert_every(self.gallery)
        except GalleryError:
            return
        self.entries = entries
        self.every = timedelta(minutes=every)

    def _watched(self, who: int | None, now: datetime) -> bool:
        return any(e.person_id == who and e.watches(self.names) and not is_quiet(e.quiet, now)
                   for e in self.entries)

    def _limited(self, who: int | None, vector, now: datetime) -> bool:
        """Alerted about within the rate limit (and remember this one if not)."""
        if who is None:
            recent = [(t, v) for t, v in self._strangers if now - t < self.every]
            same = self.recognizer.same_face
            if vector is not None and any(v is not None and float(vector @ v) >= same
                                          for _, v in recent):
                self._strangers = recent
                return True
            self._strangers = recent + [(now, None if vector is None else vector.copy())]
            return False
        if who not in self._last:  # the rate limit outlives a restart of the app
            try:
                self._last[who] = last_alert(self.gallery, who)
            except GalleryError:
                self._last[who] = None
        last = self._last[who]
        if last is not None and now - last < self.every:
            return True
        self._last[who] = now
        return False

    # -- what an alert becomes -----------------------------------------------------------------
    def _record(self, alert: Alert) -> None:
        self.sent = (self.sent + [alert])[-MAX_WAITING:]
        if getattr(self.gallery, "read_only", False):
            return
        self._waiting.append(alert)
        del self._waiting[:-MAX_WAITING]
        self._record_waiting()

    def _record_waiting(self) -> None:
        while self._waiting:
            alert = self._waiting[0]
            try:
                alert.id = add_alert(self.gallery, alert.person_id, alert.score, alert.camera,
                                     time=alert.time, track=alert.track,
                                     event_uid=alert.event_uid, wait=0.2)
            except (GalleryLocked, GalleryUnavailable):
                return  # written at a later frame
            except Exception as exc:
                self._tell("record", f"an alert could not be saved: {exc}")
            self._waiting.pop(0)

    def _send(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink(alert)
            except Exception as exc:
                self._tell(f"sink {id(sink)}", f"an alert could not be sent: {exc}")

    def _tell(self, key: str, text: str) -> None:
        if key not in self._told:  # once: a broken sink must not fill the log
            self._told.add(key)
            try:
                self.report(text)
            except Exception:
                pass


def _remember(memory: OrderedDict, key, value) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > MAX_TRACKS:
        memory.popitem(last=False)


class CommandSink:
    """Runs a command for each alert (split like a shell would, never run by one) with
    the alert as JSON on its standard input; one at a time, in a thread of its own, so
    recognition never waits. A command still running after `timeout` seconds is killed
    (with what it started); a failure is reported (stderr) and the next alert goes on."""

    def __init__(self, command: str, timeout: float = 10.0, max_waiting: int = 50,
                 report: Callable[[str], None] = _stderr):
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"the alert command cannot be read: {exc}") from None
        if not self.argv:
            raise ValueError("the alert command is empty")
        self.timeout = float(timeout)
        self.max_waiting = max_waiting
        self.report = report
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, alert: Alert) -> None:
        if self._queue.qsize() >= self.max_waiting:
            self.failed += 1
            self.report(f"{self.max_waiting} alerts wait for the alert command already: "
                        f"the alert about {alert.who} is not sent to it")
            return
        self._queue.put(alert.as_json())
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-command",
                                                daemon=True)
                self._thread.start()

    def close(self, wait: float | None = None) -> None:
        """Deliver what waits (each still bounded by the timeout), then end the thread."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(wait)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                with self._lock:
                    self._thread = None
                return
            try:
                self.deliver(payload)
            except Exception as exc:  # never let one alert end the thread
                self.failed += 1
                self.report(f"the alert command failed: {exc}")

    def deliver(self, payload: dict) -> bool:
        import json

        name = os.path.basename(self.argv[0])
        data = (json.dumps(payload) + "\n").encode("utf-8")
        try:
            # its output goes to stderr: stdout may be ours (identify's JSON lines)
            child = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=2,
                                     start_new_session=True)
        except OSError as exc:
            self.failed += 1
            self.report(f"the alert command {name} cannot be started: "
                        f"{exc.strerror or exc}")
            return False
        try:
            child.communicate(data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)  # and whatever it started
            except OSError:
                child.kill()
            child.communicate()
            self.failed += 1
            self.report(f"the alert command {name} did not finish within "
                        f"{self.timeout:g} s and was stopped")
            return False
        if child.returncode != 0:
            self.failed += 1
            self.report(f"the alert command {name} ended with status {child.returncode}")
            return False
        self.delivered += 1
        return True
