"""Retention (service/retention.py): finished tasks past --keep-completed / --keep-failed days
are deleted in small batches with a pause between them, with their logs and idempotency keys;
0 days keeps them forever. Times come from an injected clock; waits are simulated."""

from __future__ import annotations

import pytest

from service.errors import ConflictError
from service.events import EventKind, TaskEvent
from service.retention import DAY_SECONDS, INTERVAL_SECONDS, Retention
from service.task_service import TaskService
from storage import Finish, NewTask, Task, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.test_schedules import Clock, SimulatedTime

NOW = 1_800_000_000.0
DAY = DAY_SECONDS


class RecordingWaiter:
    """Waits nothing; remembers each wait asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def wait(self, timeout: float) -> None:
        self.waits.append(timeout)

    def wake(self) -> None:
        pass


def finished(store: SqliteTaskStore, status: TaskStatus, when: float, **options: object
             ) -> Task:
    """A task that ended *status* at *when*."""
    task = store.add(NewTask("x", "{}", 1, **options), when - 1).task  # type: ignore[arg-type]
    if status == TaskStatus.CANCELLED:
        [cancelled] = store.cancel_many([task.id], when)
        return cancelled
    [running] = store.settle([], 1, when - 0.5).claimed
    assert running.id == task.id
    text = "1" if status == TaskStatus.COMPLETED else "boom"
    done = store.settle([Finish(task.id, 1, status, text, when)], 0,  # type: ignore[arg-type]
                        when).finished[0]
    assert done is not None and done.status == status
    return done


def kept(store: SqliteTaskStore) -> set[str]:
    return {t.id for t in store.page(TaskQuery(), 10_000)}


def test_cutoffs_are_days_before_now_and_zero_keeps_forever(service: TaskService) -> None:
    assert Retention(service, 30, 90).cutoffs(NOW) == (NOW - 30 * DAY, NOW - 90 * DAY)
    assert Retention(service, 0, 0.5).cutoffs(NOW) == (0.0, NOW - 0.5 * DAY)
    assert not Retention(service, 0, 0).enabled and Retention(service, 0, 1).enabled
    with pytest.raises(ValueError):
        Retention(service, -1, 90)


def test_old_finished_tasks_go_in_batches_with_a_pause_between(store: SqliteTaskStore) -> None:
    clock = Clock(NOW)
    service = TaskService(store, clock=clock)
    old_done = [finished(store, TaskStatus.COMPLETED, NOW - 31 * DAY - i) for i in range(5)]
    young_done = finished(store, TaskStatus.COMPLETED, NOW - 29 * DAY)
    old_failed = finished(store, TaskStatus.FAILED, NOW - 91 * DAY)
    old_cancelled = finished(store, TaskStatus.CANCELLED, NOW - 91 * DAY)
    # Failed and cancelled are kept longer than completed.
    failed_60 = finished(store, TaskStatus.FAILED, NOW - 60 * DAY)
    cancelled_60 = finished(store, TaskStatus.CANCELLED, NOW - 60 * DAY)
    queued = store.add(NewTask("x", "{}", 1), NOW - 400 * DAY).task  # never finished: kept
    store.append_log(old_done[0].id, b"old output\n")
    deleted_events: list[str] = []

    def listen(event: TaskEvent) -> None:
        if event.kind == EventKind.DELETED and event.task is not None:
            deleted_events.append(event.task.id)

    service.subscribe(listen)
    waiter = RecordingWaiter()
    batch_times = iter([0.0, 0.001, 1.0, 1.02, 2.0, 2.001, 3.0, 3.001])  # the second: 20 ms
    retention = Retention(service, 30, 90, batch_size=2, batch_pause=0.05, clock=clock,
                          waiter=waiter, monotonic=lambda: next(batch_times))
    assert retention.purge() == 7
    assert kept(store) == {young_done.id, failed_60.id, cancelled_60.id, queued.id}
    assert sorted(deleted_events) == sorted(
        [t.id for t in old_done] + [old_failed.id, old_cancelled.id])
    # Batches of 2: 2, 2, 2, 1; a pause after each full batch, none after the last: at least
    # 50 ms, and nine times what the batch took (the second took 20 ms).
    assert waiter.waits == [0.05, pytest.approx(0.18), 0.05] and retention.deleted == 7
    assert store.read_log(old_done[0].id, 0, 100).data == b""
    retention.monotonic = lambda: 0.0
    assert retention.purge() == 0 and len(waiter.waits) == 3


def test_an_idempotency_key_is_free_again_once_its_task_is_deleted(
    store: SqliteTaskStore,
) -> None:
    clock = Clock(NOW)
    service = TaskService(store, clock=clock)
    old = finished(store, TaskStatus.COMPLETED, NOW - 40 * DAY, idempotency_key="nightly",
                   request_hash="h")
    with pytest.raises(ConflictError):  # a different request under the same key
        service.accept("x", {}, idempotency_key="nightly")
    Retention(service, 30, 90, waiter=RecordingWaiter(), clock=clock).purge()
    again = service.accept("x", {}, idempotency_key="nightly")
    assert again.created and again.task.id != old.id


def test_zero_days_keeps_that_kind_forever(store: SqliteTaskStore) -> None:
    clock = Clock(NOW)
    service = TaskService(store, clock=clock)
    done = finished(store, TaskStatus.COMPLETED, NOW - 10_000 * DAY)
    failed = finished(store, TaskStatus.FAILED, NOW - 10_000 * DAY)
    assert Retention(service, 0, 90, clock=clock, waiter=RecordingWaiter()).purge() == 1
    assert kept(store) == {done.id}
    assert not Retention(service, 0, 0).enabled
    assert failed.id not in kept(store)


def test_the_thread_purges_at_start_then_every_interval_and_stops(
    store: SqliteTaskStore,
) -> None:
    sim = SimulatedTime(NOW)
    service = TaskService(store, clock=sim.clock)
    first = finished(store, TaskStatus.COMPLETED, NOW - 31 * DAY)
    retention = Retention(service, 30, 90, clock=sim.clock, waiter=sim)
    retention.start()
    try:
        sim.run_until(NOW)  # the first round, at start
        assert first.id not in kept(store)
        later = finished(store, TaskStatus.COMPLETED, NOW - 30 * DAY + 10)  # old in 10 s
        sim.run_until(NOW + INTERVAL_SECONDS - 1)
        assert later.id in kept(store)
        sim.run_until(NOW + INTERVAL_SECONDS)
        assert later.id not in kept(store)
    finally:
        retention.stop()
    assert retention._thread is not None and not retention._thread.is_alive()


def test_a_disabled_retention_starts_no_thread(service: TaskService) -> None:
    retention = Retention(service, 0, 0)
    retention.start()
    assert retention._thread is None
    retention.stop()
