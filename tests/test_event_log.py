"""EventLog (service/event_log.py): the numbered ring of recent changes GET /events reads."""

from __future__ import annotations

import dataclasses
import threading
import time

from service.event_log import EventLog
from service.events import EventKind, TaskEvent
from service.task_service import TaskService
from storage import Task, TaskStatus
from tests.conftest import claim_next


def a_task(n: int, data: str = "{}") -> Task:
    return Task(seq=n, id=f"task-{n}", action="uppercase", data_json=data,
                status=TaskStatus.QUEUED, result_json=None, error=None, attempts=0,
                max_attempts=3, created_at=1.0, started_at=None, processed_at=None,
                run_after=1.0)


def fill(log: EventLog, count: int, data: str = "{}") -> None:
    for n in range(count):
        log.record(TaskEvent(EventKind.SUBMITTED, a_task(n, data)))


def test_events_are_numbered_in_order_and_read_after_an_id() -> None:
    log = EventLog(first_id=100)
    assert (log.last_id, log.first_id) == (99, 100)
    fill(log, 5)
    read = log.read(99)
    assert not read.gap
    assert [e.id for e in read.events] == [100, 101, 102, 103, 104]
    assert [e.task.id for e in read.events if e.task] == [f"task-{n}" for n in range(5)]
    assert [e.id for e in log.read(102).events] == [103, 104]
    assert [e.id for e in log.read(99, limit=2).events] == [100, 101]
    caught_up = log.read(104)
    assert (caught_up.events, caught_up.gap, caught_up.last_id) == ((), False, 104)


def test_task_json_is_the_api_text_made_once() -> None:
    log = EventLog(first_id=1)
    fill(log, 1, '{"text":"x"}')
    [event] = log.read(0).events
    text = event.task_json()
    assert event.task is not None and text == event.task.to_json()
    assert event.task_json() is text


def test_a_waiting_reader_wakes_on_the_next_event() -> None:
    log = EventLog(first_id=1)
    got: list[int] = []
    waited: list[float] = []

    def reader() -> None:
        started = time.monotonic()
        got.extend(e.id for e in log.read(0, timeout=30).events)
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=reader)
    thread.start()
    while not log._changed._waiters:  # type: ignore[attr-defined]  # the reader waits
        time.sleep(0.001)
    fill(log, 1)
    thread.join(10)
    assert got == [1]
    assert waited[0] < 10  # woken by the event, not by its 30 s timeout


def test_a_reader_behind_the_ring_gets_a_gap_not_a_hole() -> None:
    log = EventLog(capacity=4, first_id=1)
    fill(log, 10)  # ids 1..10; the ring keeps 7..10
    assert (log.first_id, log.last_id, len(log)) == (7, 10, 4)
    assert [e.id for e in log.read(6).events] == [7, 8, 9, 10]  # nothing missed: no gap
    behind = log.read(5)  # 6 was dropped
    assert behind.gap and behind.events == () and behind.last_id == 10


def test_ids_of_another_run_get_a_gap() -> None:
    log = EventLog(first_id=1000)
    assert log.read(999).gap is False  # nothing happened yet: nothing missed
    assert log.read(5).gap  # from an earlier run, before anything of this one
    fill(log, 3)
    assert log.read(1002).gap is False
    assert log.read(5000).gap  # above every id given: not one of this run's


def test_a_new_run_starts_above_the_ids_of_an_earlier_one() -> None:
    earlier = EventLog()
    fill(earlier, 2000)
    later = EventLog()
    assert later.first_id > earlier.last_id
    assert later.read(earlier.last_id).gap


def test_the_ring_is_bounded_by_the_size_of_its_tasks() -> None:
    big = '"' + "x" * 100_000 + '"'
    log = EventLog(capacity=1000, max_bytes=350_000, first_id=1)
    fill(log, 10, big)
    assert len(log) == 3  # 3 × ~100 kB fit in 350 kB
    assert log.read(0).gap
    huge = EventLog(capacity=1000, max_bytes=1000, first_id=1)
    fill(huge, 3, big)
    assert len(huge) == 1  # the newest is kept, however large
    assert [e.id for e in huge.read(2).events] == [3]


def test_a_batch_is_one_event_per_task_as_submitted(service: TaskService) -> None:
    log = EventLog.attach(service)
    start = log.last_id
    ids = service.submit_many("uppercase", {"text": "copy"}, 5)
    events = log.read(start).events
    assert [e.kind for e in events] == [EventKind.SUBMITTED] * 5
    assert [e.task.id for e in events if e.task] == ids
    stored = {t.id: t for t in (service.get(i) for i in ids)}
    for event in events:
        assert event.task is not None
        assert event.task == stored[event.task.id]  # seq and every field as stored
        assert event.task_json() == stored[event.task.id].to_json()


def test_a_batch_read_back_after_a_claim_is_still_reported_as_submitted() -> None:
    log = EventLog(first_id=1)
    newest = dataclasses.replace(a_task(10), status=TaskStatus.RUNNING, attempts=1,
                                 started_at=2.0)
    log.record(TaskEvent(EventKind.SUBMITTED_MANY, newest, 3, ("a", "b", "c")))
    events = log.read(0).events
    assert [(e.task.id, e.task.seq, e.task.status, e.task.attempts, e.task.started_at)
            for e in events if e.task] == [
        ("a", 8, TaskStatus.QUEUED, 0, None), ("b", 9, TaskStatus.QUEUED, 0, None),
        ("c", 10, TaskStatus.QUEUED, 0, None)]


def test_a_batch_larger_than_the_ring_uses_its_ids_and_keeps_the_newest() -> None:
    log = EventLog(capacity=4, first_id=1)
    fill(log, 2)  # ids 1, 2
    ids = tuple(f"copy-{n}" for n in range(10))
    log.record(TaskEvent(EventKind.SUBMITTED_MANY, a_task(50), 10, ids))
    assert log.last_id == 12  # one id per task, kept or not
    assert [e.task.id for e in log.read(8).events if e.task] == list(ids[6:])
    assert log.read(2).gap  # the reader who had 1 and 2 missed copies 0 to 5


def test_attached_to_a_service_every_change_in_order(service: TaskService) -> None:
    log = EventLog.attach(service)
    start = log.last_id
    task = service.submit("uppercase", {"text": "a"})
    claimed = claim_next(service)
    assert claimed is not None
    service.settle([service.run(claimed)], 0)
    service.set_paused(True)
    service.set_paused(False)
    service.delete(task.id)
    events = log.read(start).events
    assert [e.kind for e in events] == [EventKind.SUBMITTED, EventKind.STARTED,
                                        EventKind.COMPLETED, EventKind.PAUSED,
                                        EventKind.RESUMED, EventKind.DELETED]
    assert [e.id for e in events] == list(range(start + 1, start + 7))
    assert events[3].task is None and events[3].task_json() == "null"
    log.detach()
    service.submit("uppercase", {"text": "b"})
    assert log.last_id == start + 6
