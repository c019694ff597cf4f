"""WorkerPool: ``workers`` long-lived BatchWorkers on a private QThreadPool.

Parts, one job each: ``BatchWorker`` (claim, run and store batches), ``Doorbell`` (wake idle
workers when work may be ready), ``Watchdog`` (timeouts, failed hand-backs, the clock set
back), ``Crew`` (what they share). The pool starts and stops them, replaces a worker that dies
or is abandoned in a stuck action, and reports its state (busy workers, problems).

The database stays the queue: workers claim due tasks from it in one statement each, so
nothing is held in memory that a crash could lose, and any number of workers (or, with a
shared database, processes) never run a task twice. The pool talks to the service only; the
service and the store need no Qt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QRunnable, QThreadPool

from service.task_service import TaskService
from service.workers.batch_worker import BatchWorker
from service.workers.crew import Crew
from service.workers.doorbell import Doorbell
from service.workers.watchdog import Watchdog

log = logging.getLogger("taskdesk.workers")

# How long a worker crash keeps /health "degraded".
RECENT_SECONDS = 60.0


class _Runner(QRunnable):
    def __init__(self, pool: WorkerPool) -> None:
        super().__init__()
        self._pool = pool

    def run(self) -> None:
        try:
            abandoned = self._pool.worker.work()
        except BaseException:
            # A bug outside any action (actions' failures are outcomes) ended this worker:
            # hand its tasks back and put a new worker in its place.
            log.exception("a worker died")
            self._pool._worker_died()
            return
        if abandoned:
            self._pool._abandoned_worker_left()


class WorkerPool:
    def __init__(
        self,
        service: TaskService,
        workers: int = 2,
        prefetch: int = 64,
        work_delay: float = 0.1,
        *,
        task_timeout: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1 or prefetch < 1 or work_delay < 0:
            raise ValueError("workers and prefetch must be ≥ 1 and work_delay ≥ 0")
        self.service = service
        self.workers = workers
        self.prefetch = prefetch
        if task_timeout is not None:  # else the service's (--task-timeout)
            service.task_timeout = task_timeout
        self.task_timeout = service.task_timeout
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self.crew = Crew(service)
        self.bell = Doorbell()
        # *prefetch* bounds how many tasks all workers hold at once between them.
        self.worker = BatchWorker(service, self.crew, self.bell, self._stopping,
                                  work_delay=work_delay, max_batch=max(1, prefetch // workers),
                                  monotonic=monotonic)
        self.watchdog = Watchdog(service, self.crew, self._stopping,
                                 task_timeout=self.task_timeout, kill_grace=service.kill_grace,
                                 replace_worker=self._replace_stuck_worker, monotonic=monotonic)
        self._worker_deaths: list[float] = []  # monotonic times
        self._started = False
        self._unsubscribe: Callable[[], None] = lambda: None
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(workers)
        self._pool.setExpiryTimeout(-1)  # long-lived runnables: threads never expire

    @property
    def work_delay(self) -> float:
        return self.worker.work_delay

    # -- status -----------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        return self.crew.busy

    @property
    def blocked(self) -> int:
        """Workers given up on (their task ended for them) still blocked in an action: no
        task of theirs is left to wait for, but their threads keep the process alive."""
        return self.crew.stuck

    @property
    def started(self) -> bool:
        """Started and not yet told to stop."""
        return self._started and not self._stopping.is_set()

    def problems(self) -> list[str]:
        """What is wrong right now, in words, for /health and the window (empty: all well)."""
        now = self._monotonic()
        crew = self.crew
        with crew.lock:
            recent = [t for t in self._worker_deaths if now - t < RECENT_SECONDS]
            self._worker_deaths = recent
            stranded, stuck = len(crew.stranded), crew.stuck
        found = []
        if recent:
            found.append(f"{len(recent)} worker(s) crashed and were replaced in the last "
                         f"{RECENT_SECONDS:.0f} s")
        if stranded:
            found.append(f"{stranded} task(s) could not be handed back to the queue yet")
        if stuck:
            found.append(f"{stuck} worker(s) stuck in an action that ran past the task "
                         f"timeout ({self.task_timeout:g} s); replaced")
        return found

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("worker pool already started")
        self._started = True
        self._unsubscribe = self.service.subscribe(self.bell.on_event)
        self.watchdog.start()
        for _ in range(self.workers):
            self._pool.start(_Runner(self))
        log.info("%d workers started (prefetch %d, work delay %.3fs)",
                 self.workers, self.prefetch, self.work_delay)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming, let running tasks finish for up to *timeout* seconds; tasks claimed
        and not started go back to the queue. Returns False if some task was still running
        when the time ran out (start-up recovery runs it again next time). Workers given up
        on are not waited for (``blocked`` counts them)."""
        self._unsubscribe()
        self._stopping.set()
        self.bell.close()
        # Running actions are asked to stop (commands' process groups get SIGTERM, then
        # SIGKILL after the grace); what they were running goes back to the queue.
        self.service.stop_running(stopping=True)
        self.watchdog.join()
        finished = self._wait_for_workers(timeout)
        if not finished:
            log.warning("%d task(s) still running after %.0fs; they will run again at next start",
                        self.busy, timeout)
        self.service.progress.stop()
        log.info("workers stopped")
        return finished

    def _wait_for_workers(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for every worker but those given up on; False when
        one still runs a task then."""
        deadline = time.monotonic() + timeout
        while not self._pool.waitForDone(100):
            with self.crew.lock:
                working = any(not me.abandoned for me in self.crew.held.values())
            if not working:
                return True
            if time.monotonic() >= deadline:
                return False
        return True

    # -- replacing workers ------------------------------------------------------------------

    def _replace_stuck_worker(self) -> None:
        """The watchdog abandoned a worker stuck in an action: one more thread for its
        replacement while it stays blocked."""
        with self.crew.lock:
            self._pool.setMaxThreadCount(self.workers + self.crew.stuck)
        self._pool.start(_Runner(self))

    def _abandoned_worker_left(self) -> None:
        with self.crew.lock:
            self.crew.stuck -= 1
            self._pool.setMaxThreadCount(self.workers + self.crew.stuck)

    def _worker_died(self) -> None:
        me = self.crew.leave()
        with self.crew.lock:
            self._worker_deaths.append(self._monotonic())
        if me is not None:
            running = [] if me.running is None else [me.running]
            tasks = [*running, *me.claimed, *(o.task for o in me.finished)]
            me.claimed.clear()
            me.finished.clear()
            me.running = None
            for task in tasks:
                self.crew.give_back(task, None)
            self.crew.update_busy(me)
        if not self._stopping.is_set():
            self._pool.start(_Runner(self))
            log.warning("started a replacement worker")
