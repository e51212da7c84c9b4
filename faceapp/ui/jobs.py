"""Bulk work off the GUI thread.

A Job runs one function in a QThreadPool. The function gets the job and may call
`job.report(done, total, item)` and check `job.cancelled()`; what it returns arrives
in the GUI thread through `succeeded`, an exception through `failed` as a message a
person can read. The Job object lives in the GUI thread, so every signal is delivered
there (queued) whatever thread emits it.
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ..core.enroll import EnrollError
from ..core.gallery import GalleryError
from ..core.imageio import ImageError
from ..core.models import ModelPackError
from ..core.sources import SourceError

# Failures the engine explains in words; anything else is a bug and gets a traceback.
EXPECTED_ERRORS = (GalleryError, EnrollError, ImageError, ModelPackError, SourceError,
                   OSError, ValueError)


def describe(exc: BaseException) -> str:
    """A one-line message for a person; unexpected errors are also printed in full."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, EXPECTED_ERRORS):
        return str(exc) or type(exc).__name__
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return f"unexpected error ({type(exc).__name__}: {exc})"


class _Runner(QRunnable):
    def __init__(self, job: "Job"):
        super().__init__()
        self.job = job

    def run(self) -> None:
        self.job._execute()


class Job(QObject):
    progress = Signal(int, int, str)  # done, total, current item
    succeeded = Signal(object)
    failed = Signal(str)
    finished = Signal()  # after succeeded or failed

    _running: set["Job"] = set()  # keeps started jobs alive until they finish

    def __init__(self, fn: Callable[["Job"], Any], name: str = ""):
        super().__init__()
        self._fn = fn
        self.name = name
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.finished.connect(self._forget)

    @classmethod
    def running(cls) -> list["Job"]:
        return list(cls._running)

    def start(self, pool: QThreadPool | None = None) -> "Job":
        Job._running.add(self)
        (pool or QThreadPool.globalInstance()).start(_Runner(self))
        return self

    # -- called from the worker thread --------------------------------------------------
    def report(self, done: int, total: int, item: str = "") -> None:
        self.progress.emit(int(done), int(total), str(item))

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _execute(self) -> None:
        try:
            result = self._fn(self)
        except BaseException as exc:  # a job must never take the app down
            self.failed.emit(describe(exc))
        else:
            self.succeeded.emit(result)
        finally:
            self._done.set()
            self.finished.emit()

    # -- called from the GUI thread ------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def is_done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the function returned (only for shutdown and tests)."""
        return self._done.wait(timeout)

    def _forget(self) -> None:
        Job._running.discard(self)
