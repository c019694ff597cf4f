"""Faults while running: a full disk, a worker that dies, a clock set back."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from pytestqt.qtbot import QtBot

from service.api import ApiConfig
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.conftest import Client

BIG = {"text": "x" * 20_000}  # needs new database pages, so a capped file refuses it


def cap_database(store: SqliteTaskStore, extra_pages: int = 0) -> None:
    """Let the database grow by at most *extra_pages* pages, as a nearly full disk would."""
    def cap(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")

    store._write(cap)


def uncap_database(store: SqliteTaskStore) -> None:
    store._write(lambda conn: conn.execute("PRAGMA max_page_count = 4294967294"))


def test_full_disk_gives_503_naming_the_cause_and_work_resumes_when_space_returns(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, api_factory: Callable[..., Client],
    pool_factory: Callable[..., WorkerPool],
) -> None:
    pool = pool_factory(workers=1)
    client = api_factory(ApiConfig(problems=pool.problems))
    accepted = client.post("/tasks", {"action": "uppercase", "data": {"text": "before"}})
    assert accepted.status == 202
    qtbot.waitUntil(lambda: store.counts()[TaskStatus.COMPLETED] == 1, timeout=10_000)

    cap_database(store)
    refused = client.post("/tasks", {"action": "uppercase", "data": BIG})
    assert refused.status == 503, refused.body
    assert "full" in refused.json()["error"] and str(store.path) in refused.json()["error"]
    assert refused.headers.get("retry-after")
    assert store.count(TaskQuery()) == 1  # nothing half-written
    assert store.problem is not None and "full" in store.problem

    uncap_database(store)
    again = client.post("/tasks", {"action": "uppercase", "data": BIG})
    assert again.status == 202
    qtbot.waitUntil(lambda: store.counts()[TaskStatus.COMPLETED] == 2, timeout=10_000)
    assert store.problem is None


def test_outcome_stored_once_the_disk_has_room_again(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    # A task runs while the disk fills up; its big result cannot be stored. It must not stay
    # `running`: it goes back to the queue (its attempt given back) and completes once there
    # is room. The task's own row is small, so claiming it needs no new page: it is the
    # outcome's write that the full disk refuses, not the claim (capping the database before
    # the claim would only keep the task queued, and test nothing of this).
    from tests.action_helpers import python_action

    gate = threading.Event()
    runs = {"n": 0}

    def big_result(data: dict[str, Any]) -> dict[str, str]:
        runs["n"] += 1
        gate.wait(10)
        return {"output": BIG["text"]}

    service.registry.register(python_action("big-result", big_result, lambda d: None,
                                            "20 kB result"))
    kinds: list[str] = []
    service.subscribe(lambda e: kinds.append(e.kind))
    task = service.submit("big-result")
    pool = pool_factory(workers=1)
    qtbot.waitUntil(lambda: service.get(task.id).status == "running", timeout=10_000)
    cap_database(store)
    gate.set()
    qtbot.waitUntil(lambda: "released" in kinds, timeout=10_000)  # its outcome was refused
    assert "completed" not in kinds
    assert service.get(task.id).status in ("queued", "running")
    assert service.get(task.id).attempts <= 1  # each refused outcome gave its attempt back

    uncap_database(store)
    pool.bell.ring()  # instead of waiting for the workers' next idle look
    qtbot.waitUntil(lambda: service.get(task.id).status == "completed", timeout=10_000)
    done = service.get(task.id)
    assert (done.result, done.attempts) == ({"output": BIG["text"]}, 1)
    assert runs["n"] >= 2  # run again after the refused outcome; its result stored once
    assert kinds.count("completed") == 1
    qtbot.waitUntil(lambda: pool.problems() == [], timeout=10_000)


class WorkerBug(BaseException):
    """Stands for a bug outside any action, which the worker loop does not expect."""


def test_dead_worker_is_replaced_and_its_task_recovered(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool],
    api_factory: Callable[..., Client], monkeypatch: Any,
) -> None:
    original = service.run
    calls = {"n": 0}

    def run_with_a_bug(task: Any, ctx: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise WorkerBug("boom outside the action")
        return original(task, ctx)

    monkeypatch.setattr(service, "run", run_with_a_bug)
    pool = pool_factory(workers=1)
    client = api_factory(ApiConfig(problems=pool.problems))
    ids = [service.submit("uppercase", {"text": f"t{i}"}).id for i in range(5)]
    qtbot.waitUntil(lambda: store.counts()[TaskStatus.COMPLETED] == 5, timeout=10_000)
    # The task in the dead worker's hands was given back and run once by the replacement.
    assert all(service.get(i).attempts == 1 for i in ids)
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert any("crashed" in p for p in health["problems"])


def test_action_calling_sys_exit_is_a_failed_attempt_not_a_dead_worker(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    from tests.action_helpers import python_action

    def leave(data: dict[str, Any]) -> None:
        raise SystemExit(3)

    service.registry.register(python_action("leave", leave, lambda d: None, "calls sys.exit"))
    bad = service.submit("leave")
    good = service.submit("uppercase", {"text": "still here"})
    pool = pool_factory(workers=1)
    qtbot.waitUntil(lambda: store.count(TaskQuery(status=TaskStatus.COMPLETED))
                    + store.count(TaskQuery(status=TaskStatus.FAILED)) == 2, timeout=10_000)
    assert service.get(bad.id).status == "failed"
    assert service.get(bad.id).error == "SystemExit: 3"
    assert service.get(good.id).result == {"output": "STILL HERE"}
    assert pool.problems() == []


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 1_000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def test_clock_set_back_does_not_freeze_pending_retries(
    qtbot: QtBot, store: SqliteTaskStore, qapp: Any,
) -> None:
    from tests.action_helpers import python_action

    clocks = Clocks()
    service = TaskService(store, max_attempts=3, backoff_base=5.0, clock=lambda: clocks.wall)
    failures = {"n": 0}

    def flaky(data: dict[str, Any]) -> dict[str, str]:
        failures["n"] += 1
        if failures["n"] == 1:
            raise RuntimeError("first try fails")
        return {"output": "ok"}

    service.registry.register(python_action("flaky", flaky, lambda d: None, "fails once"))
    pool = WorkerPool(service, workers=1, work_delay=0, monotonic=lambda: clocks.mono)
    pool.start()
    try:
        task = service.submit("flaky")
        qtbot.waitUntil(lambda: service.get(task.id).attempts == 1
                        and service.get(task.id).status == "queued", timeout=10_000)
        assert service.get(task.id).run_after == clocks.wall + 5.0

        clocks.wall -= 3600  # someone sets the clock back an hour
        clocks.advance(1.0)
        pool.bell.ring()
        qtbot.waitUntil(lambda: service.get(task.id).run_after < clocks.wall + 5.0,
                        timeout=10_000)
        clocks.advance(5.0)  # the backoff, as measured by the monotonic clock, is over
        pool.bell.ring()
        qtbot.waitUntil(lambda: service.get(task.id).status == "completed", timeout=10_000)
        assert service.get(task.id).attempts == 2
    finally:
        pool.stop()
