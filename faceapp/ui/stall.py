"""Measuring how long the GUI thread is kept from reacting (for tests and benchmarks)."""

from __future__ import annotations

from PySide6.QtCore import QElapsedTimer, QObject, QTimer


class StallMeter(QObject):
    """A timer ticking every `interval_ms` on the GUI thread; the gaps between ticks
    show how long the thread was busy elsewhere (the longest is the worst freeze)."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None,
                 keep_gaps: bool = True):
        super().__init__(parent)
        self.gaps: list[int] = []
        self.keep_gaps = keep_gaps  # off for hour-long runs: only the longest is kept
        self._longest = 0
        self._clock = QElapsedTimer()
        self._last = 0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self._longest = 0
        self._clock.start()
        self._last = 0
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = self._clock.elapsed()
        gap = now - self._last
        self._longest = max(self._longest, gap)
        if self.keep_gaps:
            self.gaps.append(gap)
        self._last = now

    @property
    def longest(self) -> int:
        return self._longest

    @property
    def median(self) -> int:
        return sorted(self.gaps)[len(self.gaps) // 2] if self.gaps else 0
