"""Doorbell: wakes idle workers when work may have become ready, without ever losing a ring.

A worker notes the bell's generation *before* it asks the store for work; if it finds none,
it waits only while the generation is unchanged. A task submitted between the note and the
wait has rung the bell already, so the wait returns at once and the worker asks again. Each
ring wakes as many waiting workers as there are new tasks, not all of them.
"""

from __future__ import annotations

import threading

from service.events import NEW_WORK, TaskEvent


class Doorbell:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._closed = False

    @property
    def generation(self) -> int:
        return self._generation  # an int read is atomic; a stale value only means a retry

    @property
    def closed(self) -> bool:
        return self._closed

    def ring(self, tasks: int | None = 1) -> None:
        """Wake up to *tasks* waiting workers (None: all of them)."""
        with self._cond:
            self._generation += 1
            if tasks is None:
                self._cond.notify_all()
            else:
                self._cond.notify(tasks)

    def on_event(self, event: TaskEvent) -> None:
        """A TaskService subscriber: rings for every change that may make a task ready; a
        change of the whole queue (resumed, or anything may have changed) wakes everyone."""
        if event.kind in NEW_WORK:
            self.ring(None if event.task is None else event.count)

    def wait(self, since: int, timeout: float | None) -> bool:
        """Wait up to *timeout* seconds while the generation is still *since*; True when it
        rang (or the bell was closed) meanwhile."""
        with self._cond:
            if self._generation == since and not self._closed and (timeout is None or timeout > 0):
                self._cond.wait(timeout)
            return self._generation != since or self._closed

    def close(self) -> None:
        """Wake everyone, for good: waits return at once from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
