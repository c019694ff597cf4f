"""BatchWorker: one worker's loop — claim a batch, run it, store it with the next claim.

A task costs three writes: submit, claim, outcome. A worker that claimed and stored one task
at a time waited for two commits per task; under HTTP load (each commit shared with dozens of
POSTs) two workers then completed a tenth of what was accepted. So a worker

- claims, in one statement, as many due tasks as it can run in BATCH_SECONDS (by the average
  time its actions take plus the simulated work): with the tutorial's 100 ms of work that is
  one, so ``running`` still means running; with instant tasks up to ``max_batch``;
- runs them one after another, and
- stores all their outcomes *and* claims the next batch in one commit.

When nothing new was rung in since its last claim, it lingers up to LINGER_SECONDS for a ring
before storing its outcomes alone, so that a worker keeping pace with a single submitter makes
one commit per task, not two. It has no Qt in it: the pool runs it on a QThreadPool thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from service.task_service import TaskService
from service.workers.crew import Crew, Held
from service.workers.doorbell import Doorbell

log = logging.getLogger("taskdesk.workers")

# A worker claims as many tasks at once as it can run in this long (at least one).
BATCH_SECONDS = 0.005
# How long a worker with outcomes to store waits for new work to claim in the same commit.
LINGER_SECONDS = 0.001
# A task that runs longer than this ends its batch: the rest go back to the queue.
SLOW_SECONDS = 4 * BATCH_SECONDS
# Longest an idle worker waits without a ring: a safety net should a ring ever be missed,
# that costs one indexed query per worker a second when idle (on PostgreSQL it also catches
# work from another node whose notification was lost).
IDLE_POLL_SECONDS = 1.0


class BatchWorker:
    def __init__(
        self,
        service: TaskService,
        crew: Crew,
        bell: Doorbell,
        stopping: threading.Event,
        *,
        work_delay: float,
        max_batch: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.crew = crew
        self.bell = bell
        self.stopping = stopping
        self.work_delay = work_delay
        self.max_batch = max_batch
        self.monotonic = monotonic
        # How long running an action takes, on average (shared by the pool's workers; a
        # racy moving average is fine); until measured, assume a batch's worth.
        self.run_seconds = BATCH_SECONDS

    def batch_size(self) -> int:
        per_task = self.work_delay + self.run_seconds
        if per_task <= 0:
            return self.max_batch
        return max(1, min(self.max_batch, int(BATCH_SECONDS / per_task)))

    def work(self) -> bool:
        """The loop of one worker thread, until the pool stops or a timeout abandons it;
        True when it was abandoned (another worker has taken its place)."""
        me = self.crew.join()
        self._loop(me)  # if it raises, the pool hands back what *me* holds
        self.crew.leave()
        return me.abandoned

    def _loop(self, me: Held) -> None:
        rung = self.bell.generation
        while not me.abandoned:
            if me.claimed:
                if not self._run_next(me):
                    return  # abandoned by the watchdog: its task was ended for it
                continue
            if self.stopping.is_set():
                self._settle(me, 0)
                return
            if me.finished and self.bell.generation == rung:
                self.bell.wait(rung, LINGER_SECONDS)
            rung = self.bell.generation
            claimed = self._settle(me, self.batch_size())
            if not claimed:
                self._idle(rung)

    def _idle(self, rung: int) -> None:
        """Nothing was due: wait for a ring, the next task to become due, or the poll."""
        try:
            due = self.service.next_due()
        except Exception as exc:  # the database unavailable: look again after the poll
            log.warning("cannot read the queue: %s", exc)
            due = None
        timeout = IDLE_POLL_SECONDS
        if due is not None:
            timeout = min(timeout, max(0.0, due - self.service.clock()))
        self.bell.wait(rung, timeout)

    def _run_next(self, me: Held) -> bool:
        task = me.claimed[0]
        action = self.service.action_of(task)
        simulated = self.work_delay if action is not None and action.simulated_work else 0.0
        # A batch's first task started when its claim was written (its started_at): its
        # simulated work runs from then, so the commit that claimed it is part of that work
        # rather than added to it. (Later tasks of a batch start when they are run.)
        elapsed = 0.0
        if me.fresh and simulated and task.started_at is not None:
            elapsed = min(max(self.service.clock() - task.started_at, 0.0), simulated)
        me.fresh = False
        me.limit = self.service.time_limit(task)
        me.since = self.monotonic() - elapsed  # the work counts towards the time limit
        # Running only now: until then the watchdog would judge it by the last task's times.
        me.running = me.claimed.popleft()
        delay = simulated - elapsed
        # Interruptible, so that stopping does not wait for simulated work.
        if self.stopping.is_set() or (delay > 0 and self.stopping.wait(delay)):
            me.running = None
            self.crew.give_back(task, None)
            self.crew.update_busy(me)
            return True
        ctx = me.context = self.service.start_attempt(task)
        started = time.perf_counter()
        try:
            outcome = self.service.run(task, ctx)
        finally:
            self.service.end_attempt(ctx)
        took = time.perf_counter() - started
        with self.crew.lock:
            me.running = None
            me.context = None
            if me.abandoned:
                return False
        if outcome.release:  # asked to stop because Taskdesk stops: back to the queue
            self.crew.give_back(task, None)
        else:
            me.finished.append(outcome)
        self.run_seconds += (took - self.run_seconds) / 8  # a moving average
        if took > SLOW_SECONDS and me.claimed:
            # Longer than the batch was sized for: let other workers have the rest.
            rest = list(me.claimed)
            me.claimed.clear()
            for held in rest:
                self.crew.give_back(held, None)
        self.crew.update_busy(me)
        return True

    def _settle(self, me: Held, claim: int) -> int:
        """Store the outcomes of *me*'s finished tasks and claim up to *claim* more, in one
        commit; return how many were claimed."""
        finished, me.finished = me.finished, []
        if not finished and not claim:
            return 0
        try:
            claimed = self.service.settle(finished, claim).claimed
        except Exception as exc:
            # Not the actions (their failures are outcomes) but storing them, e.g. the disk
            # is full: queue the tasks again rather than leave them running. Nothing was
            # claimed.
            if finished:
                log.warning("cannot store the outcome of %d task(s): %s", len(finished), exc)
            else:
                log.warning("cannot claim tasks: %s", exc)
            for outcome in finished:
                self.crew.give_back(outcome.task, exc)
            if not finished:
                self.stopping.wait(1.0)  # do not spin while the database is unavailable
            return 0
        me.claimed.extend(claimed)
        me.fresh = bool(claimed)
        if self.stopping.is_set():
            for task in me.claimed:
                self.crew.give_back(task, None)
            me.claimed.clear()
        self.crew.update_busy(me)
        return len(claimed)
