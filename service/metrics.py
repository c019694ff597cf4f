"""Per-second counts of finished tasks, for throughput figures and the window's chart."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateHistory:
    """Counts completed and failed tasks in one-second buckets over the last *seconds*."""

    def __init__(self, seconds: int = 300, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        # (second, completed, failed), oldest first
        self._buckets: deque[list[int]] = deque()

    def record(self, completed: int = 0, failed: int = 0) -> None:
        second = int(self._clock())
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != second:
                self._buckets.append([second, 0, 0])
                while self._buckets and self._buckets[0][0] <= second - self._seconds:
                    self._buckets.popleft()
            self._buckets[-1][1] += completed
            self._buckets[-1][2] += failed

    def series(self, seconds: int) -> list[tuple[int, int]]:
        """(completed, failed) for each of the last *seconds* whole seconds, oldest first."""
        now = int(self._clock())
        with self._lock:
            by_second = {b[0]: (b[1], b[2]) for b in self._buckets}
        return [by_second.get(s, (0, 0)) for s in range(now - seconds, now)]

    def rates(self, seconds: int = 10) -> tuple[float, float]:
        """Average completed/s and failed/s over the last *seconds* whole seconds."""
        series = self.series(seconds)
        return (sum(c for c, _ in series) / seconds, sum(f for _, f in series) / seconds)
