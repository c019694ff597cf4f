"""Crew: what the workers, the watchdog and the pool share, under one lock.

Each worker keeps the tasks it holds (claimed and not yet run, running, run and not yet
stored) in a ``Held`` record that the others can reach: the watchdog to end an attempt that ran
past the timeout, the pool to hand back the tasks of a worker that died.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from service.run_context import TaskContext
from service.task_service import Outcome, TaskService
from storage import Task

log = logging.getLogger("taskdesk.workers")


class Held:
    __slots__ = ("abandoned", "busy", "claimed", "context", "finished", "fresh", "limit",
                 "running", "since")

    def __init__(self) -> None:
        self.claimed: deque[Task] = deque()
        self.running: Task | None = None
        self.context: TaskContext | None = None  # the running task's
        self.since = 0.0  # when the running task started (monotonic)
        self.limit = 0.0  # how long it may run (seconds)
        self.fresh = False  # the next task is the first of a batch just claimed
        self.finished: list[Outcome] = []
        self.busy = False  # counted in Crew.busy
        # Its action ran past the task timeout: the task was ended and another worker put in
        # its place; this one leaves when (if ever) the action returns.
        self.abandoned = False


class Crew:
    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.lock = threading.Lock()
        self.held: dict[int, Held] = {}  # worker thread → what it holds
        self.busy = 0  # workers holding at least one task
        self.stuck = 0  # abandoned workers whose action has not returned yet
        # Claimed tasks whose hand-back to the queue failed (database unavailable); the
        # watchdog retries, so they run again once the database is back instead of staying
        # `running`.
        self.stranded: dict[str, tuple[Task, Exception | None]] = {}

    def join(self) -> Held:
        me = Held()
        with self.lock:
            self.held[threading.get_ident()] = me
        return me

    def leave(self) -> Held | None:
        with self.lock:
            return self.held.pop(threading.get_ident(), None)

    def update_busy(self, me: Held) -> None:
        """Count *me* busy while it holds any task."""
        with self.lock:
            busy = bool(me.claimed) or me.running is not None
            if busy != me.busy:
                self.busy += 1 if busy else -1
                me.busy = busy

    def give_back(self, task: Task, error: Exception | None) -> None:
        """Hand a claimed task back to the queue; if the database refuses, keep it for the
        watchdog to try again."""
        try:
            self.service.release(task, error)
        except Exception as exc:
            log.warning("cannot hand task id=%s back to the queue yet (%s); will retry",
                        task.id, exc)
            with self.lock:
                self.stranded[task.id] = (task, error)

    def hand_back_stranded(self) -> None:
        with self.lock:
            stranded = list(self.stranded.values())
        for task, error in stranded:
            self.service.release(task, error)  # raises while the database is unavailable
            with self.lock:
                del self.stranded[task.id]
