"""ProgressBoard: coalesces what running actions report, so reporting costs them nothing.

An action may call ``ctx.progress`` in a tight loop; each call only replaces the latest report
of its task in a dict. A flusher thread stores what changed every FLUSH_SECONDS, all tasks in
one commit (through TaskService.set_progress, which tells subscribers), so a task's progress is
written a handful of times a second at most however often it is reported, and the workers never
wait for those writes. ``flush`` also runs when an attempt ends, so its last report is not lost
to the batching.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from storage import Progress

if TYPE_CHECKING:
    from service.task_service import TaskService

log = logging.getLogger("taskdesk.progress")

FLUSH_SECONDS = 0.25
MAX_MESSAGE_CHARS = 500


class ProgressBoard:
    def __init__(self, service: TaskService, interval: float = FLUSH_SECONDS) -> None:
        self._service = service
        self._interval = interval
        self._lock = threading.Lock()
        self._latest: dict[str, Progress] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def report(self, task_id: str, attempt: int, fraction: float | None,
               message: str | None) -> None:
        """The latest report of a running attempt; ValueError for a fraction outside 0–1."""
        if fraction is not None:
            fraction = float(fraction)
            if not 0.0 <= fraction <= 1.0:  # also refuses NaN
                raise ValueError(f"progress must be from 0 to 1, not {fraction!r}")
        if message is not None:
            message = str(message)[:MAX_MESSAGE_CHARS]
        with self._lock:
            self._latest[task_id] = Progress(task_id, attempt, fraction, message)
            start = self._thread is None
            if start:
                self._thread = threading.Thread(target=self._loop, name="taskdesk-progress",
                                                daemon=True)
        if start:
            assert self._thread is not None
            self._thread.start()

    def flush(self, task_id: str | None = None) -> None:
        """Store the pending reports now (those of *task_id* only, if given)."""
        with self._lock:
            if task_id is None:
                reports, self._latest = list(self._latest.values()), {}
            else:
                one = self._latest.pop(task_id, None)
                reports = [one] if one is not None else []
        if reports:
            try:
                self._service.set_progress(reports)
            except Exception as exc:  # progress is advisory: never fail a task over it
                log.warning("cannot store the progress of %d task(s): %s", len(reports), exc)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def stop(self) -> None:
        """Store what is pending and end the flusher (a later report starts another)."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.flush()
        self._stop.clear()
