"""Schedules (service/schedules.py): the [schedules.*] tables checked, and the Scheduler firing
them, driven by an injected clock through simulated days: no test sleeps.

Times use a fixed zone (Europe/Berlin) so that DST days are known: spring forward on
2025-03-30 (02:00 → 03:00), fall back on 2025-10-26 (03:00 → 02:00).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.actions import ActionRegistry
from service.errors import ValidationError
from service.schedules import (
    MAX_WAIT_SECONDS,
    Schedule,
    ScheduleError,
    Scheduler,
    UnknownScheduleError,
    check_actions,
    idempotency_key,
    local_zone,
    parse_schedules,
)
from service.task_service import TaskService
from storage import Task, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.action_helpers import python_action

BERLIN = ZoneInfo("Europe/Berlin")
SOURCE = "/home/me/.config/taskdesk/actions.toml"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       *, fold: int = 0) -> float:
    """Unix time of a Berlin wall-clock time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN, fold=fold).timestamp()


def wall(ts: float) -> str:
    return datetime.fromtimestamp(ts, BERLIN).strftime("%Y-%m-%d %H:%M %Z")


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SimulatedTime:
    """A clock and a Waiter for a scheduler thread: a wait moves the clock on instead of
    sleeping, but never past ``limit``; there the thread blocks until the test moves the limit
    (or wakes it). So a test runs a thread through days of simulated time deterministically."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.limit = now
        self.blocked = False
        self._woken = False
        self._cond = threading.Condition()

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float) -> None:
        with self._cond:
            target = self.now + timeout
            while target > self.limit and not self._woken:
                self.now = self.limit
                self.blocked = True
                self._cond.notify_all()
                self._cond.wait()
            self.blocked = False
            if self._woken:
                self._woken = False
                return
            self.now = max(self.now, target)

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def run_until(self, limit: float) -> None:
        """Let the thread run to *limit* and wait until it has done all it had to by then."""
        with self._cond:
            self.limit = limit
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: self.blocked and self.now == limit, timeout=30)


def schedule(name: str = "job", *, cron: str | None = None, every: float | None = None,
             action: str = "uppercase", data: dict[str, Any] | None = None) -> Schedule:
    return Schedule(name, action, data if data is not None else {"text": name}, cron, every)


@pytest.fixture
def clock() -> Clock:
    return Clock(at(2025, 6, 1, 12, 0, 30))


@pytest.fixture
def timed_service(store: SqliteTaskStore, clock: Clock) -> TaskService:
    return TaskService(store, clock=clock)


def scheduled_tasks(store: SqliteTaskStore) -> list[Task]:
    return store.page(TaskQuery(), 10_000)[::-1]  # oldest first


def fired_keys(store: SqliteTaskStore) -> list[str]:
    """The idempotency keys of the stored tasks, oldest first."""
    rows = store._conn().execute(
        "SELECT idempotency_key FROM tasks ORDER BY seq").fetchall()
    return [key for (key,) in rows]


# -- reading the tables ---------------------------------------------------------------------


def test_a_cron_and_an_every_schedule_are_read() -> None:
    raw = {
        "nightly-backup": {"action": "archive", "cron": "30 2 * * *",
                           "data": {"folder": "~/Documents", "output": "~/b.tar.gz"}},
        "hourly": {"action": "sum", "every": 3600},
    }
    nightly, hourly = parse_schedules(raw, SOURCE)
    assert nightly == Schedule("nightly-backup", "archive",
                               {"folder": "~/Documents", "output": "~/b.tar.gz"},
                               "30 2 * * *", None, SOURCE)
    assert (hourly.data, hourly.cron, hourly.every, hourly.when) == (
        {}, None, 3600.0, "every 3600 s")
    assert nightly.when == "cron 30 2 * * *"
    assert parse_schedules({}, SOURCE) == []


TEXT = """\
[actions.archive]
command = ["tar"]

