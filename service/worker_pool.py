"""WorkerPool: a QThreadPool of long-lived runnables fed from SQLite through a small queue.

Threads:
- one *feeder* thread asks the store for the oldest due queued tasks and puts at most
  ``prefetch`` ids into an in-memory queue; it sleeps until woken by a submission, a retry, a
  finished task, or the next retry time. The database stays the queue: the in-memory queue
  only ever holds a handful of ids, whatever the backlog, and losing it loses nothing.
- ``workers`` runnables on a private QThreadPool take ids from that queue, claim the task
  atomically (a cancelled task is skipped), simulate ``work_delay`` seconds of work, run the
  action and store the outcome through TaskService.

No Qt signal is involved: progress reaches the window through TaskService subscribers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QRunnable, QThreadPool

from service.task_service import Outcome, TaskEvent, TaskService
from storage import DatabaseError, Task

log = logging.getLogger("taskdesk.workers")

# Longest the feeder sleeps without being woken: a safety net, should a wake-up ever be
# missed, that costs one indexed query every two seconds when idle.
IDLE_POLL_SECONDS = 2.0
# A worker claims as many tasks at once as it can run in this long (at least one).
BATCH_SECONDS = 0.005
# How long a worker with outcomes to store waits for the next id to claim in the same commit.
LINGER_SECONDS = 0.001
# A task that runs longer than this ends its batch: the rest go back to the queue.
SLOW_SECONDS = 4 * BATCH_SECONDS
# How long a worker crash keeps /health "degraded".
RECENT_SECONDS = 60.0


class _Held:
    """The tasks a worker holds: claimed and not yet run, running, run and not yet stored.
    Kept where a crash of the worker can find them, to give them back."""

    __slots__ = ("abandoned", "busy", "claimed", "finished", "fresh", "running", "since")

    def __init__(self) -> None:
        self.claimed: deque[Task] = deque()
        self.running: Task | None = None
        self.since = 0.0  # when the running task started (monotonic)
        self.fresh = False  # the next task is the first of a batch just claimed
        self.finished: list[Outcome] = []
        self.busy = False  # counted in WorkerPool.busy
        # Its action ran past the task timeout: the task was ended and another worker put
        # in its place; this one leaves when (if ever) the action returns.
        self.abandoned = False


class _Runner(QRunnable):
    def __init__(self, pool: WorkerPool) -> None:
        super().__init__()
        self._pool = pool

    def run(self) -> None:
        try:
            self._pool._work_loop()
        except BaseException:
            # A bug outside any action (those are caught in execute) ended this worker:
            # hand its task back and put a new worker in its place.
            log.exception("a worker died")
            self._pool._worker_died()


class WorkerPool:
    def __init__(
        self,
        service: TaskService,
        workers: int = 2,
        prefetch: int = 5,
        work_delay: float = 0.1,
        *,
        task_timeout: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1 or prefetch < 1 or work_delay < 0:
            raise ValueError("workers and prefetch must be ≥ 1 and work_delay ≥ 0")
        self.service = service
        self.workers = workers
        self.prefetch = prefetch
        self.work_delay = work_delay
        self.task_timeout = task_timeout
        self._stuck = 0  # abandoned workers whose action has not returned yet
        # queue.Queue, not SimpleQueue: CPython 3.11's SimpleQueue.get(timeout=...) can wait
        # forever when its deadline passes between two of its internal waits (seen here with
        # the 1 ms linger: a worker stuck holding a finished task's outcome).
        self._ids: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._inflight: set[str] = set()  # fed and not finished (in the queue or running)
        self._backlog_clear = False  # the feeder's last look found nothing more to feed
        self._waiting = 0  # ids in the queue not yet taken by a worker
        self._busy = 0
        self._held: dict[int, _Held] = {}  # worker thread → the tasks it holds
        self._max_batch = max(1, prefetch // workers)
        # How long running an action takes, on average; until measured, assume a batch's worth.
        self._run_seconds = BATCH_SECONDS
        # Claimed tasks whose hand-back to the queue failed (database unavailable); the feeder
        # retries, so they run again once the database is back instead of staying `running`.
        self._stranded: dict[str, tuple[Task, Exception | None]] = {}
        self._worker_deaths: list[float] = []  # monotonic times
        self._monotonic = monotonic
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._feeder: threading.Thread | None = None
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(workers)
        self._unsubscribe = service.subscribe(self._on_event)

    # -- status ---------------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def started(self) -> bool:
        """Started and not yet told to stop."""
        return self._feeder is not None and not self._stopping.is_set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._feeder is not None:
            raise RuntimeError("worker pool already started")
        self._feeder = threading.Thread(target=self._feed_loop, name="taskdesk-feeder", daemon=True)
        self._feeder.start()
        for _ in range(self.workers):
            self._pool.start(_Runner(self))
        log.info("%d workers started (prefetch %d, work delay %.3fs)",
                 self.workers, self.prefetch, self.work_delay)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop feeding, let running tasks finish for up to *timeout* seconds.

        Ids still waiting in the in-memory queue are dropped: their tasks are queued in the
        database and the next start runs them. Returns False if some task was still running
        when the time ran out (it will be recovered at the next start).
        """
        self._unsubscribe()
        self._stopping.set()
        self._wake.set()
        if self._feeder is not None:
            self._feeder.join()
        dropped = 0
        while True:
            try:
                item = self._ids.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                dropped += 1
        for _ in range(self.workers):
            self._ids.put(None)
        finished = bool(self._pool.waitForDone(int(timeout * 1000)))
        if not finished:
            log.warning("%d task(s) still running after %.0fs; they will run again at next start",
                        self._busy, timeout)
        log.info("workers stopped")
        return finished

    # -- feeder ---------------------------------------------------------------------------------

    def _on_event(self, event: TaskEvent) -> None:
        if event.kind == "submitted" and self._feed_directly(event.task):
            return
        if event.kind in ("submitted", "submitted_many", "retried", "requeued", "released"):
            with self._lock:
                self._backlog_clear = False
            self._wake.set()

    def _feed_directly(self, task: Task) -> bool:
        """Hand a new task straight to the workers if nothing older is waiting for them.

        True when the feeder's last look found no due task it could not feed: then the new
        task is the next in line, and a query per submission (on the submitting thread's
        critical path for the GIL) is saved.
        """
        with self._lock:
            if task.id in self._inflight:
                return True  # the feeder found it first
            if not self._backlog_clear or self._waiting >= self.prefetch or task.run_after:
                return False
            self._inflight.add(task.id)
            self._waiting += 1
            self._ids.put(task.id)
            return True

    def _feed_loop(self) -> None:
        clock = _ClockWatch(self.service.clock, self._monotonic)
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                backwards = clock.jumped_back()
                if backwards:
                    self.service.shift_retries(-backwards)
                self._hand_back_stranded()
                self._end_stuck_tasks()
                timeout = self._feed_once()
            except DatabaseError as exc:
                # Locked, full, unwritable or damaged: already on /health; no traceback.
                log.warning("feeder: %s; trying again", exc)
                timeout = IDLE_POLL_SECONDS
            except Exception:
                log.exception("feeder could not read the queue; trying again")
                timeout = IDLE_POLL_SECONDS
            self._wake.wait(timeout)

    def _feed_once(self) -> float:
        """Top the in-memory queue up to ``prefetch``; return how long to sleep at most."""
        with self._lock:
            free = self.prefetch - self._waiting
            skip = set(self._inflight)
            if free <= 0:
                self._backlog_clear = False
                return IDLE_POLL_SECONDS  # a worker taking an id wakes us
        now = self.service.clock()
        limit = free + len(skip)
        due = self.service.store.due_ids(now, limit)
        fresh = [task_id for task_id in due if task_id not in skip]
        with self._lock:
            # Submissions may have been fed directly meanwhile: never exceed prefetch.
            room = self.prefetch - self._waiting
            for task_id in fresh[:room]:
                if task_id not in self._inflight:
                    self._inflight.add(task_id)
                    self._waiting += 1
                    self._ids.put(task_id)
            # Everything due was seen and fed: new submissions can skip the feeder.
            self._backlog_clear = len(due) < limit and len(fresh) <= room
        if len(fresh) >= free:
            return IDLE_POLL_SECONDS
        next_due = self.service.store.next_run_after(now)
        if next_due is not None:
            return min(IDLE_POLL_SECONDS, next_due - now)
        return IDLE_POLL_SECONDS

    # -- workers --------------------------------------------------------------------------------

    def _batch_size(self) -> int:
        """How many tasks a worker claims at once: as many as it can run in BATCH_SECONDS.

        Claiming a batch and storing its outcomes together with claiming the next costs one
        commit per batch instead of two per task. With the tutorial's 100 ms of work that is
        one task (so `running` means running); with instant tasks it is many.
        """
        per_task = self.work_delay + self._run_seconds
        if per_task <= 0:
            return self._max_batch
        return max(1, min(self._max_batch, int(BATCH_SECONDS / per_task)))

    def _take(self, block: bool) -> list[str] | None:
        """Ids for the next batch: waits for one if *block*, then takes what is waiting, up to
        the batch size. None when the pool is stopping."""
        try:
            # Outcomes waiting to be stored (not block): linger a moment for the next id, so
            # that storing them and claiming it share one commit.
            first = self._ids.get(True, None if block else LINGER_SECONDS)
        except queue.Empty:
            return []
        if first is None:
            return None
        ids = [first]
        size = self._batch_size()
        while len(ids) < size:
            try:
                more = self._ids.get(False)
            except queue.Empty:
                break
            if more is None:  # another worker's signal to stop: leave it for that worker
                self._ids.put(None)
                break
            ids.append(more)
        with self._lock:
            self._waiting -= len(ids)
            refill = not self._backlog_clear
        if refill:
            self._wake.set()  # room in the queue for tasks the feeder has not fed yet
        return ids

    def _work_loop(self) -> None:
        me = _Held()
        with self._lock:
            self._held[threading.get_ident()] = me
        while not me.abandoned:
            if not me.claimed:
                ids = self._take(block=not me.finished)
                if ids is None:
                    self._settle(me, [])
                    break
                self._settle(me, ids)
                continue
            task = me.running = me.claimed.popleft()
            # A batch's first task started when its claim was written (its started_at): its
            # simulated work runs from then, so the commit that claimed it is part of that
            # work rather than added to it. (Later tasks of a batch start when they are run.)
            elapsed = 0.0
            if me.fresh and self.work_delay and task.started_at is not None:
                elapsed = min(max(self.service.clock() - task.started_at, 0.0), self.work_delay)
            me.fresh = False
            me.since = self._monotonic() - elapsed  # the work counts towards the timeout
            delay = self.work_delay - elapsed
            # Interruptible, so that stopping does not wait for simulated work.
            if self._stopping.is_set() or (delay > 0 and self._stopping.wait(delay)):
                me.running = None
                self._give_back(task, None)
                self._done([task.id], me)
                continue
            started = time.perf_counter()
            outcome = self.service.run(task)
            elapsed = time.perf_counter() - started
            with self._lock:
                me.running = None
                if me.abandoned:
                    self._stuck -= 1
                    self._pool.setMaxThreadCount(self.workers + self._stuck)
                    break  # its task was ended for it; a new worker took its place
            me.finished.append(outcome)
            self._run_seconds += (elapsed - self._run_seconds) / 8  # a moving average
            if elapsed > SLOW_SECONDS and me.claimed:
                # Longer than the batch was sized for: let other workers have the rest.
                rest = list(me.claimed)
                me.claimed.clear()
                for held in rest:
                    self._give_back(held, None)
                self._done([t.id for t in rest], me)
        with self._lock:
            self._held.pop(threading.get_ident(), None)

    def _settle(self, me: _Held, ids: list[str]) -> None:
        """Store the outcomes of *me*'s finished tasks and claim *ids*, in one write."""
        finished, me.finished = me.finished, []
        if not finished and not ids:
            return
        me.fresh = bool(ids)
        claimed: list[Task] = []
        try:
            claimed = self.service.settle(finished, ids)[1]
        except Exception as exc:
            # Not the actions (their failures are outcomes) but storing them, e.g. the disk is
            # full: queue the tasks again rather than leave them running. Tasks among *ids*
            # were not claimed and stay queued.
            if finished:
                log.warning("cannot store the outcome of %d task(s): %s", len(finished), exc)
            else:
                log.warning("cannot claim %d task(s), they stay queued: %s", len(ids), exc)
            for outcome in finished:
                self._give_back(outcome.task, exc)
        me.claimed.extend(claimed)
        if self._stopping.is_set():
            for task in me.claimed:
                self._give_back(task, None)
            me.claimed.clear()
        running = {task.id for task in me.claimed}
        self._done([o.task.id for o in finished] + [i for i in ids if i not in running], me)

    def _done(self, task_ids: list[str], me: _Held) -> None:
        """Forget tasks that are no longer in flight, and count *me* busy while it holds any."""
        with self._lock:
            self._inflight.difference_update(task_ids)
            busy = bool(me.claimed)
            if busy != me.busy:
                self._busy += 1 if busy else -1
                me.busy = busy
            # A task requeued at once was skipped while in flight: look again.
            refill = not self._backlog_clear
        if refill and task_ids:
            self._wake.set()

    def _end_stuck_tasks(self) -> None:
        """End tasks whose action has run past the task timeout, and replace their workers.

        A Python thread cannot be stopped from outside: the worker stays blocked in the action
        but no longer counts; if the action ever returns, its outcome is dropped.
        """
        now = self._monotonic()
        with self._lock:
            stuck = [
                (me, me.running) for me in self._held.values()
                if me.running is not None and not me.abandoned
                and now - me.since > self.task_timeout
            ]
            for me, _ in stuck:
                me.abandoned = True
                self._stuck += 1
        for me, task in stuck:
            assert task is not None
            log.warning("task id=%s action=%s has run for more than %.0f s; ending its attempt "
                        "and starting another worker", task.id, task.action, self.task_timeout)
            outcome = self.service.timed_out(task, self.task_timeout)
            try:
                self.service.settle([outcome], [])
            except Exception as exc:
                self._give_back(task, exc)
            with self._lock:
                rest = list(me.claimed)  # the rest of its batch, claimed but not run
                me.claimed.clear()
                self._pool.setMaxThreadCount(self.workers + self._stuck)
            for held in rest:
                self._give_back(held, None)
            self._done([task.id, *(t.id for t in rest)], me)
            if not self._stopping.is_set():
                self._pool.start(_Runner(self))

    def _give_back(self, task: Task, error: Exception | None) -> None:
        try:
            self.service.release(task, error)
        except Exception as exc:
            log.warning("cannot hand task id=%s back to the queue yet (%s); will retry",
                        task.id, exc)
            with self._lock:
                self._stranded[task.id] = (task, error)

    def _hand_back_stranded(self) -> None:
        with self._lock:
            stranded = list(self._stranded.values())
        for task, error in stranded:
            self.service.release(task, error)  # raises while the database is still unavailable
            with self._lock:
                del self._stranded[task.id]

    def _worker_died(self) -> None:
        with self._lock:
            me = self._held.pop(threading.get_ident(), None)
            self._worker_deaths.append(self._monotonic())
        if me is not None:
            running = [] if me.running is None else [me.running]
            tasks = [*running, *me.claimed, *(o.task for o in me.finished)]
            me.claimed.clear()
            me.finished.clear()
            me.running = None
            for task in tasks:
                self._give_back(task, None)
            self._done([t.id for t in tasks], me)
        if not self._stopping.is_set():
            self._pool.start(_Runner(self))
            log.warning("started a replacement worker")

    def problems(self) -> list[str]:
        """What is wrong right now, in words, for /health and the window (empty: all well)."""
        now = self._monotonic()
        with self._lock:
            recent = [t for t in self._worker_deaths if now - t < RECENT_SECONDS]
            self._worker_deaths = recent
            stranded = len(self._stranded)
        found = []
        if recent:
            found.append(f"{len(recent)} worker(s) crashed and were replaced in the last "
                         f"{RECENT_SECONDS:.0f} s")
        if stranded:
            found.append(f"{stranded} task(s) could not be handed back to the queue yet")
        if self._stuck:
            found.append(f"{self._stuck} worker(s) stuck in an action that ran past the task "
                         f"timeout ({self.task_timeout:g} s); replaced")
        return found


class _ClockWatch:
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
