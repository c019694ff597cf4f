"""Retention: finished tasks older than ``--keep-completed`` / ``--keep-failed`` days are
deleted, with their logs and idempotency keys, by a background thread.

It deletes in small batches (BATCH_SIZE tasks, one short commit each) with a pause between
them nine times as long as the batch took (at least BATCH_PAUSE_SECONDS), so that it holds the
one writer every write shares (group commit) at most a tenth of the time: a submission never
waits long behind it, and when the database is busy, batches take longer and the purge slows
down by itself. One huge DELETE would hold every submission for seconds. A backlog of a
million old tasks (after retention is first turned on) takes some tens of minutes.
Deletions go through ``TaskService.purge``, which tells subscribers (the window drops the
rows). Cancelled tasks are kept as long as failed ones: both are work that did not complete,
which someone may still want to look at or retry. 0 days keeps that kind forever.

No Qt here; the clock and the way of waiting are injected, so tests need no sleeps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from service.task_service import TaskService
from service.waiting import EventWaiter, Waiter

log = logging.getLogger("taskdesk.retention")

DAY_SECONDS = 86_400.0
# A batch is one commit of this many deletions (with their index entries and log files):
# a few milliseconds, about what a commit of a busy second's submissions takes anyway.
BATCH_SIZE = 200
# Between batches, the writer is left to everyone else for at least this long, and for
# PAUSE_FACTOR times as long as the batch took.
BATCH_PAUSE_SECONDS = 0.05
PAUSE_FACTOR = 9.0
# How often old tasks are looked for once the backlog is gone.
INTERVAL_SECONDS = 300.0
# After the database refused a batch, try again this much later.
RETRY_SECONDS = 30.0


class Retention:
    def __init__(
        self,
        service: TaskService,
        keep_completed_days: float,
        keep_failed_days: float,
        *,
        batch_size: int = BATCH_SIZE,
        batch_pause: float = BATCH_PAUSE_SECONDS,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] | None = None,
        waiter: Waiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if keep_completed_days < 0 or keep_failed_days < 0 or batch_size < 1:
            raise ValueError("days must be ≥ 0 and the batch size ≥ 1")
        self.service = service
        self.keep_completed_days = keep_completed_days
        self.keep_failed_days = keep_failed_days
        self.batch_size = batch_size
        self.batch_pause = batch_pause
        self.interval = interval
        self.clock = clock if clock is not None else service.clock
        self.waiter: Waiter = waiter if waiter is not None else EventWaiter()
        self.monotonic = monotonic
        self.deleted = 0  # in all, since start
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """False when both kinds are kept forever: no thread is needed."""
        return bool(self.keep_completed_days or self.keep_failed_days)

    def cutoffs(self, now: float) -> tuple[float, float]:
        """(completed before, failed or cancelled before): tasks finished before these times
        are deleted; 0 days is the start of the epoch, before anything finished."""

        def before(days: float) -> float:
            return now - days * DAY_SECONDS if days else 0.0

        return before(self.keep_completed_days), before(self.keep_failed_days)

    def purge(self) -> int:
        """Delete every task past its time, batch after batch with a pause between them, until
        none is left or the thread is stopped; how many were deleted."""
        completed_before, failed_before = self.cutoffs(self.clock())
        deleted = 0
        while not self._stopping.is_set():
            started = self.monotonic()
            n = self.service.purge(completed_before, failed_before, self.batch_size)
            took = self.monotonic() - started
            deleted += n
            self.deleted += n
            if n < self.batch_size:
                break
            self.waiter.wait(max(self.batch_pause, PAUSE_FACTOR * took))
        if deleted:
            log.info("deleted %d finished task(s) past their retention (completed: %s, failed "
                     "or cancelled: %s)", deleted, _days(self.keep_completed_days),
                     _days(self.keep_failed_days))
        return deleted

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("retention already started")
        if not self.enabled:
            log.info("retention off: finished tasks are kept forever")
            return
        self._thread = threading.Thread(target=self._run, name="taskdesk-retention",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.purge()
                wait = self.interval
            except Exception as exc:  # the database unavailable, say: not a reason to stop
                log.warning("retention: %s; trying again in %.0f s", exc, RETRY_SECONDS)
                wait = RETRY_SECONDS
            if not self._stopping.is_set():
                self.waiter.wait(wait)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch under way (one short commit)."""
        self._stopping.set()
        self.waiter.wake()
        if self._thread is not None:
            self._thread.join(timeout)


def _days(days: float) -> str:
    return f"after {days:g} days" if days else "kept forever"
