"""WorkerPool: drains the queue oldest first, holds few ids in memory, survives errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from service.actions import Action, RunContext
from service.task_service import TaskService
from service.workers import WorkerPool, batch_worker
from service.workers.batch_worker import LINGER_SECONDS
from storage import StorageUnavailableError, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.action_helpers import python_action


def all_done(store: SqliteTaskStore, n: int) -> Callable[[], bool]:
    return lambda: store.counts()[TaskStatus.COMPLETED] + store.counts()[TaskStatus.FAILED] == n


def test_pool_completes_tutorial_tasks(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    pool_factory(workers=2)
    a = service.submit("uppercase", {"text": "hello world"})
    b = service.submit("sum", {"numbers": [1, 2, 3.5]})
    c = service.submit("whatever")
    qtbot.waitUntil(all_done(store, 3), timeout=10_000)
    assert service.get(a.id).result == {"output": "HELLO WORLD"}
    assert service.get(b.id).result == {"output": 6.5}
    assert service.get(c.id).result == {"output": "processed"}


def test_one_worker_runs_oldest_first(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    ids = service.submit_many("x", {}, 30)
    pool_factory(workers=1, prefetch=3)
    qtbot.waitUntil(all_done(store, 30), timeout=10_000)
    started = [service.get(i).started_at for i in ids]
    assert started == sorted(started)  # type: ignore[type-var]


def test_prefetch_bounds_the_tasks_workers_hold_whatever_the_backlog(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, qapp: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    service.submit_many("x", {}, 2000)
    original = service.settle
    lock = threading.Lock()
    held = {"now": 0, "max": 0}

    def counting(outcomes: Any, claim: int) -> Any:
        settled = original(outcomes, claim)
        with lock:
            held["now"] += len(settled.claimed) - len(outcomes)
            held["max"] = max(held["max"], held["now"])
        return settled

    monkeypatch.setattr(service, "settle", counting)
    pool = WorkerPool(service, workers=2, prefetch=5, work_delay=0)
    pool.start()
    try:
        qtbot.waitUntil(all_done(store, 2000), timeout=60_000)
    finally:
        pool.stop()
    # Claimed and not yet stored, across both workers: at most prefetch, whatever the backlog.
    assert 2 <= held["max"] <= 5
    assert all(t.attempts == 1 for t in store.page(TaskQuery(), 2000))


def test_cancelled_while_prefetched_is_skipped(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    gate = threading.Event()
    service.registry.register(python_action("gate", lambda d: gate.wait(30) and {"ok": 1},
                                     lambda d: None, "waits for the test"))
    first = service.submit("gate")
    rest = [service.submit("x") for _ in range(3)]
    pool_factory(workers=1, prefetch=5)
    qtbot.waitUntil(lambda: service.get(first.id).status == "running", timeout=10_000)
    service.cancel(rest[1].id)
    gate.set()
    qtbot.waitUntil(all_done(store, 3), timeout=10_000)
    skipped = service.get(rest[1].id)
    assert (skipped.status, skipped.attempts, skipped.started_at) == ("cancelled", 0, None)


def test_retries_wait_for_their_backoff_then_complete(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    failures = {"n": 0}
    failed_at: list[float] = []

    def flaky(data: dict[str, Any]) -> dict[str, str]:
        if failures["n"] < 2:
            failures["n"] += 1
            failed_at.append(service.clock())
            raise ValueError("not yet")
        return {"output": "ok"}

    service.registry.register(python_action("flaky", flaky, lambda d: None, "fails twice"))
    service.backoff_base = 0.05
    task = service.submit("flaky")
    pool_factory(workers=2)
    qtbot.waitUntil(lambda: service.get(task.id).status == "completed", timeout=10_000)
    done = service.get(task.id)
    assert (done.attempts, done.result) == (3, {"output": "ok"})
    # The last attempt started no earlier than the second failure plus its (doubled) backoff.
    assert done.started_at is not None and done.started_at >= failed_at[1] + 0.1


def test_failing_action_ends_failed_and_worker_goes_on(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    def boom(data: dict[str, Any]) -> None:
        raise RuntimeError("always")

    service.registry.register(python_action("boom", boom, lambda d: None, "always fails"))
    service.backoff_base = 0
    bad = service.submit("boom")
    good = service.submit("uppercase", {"text": "after"})
    pool_factory(workers=1)
    qtbot.waitUntil(all_done(store, 2), timeout=10_000)
    failed = service.get(bad.id)
    assert (failed.status, failed.attempts, failed.error) == ("failed", 3, "RuntimeError: always")
    assert service.get(good.id).result == {"output": "AFTER"}


def test_error_outside_the_action_does_not_kill_the_worker(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool],
    monkeypatch: Any
) -> None:
    # The claim goes through service.settle (the worker's only way to the store): break the
    # first one with an error that is neither an action's failure nor a storage error.
    original = service.settle
    calls = {"n": 0}

    def claim_once_broken(outcomes: Any, claim: int) -> Any:
        if claim:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError("disk hiccup")
        return original(outcomes, claim)

    monkeypatch.setattr(service, "settle", claim_once_broken)
    first = service.submit("x")
    second = service.submit("x")
    pool = pool_factory(workers=1)
    qtbot.waitUntil(lambda: service.get(second.id).status == "completed", timeout=10_000)
    # The failed claim changed nothing, so the first task was claimed again and ran once.
    qtbot.waitUntil(lambda: service.get(first.id).status == "completed", timeout=10_000)
    assert calls["n"] >= 2  # the broken claim happened, and the worker claimed again
    assert service.get(first.id).attempts == 1
    # The same worker went on: none died and was replaced (which would also finish the tasks).
    assert pool.problems() == []


def test_outcome_that_cannot_be_stored_is_released_and_run_again(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool],
    monkeypatch: Any
) -> None:
    original = store.settle
    calls = {"n": 0}

    def settle_once_broken(finishes: Any, claim: int, now: float) -> Any:
        if finishes:
            calls["n"] += 1
            if calls["n"] == 1:
                raise StorageUnavailableError("cannot write to database: database or disk is full")
        return original(finishes, claim, now)

    monkeypatch.setattr(store, "settle", settle_once_broken)
    kinds: list[str] = []
    service.subscribe(lambda e: kinds.append(e.kind))
    task = service.submit("uppercase", {"text": "again"})
    pool_factory(workers=1)
    qtbot.waitUntil(lambda: service.get(task.id).status == "completed", timeout=10_000)
    done = service.get(task.id)
    # Not stuck `running`: released (attempt given back), then run and stored once.
    assert (done.attempts, done.result) == (1, {"output": "AGAIN"})
    assert kinds == ["submitted", "started", "released", "started", "completed"]


def test_stop_lets_running_finish_and_leaves_the_rest_queued(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, qapp: Any
) -> None:
    service.submit_many("x", {}, 40)
    pool = WorkerPool(service, workers=2, prefetch=5, work_delay=0.02)
    pool.start()
    qtbot.waitUntil(lambda: store.counts()[TaskStatus.COMPLETED] >= 2, timeout=10_000)
    assert pool.stop(timeout=10) is True
    counts = store.counts()
    assert counts[TaskStatus.RUNNING] == 0
    completed, queued = counts[TaskStatus.COMPLETED], counts[TaskStatus.QUEUED]
    assert completed + queued == 40 and queued > 0


def test_a_stop_just_before_a_claimed_task_starts_still_asks_it_to_stop(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, qapp: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    saw_cancel: list[bool] = []

    def patient(data: dict[str, Any], ctx: RunContext) -> Any:
        saw_cancel.append(ctx.cancelled.wait(5))
        if saw_cancel[-1]:
            raise RuntimeError("stopped as asked")
        return {"ran": "to its end"}

    service.registry.register(Action("patient", "stops when asked", {"type": "object"},
                                     "python", patient, "test"))
    task = service.submit("patient")
    pool = WorkerPool(service, workers=1, prefetch=1, work_delay=0)
    original = service.start_attempt

    def stop_comes_first(claimed: Any) -> Any:
        # pool.stop() between the worker's look at the stop flag and the attempt's start.
        if not pool._stopping.is_set():
            pool._stopping.set()
            service.stop_running(stopping=True)
        return original(claimed)

    monkeypatch.setattr(service, "start_attempt", stop_comes_first)
    pool.start()
    try:
        qtbot.waitUntil(lambda: bool(saw_cancel), timeout=10_000)
    finally:
        assert pool.stop(timeout=10)
    assert saw_cancel == [True]
    back = service.get(task.id)
    assert (back.status, back.attempts) == (TaskStatus.QUEUED, 0)  # handed back to the queue


def test_action_that_never_returns_is_timed_out_and_its_worker_replaced(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    gate = threading.Event()
    service.registry.register(python_action("hang", lambda d: gate.wait(60) and {"late": True},
                                     lambda d: None, "blocks until the test lets it go"))
    service.max_attempts = 1
    hung = service.submit("hang")
    pool = pool_factory(workers=1, task_timeout=0.3, work_delay=0.01)
    qtbot.waitUntil(lambda: service.get(hung.id).status == "failed", timeout=10_000)
    failed = service.get(hung.id)
    assert failed.error == "TimeoutError: the action did not finish within 0.3 s"
    assert any("stuck" in p for p in pool.problems())
    # The replacement worker runs what comes next while the first is still blocked.
    later = [service.submit("uppercase", {"text": f"t{i}"}).id for i in range(3)]
    qtbot.waitUntil(lambda: all(service.get(i).status == "completed" for i in later),
                    timeout=10_000)
    assert all((service.get(i).attempts, service.get(i).error) == (1, None) for i in later)
    # When the action finally returns, its result is dropped: the attempt was already ended.
    gate.set()
    qtbot.waitUntil(lambda: not any("stuck" in p for p in pool.problems()), timeout=10_000)
    after = service.get(hung.id)
    assert (after.status, after.result, after.attempts) == ("failed", None, 1)


def test_a_stop_does_not_wait_for_a_worker_already_given_up_on(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, qapp: Any
) -> None:
    # Its task was ended when the worker was given up on: nothing is left to wait for, and
    # waiting (the whole shutdown timeout, at least the kill grace) only delays the exit.
    gate = threading.Event()
    service.registry.register(python_action("hang", lambda d: gate.wait(60) and {"late": True},
                                     lambda d: None, "blocks until the test lets it go"))
    service.max_attempts = 1
    hung = service.submit("hang")
    pool = WorkerPool(service, workers=1, prefetch=2, work_delay=0, task_timeout=0.3)
    pool.start()
    try:
        qtbot.waitUntil(lambda: service.get(hung.id).status == "failed", timeout=10_000)
        done = service.submit("uppercase", {"text": "after"})
        qtbot.waitUntil(lambda: service.get(done.id).status == "completed", timeout=10_000)
        started = time.monotonic()
        assert pool.stop(timeout=10) is True
        assert time.monotonic() - started < 5
        assert pool.blocked == 1  # the exit must not wait for it either
    finally:
        gate.set()
    qtbot.waitUntil(lambda: pool.blocked == 0, timeout=10_000)


def test_simulated_work_lasts_its_delay_from_the_tasks_start(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    ids = [service.submit("uppercase", {"text": f"t{i}"}).id for i in range(6)]
    pool_factory(workers=2, work_delay=0.15)
    qtbot.waitUntil(all_done(store, 6), timeout=10_000)
    for task_id in ids:
        task = service.get(task_id)
        assert task.started_at is not None and task.processed_at is not None
        # Times are kept to 10 µs: allow for that rounding, nothing more.
        assert task.processed_at - task.started_at >= 0.15 - 2e-5, task


def test_workers_keeping_pace_with_one_submitter_finish_every_task(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool]
) -> None:
    # Workers faster than the one thread submitting: each finishes a task with nothing queued
    # and lingers for the next id, which mostly arrives during that wait.
    pool_factory(workers=2, work_delay=0)
    ids = [service.submit("uppercase", {"text": f"t{i}"}).id for i in range(600)]
    qtbot.waitUntil(all_done(store, 600), timeout=30_000)
    assert all(service.get(i).status == "completed" for i in ids)


def asleep_on_the_doorbell(monkeypatch: pytest.MonkeyPatch, pool: WorkerPool) -> set[int]:
    """The threads of *pool*'s workers waiting on its doorbell with nothing due (a wait as long
    as the idle poll), kept up to date as they fall asleep and wake."""
    asleep: set[int] = set()
    real = pool.bell.wait

    def wait(since: int, timeout: float | None) -> bool:
        idle = timeout is None or timeout >= batch_worker.IDLE_POLL_SECONDS
        if idle:
            asleep.add(threading.get_ident())
        try:
            return real(since, timeout)
        finally:
            asleep.discard(threading.get_ident())

    monkeypatch.setattr(pool.bell, "wait", wait)
    return asleep


def test_idle_workers_are_rung_awake_by_new_work(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, qapp: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle workers look at the queue by themselves only every IDLE_POLL_SECONDS, a safety net
    # for a missed ring. With that made an hour, only the doorbell can start the work below
    # within the waits: a submission, a retry, the queue resumed.
    monkeypatch.setattr(batch_worker, "IDLE_POLL_SECONDS", 3600.0)
    runs = {"n": 0}

    def boom(data: dict[str, Any]) -> None:
        runs["n"] += 1
        raise RuntimeError("boom")

    service.registry.register(python_action("boom", boom, lambda d: None, "always fails"))
    service.max_attempts = 1
    pool = WorkerPool(service, workers=2, prefetch=5, work_delay=0)
    asleep = asleep_on_the_doorbell(monkeypatch, pool)
    pool.start()
    try:
        qtbot.waitUntil(lambda: len(asleep) == 2, timeout=10_000)
        task = service.submit("uppercase", {"text": "rung"})
        qtbot.waitUntil(lambda: service.get(task.id).status == "completed", timeout=5_000)
        failing = service.submit("boom")
        qtbot.waitUntil(lambda: service.get(failing.id).status == "failed", timeout=5_000)

        qtbot.waitUntil(lambda: len(asleep) == 2, timeout=10_000)
        service.retry(failing.id)
        qtbot.waitUntil(lambda: runs["n"] == 2, timeout=5_000)

        service.set_paused(True)
        paused = service.submit("uppercase", {"text": "after the pause"})
        qtbot.waitUntil(lambda: len(asleep) == 2, timeout=10_000)
        assert service.get(paused.id).status == "queued"
        service.set_paused(False)
        qtbot.waitUntil(lambda: service.get(paused.id).status == "completed", timeout=5_000)
    finally:
        pool.stop()


def test_resuming_the_queue_wakes_every_idle_worker(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, qapp: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resume is news for the whole queue: it used to ring for one task, so of two workers
    # asleep only one woke, and the second task waited for the idle poll.
    monkeypatch.setattr(batch_worker, "IDLE_POLL_SECONDS", 3600.0)
    gate = threading.Event()
    entered: list[int] = []  # threads inside the action

    def wait_for_gate(data: dict[str, Any]) -> dict[str, int]:
        entered.append(threading.get_ident())
        gate.wait(30)
        return {"ok": 1}

    service.registry.register(python_action("gate", wait_for_gate, lambda d: None,
                                            "waits for the gate"))
    pool = WorkerPool(service, workers=2, prefetch=2, work_delay=0)
    asleep = asleep_on_the_doorbell(monkeypatch, pool)
    pool.start()
    try:
        qtbot.waitUntil(lambda: len(asleep) == 2, timeout=10_000)
        service.set_paused(True)
        held = [service.submit("gate").id for _ in range(2)]
        qtbot.waitUntil(lambda: len(asleep) == 2, timeout=10_000)  # back to sleep: paused
        service.set_paused(False)
        # Both run at once, one per worker (a claimed task shows `running` already).
        qtbot.waitUntil(lambda: len(set(entered)) == 2, timeout=5_000)
        gate.set()
        qtbot.waitUntil(lambda: all(service.get(i).status == "completed" for i in held),
                        timeout=5_000)
    finally:
        gate.set()
        pool.stop()


def test_a_worker_lingers_for_new_work_before_storing_an_outcome_alone(
    qtbot: QtBot, service: TaskService, qapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With nothing rung in since its claim, a worker that has run its batch waits up to
    # LINGER_SECONDS for a ring before it stores the outcomes, so that a task submitted
    # meanwhile is claimed in the same commit (one commit per task instead of two).
    pool = WorkerPool(service, workers=1, prefetch=5, work_delay=0)
    calls: list[tuple[str, float | int | None]] = []
    real_wait, real_settle = pool.bell.wait, service.settle

    def wait(since: int, timeout: float | None) -> bool:
        calls.append(("wait", timeout))
        return real_wait(since, timeout)

    def settle(outcomes: Any, claim: int) -> Any:
        calls.append(("settle", len(outcomes)))
        return real_settle(outcomes, claim)

    monkeypatch.setattr(pool.bell, "wait", wait)
    monkeypatch.setattr(service, "settle", settle)
    task = service.submit("uppercase", {"text": "x"})
    pool.start()
    try:
        qtbot.waitUntil(lambda: service.get(task.id).status == "completed", timeout=10_000)
    finally:
        pool.stop()
    stored = calls.index(("settle", 1))  # the commit that stored the task's outcome
    assert calls[stored - 1] == ("wait", LINGER_SECONDS), calls


def test_the_watchdog_never_judges_a_task_by_the_time_of_the_one_before(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore,
    pool_factory: Callable[..., WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An action with a short timeout of its own; the worker then idles for longer than
    # that before its next task. A watchdog tick while the worker takes that task up must
    # not see it with the start time and limit of the task before.
    service.registry.register(Action("quick", "returns at once", {"type": "object"},
                                     "python", lambda data, ctx: {"ok": True}, "test",
                                     timeout=0.2))
    first = service.submit("quick")
    pool = pool_factory(workers=1)
    qtbot.waitUntil(lambda: service.get(first.id).status == TaskStatus.COMPLETED,
                    timeout=10_000)
    qtbot.wait(500)  # idle for longer than the last task's limit
    original = service.action_of
    ticked: list[str] = []

    def tick_meanwhile(task: Any) -> Any:
        if task.action == "quick" and task.id != first.id and not ticked:
            ticked.append(task.id)
            pool.watchdog.end_stuck_tasks()  # the watchdog's tick lands here
        return original(task)

    monkeypatch.setattr(service, "action_of", tick_meanwhile)
    second = service.submit("quick")
    qtbot.waitUntil(lambda: service.get(second.id).status.is_finished, timeout=10_000)
    assert ticked == [second.id]
    done = service.get(second.id)
    assert (done.status, done.attempts) == (TaskStatus.COMPLETED, 1)  # not timed out
