"""ChangeFeed: carries task changes from worker and API threads to the GUI thread, coalesced.

Threads:
- ``TaskService`` calls our listener on whichever thread made the change (a worker, the API
  server, or the GUI itself). The listener only appends ``(id, seq)`` to a ``deque``, whose
  append and popleft are thread-safe, and touches no Qt object, so it stays valid even after
  the window is gone.
- A ``QTimer`` on the GUI thread drains the deque every ``interval_ms`` and, when anything
  changed, emits ``changed`` once with every changed id. However many events a flood brings,
  the window refreshes at most once per tick (10 times a second by default).
- Backpressure: the time the ``changed`` handlers took sets the next interval (five times as
  long, between ``interval_ms`` and ``max_interval_ms``), so even refreshes made slow by a
  search over a huge database leave the GUI thread mostly idle and the window responsive.
- A refresh that fails (the database cannot be read right now) hands its ids back with
  ``defer``, so they are emitted again at the next tick: the window's rows older than its live
  window are re-read only by id, and with no further change there would be no next refresh.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

from PySide6.QtCore import QObject, QTimer, Signal

from service.events import EventKind, TaskEvent
from service.task_service import TaskService

DEFAULT_INTERVAL_MS = 100
MAX_INTERVAL_MS = 2000
BUSY_FACTOR = 5  # refreshing may take at most 1/BUSY_FACTOR of the GUI thread's time


class ChangeFeed(QObject):
    # dict[str, int]: changed task id → its seq (the table's paging cursor)
    changed = Signal(object)
    # Another instance sharing the database changed more than it could name (or contact
    # with the database was lost for a while): re-read everything shown.
    resync = Signal()

    def __init__(
        self,
        service: TaskService,
        parent: QObject | None = None,
        *,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        max_interval_ms: int = MAX_INTERVAL_MS,
        perf_counter: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(parent)
        self._perf_counter = perf_counter
        self._interval_ms = interval_ms
        self._max_interval_ms = max(max_interval_ms, interval_ms)
        pending: deque[tuple[str, int]] = deque()
        self._pending = pending
        resync = self._resync = [False]

        # A closure over the deque alone, not a bound method: it runs on other threads and
        # must not keep or touch this QObject.
        def listener(event: TaskEvent) -> None:
            if event.task is not None:
                pending.append((event.task.id, event.task.seq))
            elif event.kind == EventKind.RESYNC:
                resync[0] = True

        self._unsubscribe = service.subscribe(listener)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    @property
    def interval_ms(self) -> int:
        return self._timer.interval()

    def flush(self) -> None:
        """Emit what changed since the last tick, if anything (also callable directly)."""
        changed: dict[str, int] = {}
        pending = self._pending
        while pending:
            task_id, seq = pending.popleft()
            changed[task_id] = seq
        resync, self._resync[0] = self._resync[0], False
        if not changed and not resync:
            return
        started = self._perf_counter()
        if changed:
            self.changed.emit(changed)
        if resync:
            self.resync.emit()
        spent_ms = (self._perf_counter() - started) * 1000
        interval = int(min(self._max_interval_ms, max(self._interval_ms, spent_ms * BUSY_FACTOR)))
        if interval != self._timer.interval():
            self._timer.setInterval(interval)

    def defer(self, changed: Mapping[str, int]) -> None:
        """Emit *changed* again at the next tick, with whatever changes meanwhile."""
        # Order does not matter: a task's seq never changes, and flush() merges by id.
        self._pending.extend(changed.items())

    def stop(self) -> None:
        """Stop listening and ticking; safe to call more than once."""
        self._timer.stop()
        self._unsubscribe()
        self._pending.clear()