[schedules.fine]
action = "x"
every = 60

[schedules."quoted-name"]   # a comment
action = "x"
"""


@pytest.mark.parametrize(("table", "problem"), [
    ({"action": "x", "every": 60, "when": "now"},
     "unknown key(s) when; the keys are action, data, cron, every"),
    ({"action": "x"}, "give exactly one of cron (an expression) or every (seconds)"),
    ({"action": "x", "cron": "* * * * *", "every": 60},
     "give exactly one of cron (an expression) or every (seconds)"),
    ({"action": "x", "cron": "61 * * * *"}, "cron '61 * * * *': bad minute"),
    ({"action": "x", "cron": "0 0 31 2 *"}, "cron '0 0 31 2 *': bad day-of-month"),
    ({"action": "x", "cron": "0 0 * * * *"},
     "cron '0 0 * * * *' must have five fields: minute hour day-of-month month day-of-week"),
    ({"action": "x", "cron": "@daily"},
     "cron '@daily' must have five fields: minute hour day-of-month month day-of-week"),
    ({"action": "x", "cron": 5}, "cron must be a cron expression (a string), not 5"),
    ({"action": "x", "every": 0.5},
     "every must be a number of seconds from 1 to 3.16224e+07 (a year), not 0.5"),
    ({"action": "x", "every": True},
     "every must be a number of seconds from 1 to 3.16224e+07 (a year), not True"),
    ({"action": "x", "every": "3600"},
     "every must be a number of seconds from 1 to 3.16224e+07 (a year), not '3600'"),
    ({"action": "x", "every": float("inf")},
     "every must be a number of seconds from 1 to 3.16224e+07 (a year), not inf"),
    ({"every": 60}, "action must be the name of an action (a string)"),
    ({"action": 7, "every": 60}, "action must be the name of an action (a string)"),
    ({"action": " ", "every": 60}, "action must be the name of an action (a string)"),
    ({"action": "x", "every": 60, "data": [1]}, "data must be a table (a JSON object)"),
    ({"action": "x", "every": 60, "data": {"when": datetime(2025, 1, 1)}},
     "data must hold only JSON values (TOML dates and times, nan and inf are not)"),
    ("every 60", "must be a table with action and cron or every"),
], ids=["unknown-key", "neither", "both", "bad-minute", "never", "six-fields", "nickname",
        "cron-not-text", "every-too-short", "every-bool", "every-text", "every-inf",
        "no-action", "action-not-text", "blank-action", "data-list", "data-date",
        "not-a-table"])
def test_a_bad_schedule_is_one_line_naming_file_line_and_problem(
    table: Any, problem: str
) -> None:
    raw = {"fine": {"action": "x", "every": 60}, "quoted-name": table}
    with pytest.raises(ScheduleError) as refused:
        parse_schedules(raw, SOURCE, TEXT)
    assert str(refused.value) == f"{SOURCE} line 8: [schedules.quoted-name] {problem}"
    # Without the text, the file alone.
    with pytest.raises(ScheduleError) as refused:
        parse_schedules(raw, SOURCE)
    assert str(refused.value) == f"{SOURCE}: [schedules.quoted-name] {problem}"


def test_names_that_are_not_plain_and_a_schedules_value_that_is_not_a_table() -> None:
    with pytest.raises(ScheduleError, match=r"\[schedules.a b\] the name must be 1 to 100 "):
        parse_schedules({"a b": {"action": "x", "every": 60}}, SOURCE)
    with pytest.raises(ScheduleError, match=r"^/home/me/.config/taskdesk/actions.toml: "
                                            r"\[schedules\] must be a table of schedules"):
        parse_schedules(["x"], SOURCE)  # type: ignore[arg-type]


def test_the_action_and_its_data_are_checked_against_the_registry_at_start_up(
    timed_service: TaskService,
) -> None:
    good, bad = parse_schedules({
        "any-name": {"action": "no-such-action-runs-the-default", "every": 60},
        "adds": {"action": "sum", "every": 60, "data": {"numbers": ["one"]}},
    }, SOURCE, "[schedules.any-name]\n[schedules.adds]\n")
    check_actions([good], timed_service)
    with pytest.raises(ScheduleError) as refused:
        check_actions([good, bad], timed_service)
    assert str(refused.value) == (
        f"{SOURCE} line 2: [schedules.adds] data.numbers[0]: 'one' is not of type "
        "'number'")


# -- firing -------------------------------------------------------------------------------


def test_an_every_schedule_fires_at_multiples_of_its_period_once_each(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    scheduler = Scheduler(timed_service, [schedule(every=60)], zone=BERLIN, clock=clock)
    first_due = at(2025, 6, 1, 12, 1)
    assert scheduler.tick() == first_due  # nothing before its first due time
    assert scheduled_tasks(store) == []
    clock.now = first_due
    assert scheduler.tick() == first_due + 60
    assert scheduler.tick() == first_due + 60  # the same time again: nothing more
    clock.now = first_due + 60.5
    scheduler.tick()
    tasks = scheduled_tasks(store)
    assert [(t.action, t.data, t.status) for t in tasks] == [
        ("uppercase", {"text": "job"}, TaskStatus.QUEUED)] * 2
    assert fired_keys(store) == [f"schedule:job:{int(first_due)}",
                                 f"schedule:job:{int(first_due) + 60}"]
    state = store.schedule_states()["job"]
    assert (state.last_due, state.last_task_id) == (first_due + 60, tasks[-1].id)


def test_a_cron_schedule_fires_in_local_time(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    scheduler = Scheduler(timed_service, [schedule(cron="30 2 * * *")], zone=BERLIN,
                          clock=clock)
    fired = run_minutes(scheduler, clock, at(2025, 6, 1, 12, 1), at(2025, 6, 4, 12, 0))
    assert [wall(t) for t in fired] == [
        "2025-06-02 02:30 CEST", "2025-06-03 02:30 CEST", "2025-06-04 02:30 CEST"]
    assert len(scheduled_tasks(store)) == 3


def run_minutes(scheduler: Scheduler, clock: Clock, start: float, end: float) -> list[float]:
    """Tick once a minute from *start* to *end*; the due times that fired, in order."""
    fired = []
    states = scheduler.store.schedule_states
    clock.now = start
    while clock.now <= end:
        before = {n: s.last_due for n, s in states().items()}
        scheduler.tick()
        for name, state in states().items():
            if state.last_due != before.get(name) and state.last_due is not None:
                fired.append(state.last_due)
        clock.now += 60
    return fired


@pytest.mark.parametrize(("cron", "expected"), [
    # 02:30 does not exist that night: it fires as the clock jumps to 03:00.
    ("30 2 * * *", ["2025-03-30 03:00 CEST"]),
    # By elapsed time: every real hour (02:00 does not exist).
    ("0 * * * *", ["2025-03-30 00:00 CET", "2025-03-30 01:00 CET", "2025-03-30 03:00 CEST",
                   "2025-03-30 04:00 CEST"]),
], ids=["fixed-time", "hourly"])
def test_spring_forward_day(store: SqliteTaskStore, cron: str, expected: list[str]) -> None:
    clock = Clock(at(2025, 3, 29, 23, 59, 30))
    service = TaskService(store, clock=clock)
    scheduler = Scheduler(service, [schedule(cron=cron)], zone=BERLIN, clock=clock)
    fired = run_minutes(scheduler, clock, at(2025, 3, 29, 23, 59, 30), at(2025, 3, 30, 4, 30))
    assert [wall(t) for t in fired] == expected
    assert len(scheduled_tasks(store)) == len(expected)


@pytest.mark.parametrize(("cron", "expected"), [
    # 02:30 happens twice that night: it fires once, the first time.
    ("30 2 * * *", ["2025-10-26 02:30 CEST"]),
    # By elapsed time: every real hour, 02:00 twice.
    ("0 * * * *", ["2025-10-26 00:00 CEST", "2025-10-26 01:00 CEST", "2025-10-26 02:00 CEST",
                   "2025-10-26 02:00 CET", "2025-10-26 03:00 CET", "2025-10-26 04:00 CET"]),
], ids=["fixed-time", "hourly"])
def test_fall_back_day(store: SqliteTaskStore, cron: str, expected: list[str]) -> None:
    clock = Clock(at(2025, 10, 25, 23, 59, 30))
    service = TaskService(store, clock=clock)
    scheduler = Scheduler(service, [schedule(cron=cron)], zone=BERLIN, clock=clock)
    fired = run_minutes(scheduler, clock, at(2025, 10, 25, 23, 59, 30), at(2025, 10, 26, 4, 30))
    assert [wall(t) for t in fired] == expected
    assert len(scheduled_tasks(store)) == len(expected)


def test_a_scheduler_started_inside_the_repeated_hour_does_not_fire_its_first_pass(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    clock.now = at(2025, 10, 26, 2, 40, fold=1)  # the second 02:40, after 02:30 CEST passed
    scheduler = Scheduler(timed_service, [schedule(cron="30 2 * * *")], zone=BERLIN,
                          clock=clock)
    assert scheduler.tick() == at(2025, 10, 27, 2, 30)
    assert scheduled_tasks(store) == []


def test_missed_firings_make_one_catch_up_run_at_start(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    nightly = schedule("nightly", cron="30 2 * * *")
    every = schedule("every-hour", every=3600)
    # Last fired three days ago; Taskdesk was stopped since.
    store.record_firing("nightly", at(2025, 5, 29, 2, 30), "old-task")
    store.record_firing("every-hour", at(2025, 5, 29, 3, 0), "old-task")
    scheduler = Scheduler(timed_service, [nightly, every], zone=BERLIN, clock=clock)
    scheduler.tick()
    assert sorted(fired_keys(store)) == sorted([
        idempotency_key("nightly", at(2025, 6, 1, 2, 30)),  # the latest missed, once
        idempotency_key("every-hour", at(2025, 6, 1, 12, 0)),
    ])
    scheduler.tick()
    assert len(scheduled_tasks(store)) == 2
    # A restart now changes nothing: the firings are recorded.
    Scheduler(timed_service, [nightly, every], zone=BERLIN, clock=clock).tick()
    assert len(scheduled_tasks(store)) == 2


def test_a_schedule_that_never_fired_has_nothing_to_catch_up(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    scheduler = Scheduler(timed_service, [schedule(cron="30 2 * * *")], zone=BERLIN,
                          clock=clock)
    assert scheduler.tick() == at(2025, 6, 2, 2, 30)
    assert scheduled_tasks(store) == []


def test_a_paused_schedule_does_not_fire_and_its_pause_is_kept(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    scheduler = Scheduler(timed_service, [schedule(every=60), schedule("other", every=60)],
                          zone=BERLIN, clock=clock)
    status = scheduler.set_paused("job", True)
    assert (status.paused, status.next_due) == (True, None)
    clock.now += 600
    scheduler.tick()
    assert [t.data for t in scheduled_tasks(store)] == [{"text": "other"}]
    # Another instance (a restart) sees the pause: the store keeps it.
    again = Scheduler(timed_service, [schedule(every=60)], zone=BERLIN, clock=clock)
    assert again.status("job").paused
    clock.now += 600
    again.tick()
    assert len(scheduled_tasks(store)) == 1
    # Resumed after missing firings: one catch-up run, as at a start.
    resumed = again.set_paused("job", False)
    assert (resumed.paused, resumed.next_due) == (False, at(2025, 6, 1, 12, 11))
    again.tick()
    assert fired_keys(store)[-1] == idempotency_key("job", at(2025, 6, 1, 12, 20))
    assert again.status("job").next_due == at(2025, 6, 1, 12, 21)


def test_run_now_fires_at_once_even_when_paused_and_the_next_firing_stays(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    scheduler = Scheduler(timed_service, [schedule(cron="30 2 * * *")], zone=BERLIN,
                          clock=clock)
    scheduler.set_paused("job", True)
    task = scheduler.run_now("job")
    assert (task.action, task.data, task.status) == ("uppercase", {"text": "job"},
                                                     TaskStatus.QUEUED)
    status = scheduler.status("job")
    assert (status.last_due, status.last_task_id, status.last_task) == (clock.now, task.id,
                                                                        task)
    scheduler.set_paused("job", False)
    assert scheduler.tick() == at(2025, 6, 2, 2, 30)  # no catch-up for a run now
    assert len(scheduled_tasks(store)) == 1
    with pytest.raises(UnknownScheduleError, match="schedule 'nope' not found"):
        scheduler.run_now("nope")
    with pytest.raises(UnknownScheduleError):
        scheduler.set_paused("nope", True)


def test_overview_says_next_due_and_last_task_as_it_is_now(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
) -> None:
    scheduler = Scheduler(timed_service, [schedule(every=60)], zone=BERLIN, clock=clock)
    [before] = scheduler.overview()
    assert before.to_dict() == {
        "name": "job", "action": "uppercase", "data": {"text": "job"}, "cron": None,
        "every": 60.0, "paused": False, "next_due": at(2025, 6, 1, 12, 1), "last_due": None,
        "last_task": None}
    clock.now = at(2025, 6, 1, 12, 1)
    scheduler.tick()
    [task] = scheduled_tasks(store)
    timed_service.cancel(task.id)
    [after] = scheduler.overview()
    assert after.to_dict()["last_task"] == {"id": task.id, "status": "cancelled"}
    assert after.next_due == at(2025, 6, 1, 12, 2)
    timed_service.delete(task.id)  # no longer kept: its id stays, its status is unknown
    assert scheduler.overview()[0].to_dict()["last_task"] == {"id": task.id, "status": None}


@pytest.fixture
def two_services(db_path: Path, clock: Clock) -> Iterator[tuple[TaskService, TaskService]]:
    first, second = SqliteTaskStore(db_path), SqliteTaskStore(db_path)
    yield TaskService(first, clock=clock), TaskService(second, clock=clock)
    first.close()
    second.close()


def test_two_schedulers_on_one_database_fire_each_time_once(
    two_services: tuple[TaskService, TaskService], clock: Clock,
) -> None:
    a, b = (Scheduler(s, [schedule(every=60)], zone=BERLIN, clock=clock) for s in two_services)
    barrier = threading.Barrier(2)

    def tick(scheduler: Scheduler) -> None:
        barrier.wait()
        scheduler.tick()

    for minute in range(1, 6):
        clock.now = at(2025, 6, 1, 12, minute)
        threads = [threading.Thread(target=tick, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    store = two_services[0].store
    assert isinstance(store, SqliteTaskStore)
    assert fired_keys(store) == [idempotency_key("job", at(2025, 6, 1, 12, m))
                                 for m in range(1, 6)]


def test_a_firing_cut_short_before_it_was_recorded_is_not_repeated_by_a_restart(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = [schedule(every=60)]
    store.record_firing("job", at(2025, 6, 1, 12, 0), "the-last-one")
    crashing = Scheduler(timed_service, jobs, zone=BERLIN, clock=clock)
    clock.now = at(2025, 6, 1, 12, 1)

    def crash(*args: object) -> None:
        raise RuntimeError("stopped here")

    monkeypatch.setattr(store, "record_firing", crash)
    with pytest.raises(RuntimeError):
        crashing.tick()
    monkeypatch.undo()
    [task] = scheduled_tasks(store)
    assert store.schedule_states()["job"].last_task_id == "the-last-one"
    clock.now += 10
    Scheduler(timed_service, jobs, zone=BERLIN, clock=clock).tick()  # the restart
    assert scheduled_tasks(store) == [task]  # the same key: the same task
    state = store.schedule_states()["job"]
    assert (state.last_due, state.last_task_id) == (at(2025, 6, 1, 12, 1), task.id)


def test_a_firing_the_service_refuses_is_logged_and_not_retried_in_a_loop(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = schedule(every=60, action="sum", data={"numbers": [1]})
    scheduler = Scheduler(timed_service, [job], zone=BERLIN, clock=clock)

    def refuse(data: dict[str, Any]) -> None:
        raise ValidationError("sum: changed its mind")

    timed_service.registry = ActionRegistry()  # "sum" now refuses what it took before
    timed_service.registry.register(python_action("sum", lambda data: data, refuse, "refuses"))
    clock.now = at(2025, 6, 1, 12, 1)
    assert scheduler.tick() == at(2025, 6, 1, 12, 2)
    assert scheduler.tick() == at(2025, 6, 1, 12, 2)
    assert scheduled_tasks(store) == []
    assert caplog.text.count("schedule job could not fire") == 1


# -- the thread ---------------------------------------------------------------------------


def test_the_thread_fires_through_simulated_hours_and_stops(store: SqliteTaskStore) -> None:
    sim = SimulatedTime(at(2025, 6, 1, 12, 0, 30))
    service = TaskService(store, clock=sim.clock)
    hourly = Scheduler(service, [schedule(every=3600), schedule("x", cron="15 * * * *")],
                       zone=BERLIN, clock=sim.clock, waiter=sim)
    hourly.start()
    try:
        sim.run_until(at(2025, 6, 1, 15, 30))
        assert sorted(wall(t.created_at) for t in scheduled_tasks(store)) == [
            "2025-06-01 12:15 CEST", "2025-06-01 13:00 CEST", "2025-06-01 13:15 CEST",
            "2025-06-01 14:00 CEST", "2025-06-01 14:15 CEST", "2025-06-01 15:00 CEST",
            "2025-06-01 15:15 CEST"]
        # Never a wait longer than MAX_WAIT_SECONDS: a clock set forward is seen in time.
        sim.run_until(sim.now + MAX_WAIT_SECONDS)
        # Run now wakes it; nothing is waited for.
        task = hourly.run_now("job")
        assert store.get(task.id) is not None
    finally:
        hourly.stop()
    assert hourly._thread is not None and not hourly._thread.is_alive()


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    zone = local_zone()
    assert datetime(2025, 7, 1, tzinfo=zone).utcoffset() != datetime(
        2025, 1, 1, tzinfo=zone).utcoffset()  # it has the DST rules, not a fixed offset
    assert str(zone) == "America/New_York"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_zone() is not None  # the system's instead


def test_a_due_time_fired_by_an_instance_with_other_data_is_not_fired_again(
    timed_service: TaskService, store: SqliteTaskStore, clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two instances whose files disagree on a schedule's data: the first to fire a due time
    wins, the other logs the conflict once and goes on to the next due time."""
    clock.now = at(2025, 6, 1, 12, 1)
    timed_service.accept("uppercase", {"text": "the other file"},
                         idempotency_key=idempotency_key("job", at(2025, 6, 1, 12, 1)))
    scheduler = Scheduler(timed_service, [schedule(every=60)], zone=BERLIN, clock=clock,)
    scheduler.started_at = at(2025, 6, 1, 12, 0, 30)
    assert scheduler.tick() == at(2025, 6, 1, 12, 2)
    assert scheduler.tick() == at(2025, 6, 1, 12, 2)
    assert [t.data for t in scheduled_tasks(store)] == [{"text": "the other file"}]
    assert caplog.text.count("was used for a different request") == 1
