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

from PySide6.QtCore import QRunnable, QThreadPool

from service.task_service import TaskEvent, TaskService
from storage import Task

log = logging.getLogger("taskdesk.workers")

# Longest the feeder sleeps without being woken: a safety net, should a wake-up ever be
# missed, that costs one indexed query every two seconds when idle.
IDLE_POLL_SECONDS = 2.0


class _Runner(QRunnable):
    def __init__(self, pool: WorkerPool) -> None:
        super().__init__()
        self._pool = pool

    def run(self) -> None:
        self._pool._work_loop()


class WorkerPool:
    def __init__(
        self, service: TaskService, workers: int = 2, prefetch: int = 5, work_delay: float = 0.1
    ) -> None:
        if workers < 1 or prefetch < 1 or work_delay < 0:
            raise ValueError("workers and prefetch must be ≥ 1 and work_delay ≥ 0")
        self.service = service
        self.workers = workers
        self.prefetch = prefetch
        self.work_delay = work_delay
        self._ids: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._inflight: set[str] = set()  # fed and not finished (in the queue or running)
        self._backlog_clear = False  # the feeder's last look found nothing more to feed
        self._waiting = 0  # ids in the queue not yet taken by a worker
        self._busy = 0
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
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                timeout = self._feed_once()
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
        next_due = self.service.store.next_run_after()
        if next_due is not None and next_due > now:
            return min(IDLE_POLL_SECONDS, next_due - now)
        return IDLE_POLL_SECONDS

    # -- workers --------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            task_id = self._ids.get()
            if task_id is None:
                return
            with self._lock:
                self._waiting -= 1
                self._busy += 1
                refill = not self._backlog_clear
            if refill:
                self._wake.set()  # room in the queue for tasks the feeder has not fed yet
            try:
                self._run_one(task_id)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._inflight.discard(task_id)
                    # A task requeued at once was skipped while in flight: look again.
                    refill = not self._backlog_clear
                if refill:
                    self._wake.set()

    def _run_one(self, task_id: str) -> None:
        if self._stopping.is_set():
            return
        try:
            task = self.service.claim(task_id)
        except Exception:
            log.exception("cannot claim task id=%s; it stays queued", task_id)
            return
        if task is None:
            return  # cancelled or claimed elsewhere since it was fed
        # Interruptible, so that stopping does not wait for simulated work.
        if self.work_delay and self._stopping.wait(self.work_delay):
            self._give_back(task, None)
            return
        try:
            self.service.execute(task)
        except Exception as exc:
            # Not the action (its failures are handled in execute) but storing its outcome,
            # e.g. the disk is full: queue the task again rather than leave it running.
            log.exception("cannot store the outcome of task id=%s", task.id)
            self._give_back(task, exc)

    def _give_back(self, task: Task, error: Exception | None) -> None:
        try:
            self.service.release(task, error)
        except Exception:
            log.exception("task id=%s stays running until the next start re-queues it", task.id)
