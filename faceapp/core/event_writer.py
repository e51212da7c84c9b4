"""The event log's writer for recognition: events and unknown faces are queued and
written without ever stopping recognition, whatever the gallery is doing (locked by
another program, its server away)."""

from __future__ import annotations

import time
import uuid

from .gallery import (GalleryLocked, GalleryUnavailable, NotFound, QueuedEvent, format_time,
                      parse_time, utc_now)
from .unknowns import UnknownFace, UnknownFaces

class EventWriter:
    """Writes events (and unknown faces) without ever stopping recognition.

    While another program holds the gallery's write lock, they wait in memory (the
    newest MAX_PENDING) and are written when it is free, retrying with a growing
    pause (1 s up to RETRY_MAX). While a gallery server cannot be reached, events go
    to a local spool file (gallery/spool.py) and are sent, oldest first and each once,
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
            from .gallery.spool import EventSpool, spool_path_for

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

    def add(self, person_id, score, source, thumbnail, details) -> str:
        """Queue an event; returns its id (uid), which an unknown face kept with it
        carries."""
        # its id and time are fixed now: sent later, or twice, it is the same event
        uid = uuid.uuid4().hex
        self._queue(QueuedEvent(uid, format_time(utc_now()), person_id, score,
                                source, thumbnail, details))
        return uid

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
        when = parse_time(event.time)
        try:
            self.gallery.add_event(event.person_id, event.score, event.source, event.thumbnail,
                                   time=when, details=event.details, wait=wait, uid=event.uid)
        except NotFound:  # the person was deleted meanwhile
            self.gallery.add_event(None, event.score, event.source, event.thumbnail,
                                   time=when, details=event.details, wait=wait, uid=event.uid)

    def _spool_pending(self) -> None:
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
