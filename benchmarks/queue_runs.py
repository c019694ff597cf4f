"""One in-process queue run, in a fresh process: ``python -m benchmarks.queue_runs IMPL N DELAY``.

IMPL is ``taskdesk``, ``taskdesk-normal``, ``taskdesk-batch`` (FULL, submitted with
``TaskService.submit_many``, BATCH tasks per call), ``huey`` (SqliteHuey at its defaults) or
``huey-normal`` (SqliteHuey with ``synchronous=NORMAL``). N tasks are submitted from one thread
to a queue with 2 thread workers; each task sleeps DELAY seconds and returns a small dict that
is stored as its result. Prints one JSON line: {"impl", "n", "seconds", "per_second",
"submit_seconds"}, timed from the first submission until the N-th result is stored;
``submit_seconds`` is how long the submitting loop took (the workers ran meanwhile).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from storage import TaskStatus

BATCH = 100  # tasks per submit_many call (taskdesk-batch)


def run_taskdesk(n: int, delay: float, synchronous: str, folder: Path, batch: int = 0
                 ) -> tuple[float, float]:
    from PySide6.QtCore import QCoreApplication

    from service.events import TaskEvent
    from service.task_service import TaskService
    from service.workers import WorkerPool
    from storage.sqlite import SqliteTaskStore, migrate, open_connection

    _app = QCoreApplication(sys.argv[:1])
    path = folder / "taskdesk.db"
    conn = open_connection(path)
    migrate(conn, path)
    conn.close()
    store = SqliteTaskStore(path, synchronous)  # type: ignore[arg-type]
    service = TaskService(store)
    done = threading.Event()
    finished = [0]
    lock = threading.Lock()

    def on_event(event: TaskEvent) -> None:
        if event.kind == "completed":
            with lock:
                finished[0] += 1
                if finished[0] == n:
                    done.set()

    service.subscribe(on_event)
    pool = WorkerPool(service, workers=2, prefetch=64, work_delay=delay)
    pool.start()
    start = time.perf_counter()
    if batch:
        # Copies of one task per call (what submit_many stores); the last call may be smaller.
        for first in range(0, n, batch):
            service.submit_many("noop", {"i": first}, min(batch, n - first))
    else:
        for i in range(n):
            service.submit("noop", {"i": i})
    submitted = time.perf_counter() - start
    done.wait()
    elapsed = time.perf_counter() - start
    pool.stop()
    assert store.counts()[TaskStatus.COMPLETED] == n
    store.close()
    return elapsed, submitted


def run_huey(n: int, delay: float, synchronous: str | None, folder: Path
             ) -> tuple[float, float]:
    from huey import SqliteHuey, signals
    from huey.storage import SqliteStorage

    class NormalSyncStorage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn: sqlite3.Connection = super()._create_connection()
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn

    kwargs: dict[str, Any] = {"filename": str(folder / "huey.db")}
    if synchronous == "normal":
        kwargs["storage_class"] = NormalSyncStorage
    huey = SqliteHuey("bench", **kwargs)

    @huey.task()
    def noop(i: int) -> dict[str, Any]:
        if delay:
            time.sleep(delay)
        return {"output": "processed", "i": i}

    done = threading.Event()
    finished = [0]
    lock = threading.Lock()

    @huey.signal(signals.SIGNAL_COMPLETE)
    def on_complete(signal: str, task: Any) -> None:
        with lock:
            finished[0] += 1
            if finished[0] == n:
                done.set()

    consumer = huey.create_consumer(workers=2, worker_type="thread", periodic=False)
    consumer.start()
    start = time.perf_counter()
    for i in range(n):
        noop(i)
    submitted = time.perf_counter() - start
    done.wait()
    elapsed = time.perf_counter() - start
    consumer.stop(graceful=True)
    # The results are in huey's table: check that they were all stored.
    stored = sqlite3.connect(folder / "huey.db").execute("SELECT count(*) FROM kv").fetchone()[0]
    assert stored == n, stored
    return elapsed, submitted


def main() -> None:
    impl, n, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if impl.startswith("taskdesk"):
            sync = "normal" if impl.endswith("-normal") else "full"
            batch = BATCH if impl == "taskdesk-batch" else 0
            seconds, submit = run_taskdesk(n, delay, sync, folder, batch)
        else:
            seconds, submit = run_huey(n, delay, "normal" if impl.endswith("-normal") else None,
                                       folder)
    print(json.dumps({"impl": impl, "n": n, "seconds": seconds, "per_second": n / seconds,
                      "submit_seconds": submit}))


if __name__ == "__main__":
    main()
