"""Watchdog: the pool's housekeeping thread.

Every WATCH_SECONDS it
- ends attempts whose action ran past its time limit, or was asked to stop (cancelled) and
  has not within the kill grace, and has another worker take over (a Python thread cannot be
  stopped from outside: the worker stays blocked in the action but no longer counts; if the
  action ever returns, its outcome is dropped);
- hands back to the queue tasks whose hand-back failed while the database was unavailable;
- notices the wall clock being set back and moves pending retries with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from service.task_service import TaskService
from service.workers.crew import Crew, Held
from storage import DatabaseError, Task

log = logging.getLogger("taskdesk.workers")

WATCH_SECONDS = 0.5
# How much longer than the kill grace an action asked to stop may take before its worker is
# given up on (a command's runner needs the grace itself, then reaps the process).
CANCEL_MARGIN = 1.0


class Watchdog:
    def __init__(
        self,
        service: TaskService,
        crew: Crew,
        stopping: threading.Event,
        *,
        task_timeout: float,
        kill_grace: float = 5.0,
        replace_worker: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.crew = crew
        self.stopping = stopping
        self.task_timeout = task_timeout
        self.kill_grace = kill_grace
        self.replace_worker = replace_worker
        self.monotonic = monotonic
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="taskdesk-watchdog", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        clock = ClockWatch(self.service.clock, self.monotonic)
        while not self.stopping.wait(WATCH_SECONDS):
            try:
                self.watch_once(clock)
            except DatabaseError as exc:
                # Locked, full, unwritable or damaged: already on /health; no traceback.
                log.warning("watchdog: %s; trying again", exc)
            except Exception:
                log.exception("watchdog failed; trying again")

    def watch_once(self, clock: ClockWatch) -> None:
        backwards = clock.jumped_back()
        if backwards:
            self.service.shift_retries(-backwards)
        if self.crew.stranded:
            self.crew.hand_back_stranded()
        self.end_stuck_tasks()

    def end_stuck_tasks(self) -> None:
        """End tasks whose action ran past its time limit, or ignored being asked to stop
        for longer than the kill grace, and replace their workers."""
        now = self.monotonic()
        crew = self.crew
        with crew.lock:
            stuck = [(me, me.running) for me in crew.held.values()
                     if me.running is not None and not me.abandoned and self._stuck(me, now)]
            for me, _ in stuck:
                me.abandoned = True
                crew.stuck += 1
        for me, task in stuck:
            assert task is not None
            self._end(me, task)

    def _stuck(self, me: Held, now: float) -> bool:
        ctx = me.context
        # cancelled_at is time.monotonic() (the watchdog's own clock may be a test's).
        if (ctx is not None and ctx.cancelled_at is not None and not ctx.stopping
                and time.monotonic() - ctx.cancelled_at > self.kill_grace + CANCEL_MARGIN):
            return True
        return now - me.since > (me.limit or self.task_timeout)

    def _end(self, me: Held, task: Task) -> None:
        ctx = me.context
        cancelled = ctx is not None and ctx.cancelled.is_set() and not ctx.stopping
        limit = me.limit or self.task_timeout
        if cancelled:
            log.warning("task id=%s action=%s did not stop within %.0f s of being cancelled; "
                        "ending it and starting another worker", task.id, task.action,
                        self.kill_grace)
        else:
            log.warning("task id=%s action=%s has run for more than %.0f s; ending its attempt "
                        "and starting another worker", task.id, task.action, limit)
            if ctx is not None:
                ctx.cancel()  # a cooperative action stops; its outcome is dropped either way
        # Once abandoned (under the crew's lock) its worker never touches its record again:
        # the outcomes of the batch's earlier tasks are stored here, the rest handed back.
        finished, me.finished = me.finished, []
        rest = list(me.claimed)
        me.claimed.clear()
        with self.crew.lock:
            if me.busy:  # counted as stuck from now on, not busy
                self.crew.busy -= 1
                me.busy = False
        outcomes = [*finished, self.service.timed_out(task, limit)]
        try:
            self.service.settle(outcomes, 0)
        except Exception as exc:
            for outcome in outcomes:
                self.crew.give_back(outcome.task, exc)
        for held in rest:
            self.crew.give_back(held, None)
        if not self.stopping.is_set():
            self.replace_worker()


class ClockWatch:
    """Notices the wall clock being set back, by comparing it with a monotonic clock.

    Retry times are stored as wall-clock times (they must survive a restart); if the clock is
    set back an hour, every pending retry would wait an extra hour unless shifted back too.
    A clock set forward only makes pending retries come a little early.
    """

    TOLERANCE = 1.0  # seconds of disagreement that are noise, not a jump

    def __init__(self, wall: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self._wall, self._monotonic = wall, monotonic
        self._last = (wall(), monotonic())

    def jumped_back(self) -> float:
        """Seconds the wall clock went back since the last call (0 if it did not)."""
        wall, mono = self._wall(), self._monotonic()
        expected = self._last[0] + (mono - self._last[1])
        self._last = (wall, mono)
        drift = expected - wall
        return drift if drift > self.TOLERANCE else 0.0
