"""Notifications (gui/notifications.py): the real grouping rate limiter on a fake clock, and
the Notifier over a real service, with a fake sink standing in for the desktop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gui.notifications import (
    GATHER_SECONDS,
    INTERVAL_SECONDS,
    Group,
    NoticeKind,
    NotificationLimiter,
    Notifier,
    describe,
)
from gui.preferences import Preferences
from service.task_service import TaskService
from storage import Task
from tests.action_helpers import python_action
from tests.conftest import claim_next, run_claimed


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeSink:
    shown: list[tuple[NoticeKind, str, str]] = field(default_factory=list)

    def notify(self, kind: NoticeKind, title: str, text: str) -> None:
        self.shown.append((kind, title, text))

    def titles(self) -> list[str]:
        return [title for _, title, _ in self.shown]


# -- the limiter on its own -------------------------------------------------------------------


def test_a_burst_is_one_notification_and_what_follows_waits_for_the_interval() -> None:
    clock = FakeClock()
    limiter = NotificationLimiter(clock=clock)
    limiter.add(NoticeKind.FAILED, "a")
    assert limiter.due() == []  # gathering the burst's first moments
    clock.advance(GATHER_SECONDS / 2)
    for item in "bcdefghijkl":
        limiter.add(NoticeKind.FAILED, item)
    clock.advance(GATHER_SECONDS / 2)
    [group] = limiter.due()
    assert (group.kind, group.count, group.items) == (NoticeKind.FAILED, 12, ["j", "k", "l"])
    assert limiter.due() == []

    for item in "mnopq":  # more failures right after: held for the interval, then grouped
        limiter.add(NoticeKind.FAILED, item)
    clock.advance(INTERVAL_SECONDS - 1)
    assert limiter.due() == []
    clock.advance(1)
    [group] = limiter.due()
    assert group.count == 5

    clock.advance(INTERVAL_SECONDS * 3)  # a quiet spell: the next one is quick again
    limiter.add(NoticeKind.FAILED, "r")
    clock.advance(GATHER_SECONDS)
    assert [g.count for g in limiter.due()] == [1]


def test_kinds_are_limited_each_on_its_own() -> None:
    clock = FakeClock()
    limiter = NotificationLimiter(clock=clock)
    limiter.add(NoticeKind.FAILED, "a")
    clock.advance(GATHER_SECONDS)
    assert [g.kind for g in limiter.due()] == [NoticeKind.FAILED]
    limiter.add(NoticeKind.DATABASE, "disk full")
    limiter.add(NoticeKind.FAILED, "b")
    clock.advance(GATHER_SECONDS)
    assert [g.kind for g in limiter.due()] == [NoticeKind.DATABASE]  # failed waits its turn
    limiter.drop(NoticeKind.FAILED)
    clock.advance(INTERVAL_SECONDS)
    assert limiter.due() == []


def test_a_flood_never_makes_more_than_one_notification_per_interval_per_kind() -> None:
    clock = FakeClock()
    limiter = NotificationLimiter(clock=clock)
    shown: list[Group] = []
    for tick in range(10 * 60 * 10):  # ten minutes, ten failures a second, looked at 10×/s
        limiter.add(NoticeKind.FAILED, f"t{tick}")
        clock.advance(0.1)
        shown.extend(limiter.due())
    assert len(shown) <= 10 * 60 / INTERVAL_SECONDS + 1
    assert sum(g.count for g in shown) + sum(
        g.count for g in [limiter._pending.get(NoticeKind.FAILED)] if g) == 6000


def test_descriptions_name_a_few_and_count_the_rest() -> None:
    one = Group(NoticeKind.FAILED)
    one.add("uppercase 1a2b3c4d: ValueError: no")
    assert describe(one) == ("Task failed", "uppercase 1a2b3c4d: ValueError: no")
    many = Group(NoticeKind.FAILED)
    for n in range(12):
        many.add(f"sum {n}")
    assert describe(many) == ("12 tasks failed", "sum 9, sum 10, sum 11 and 9 more")
    mine = Group(NoticeKind.FINISHED)
    mine.add("sum 1 completed")
    mine.add("sum 2 failed")
    assert describe(mine) == ("2 of your tasks finished", "sum 1 completed, sum 2 failed")
    db = Group(NoticeKind.DATABASE)
    db.add("Database unavailable: disk full")
    assert describe(db)[0] == "Database unavailable"


# -- the notifier over a real service ---------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefs() -> Preferences:
    return Preferences()


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def notifier(qapp: Any, service: TaskService, prefs: Preferences, sink: FakeSink,
             clock: FakeClock) -> Iterator[Notifier]:
    def boom(data: dict[str, Any]) -> Any:
        raise ValueError("no good")

    service.registry.register(python_action("explode", boom, lambda d: None, "always fails"))
    made = Notifier(service, prefs, sink, limiter=NotificationLimiter(clock=clock))
    yield made
    made.stop()


def fail_for_good(service: TaskService, count: int) -> list[str]:
    """Submit *count* failing tasks and run each attempt until all have failed for good."""
    ids = [service.submit("explode", {}).id for _ in range(count)]
    now = [service.clock()]
    service.clock = lambda: now[0]
    while True:
        due = service.next_due()
        if due is not None:  # a retry waits for its (short) backoff: move the clock on
            now[0] = max(now[0], due)
        task = claim_next(service)
        if task is None:
            break
        run_claimed(service, task)
    return ids


def show(notifier: Notifier, clock: FakeClock, seconds: float = GATHER_SECONDS) -> None:
    notifier.flush()
    clock.advance(seconds)
    notifier.flush()


def test_tasks_failed_for_good_are_grouped(notifier: Notifier, service: TaskService,
                                           sink: FakeSink, clock: FakeClock) -> None:
    fail_for_good(service, 12)  # each tried three times: only the last failure counts
    show(notifier, clock)
    assert sink.shown[0][:2] == (NoticeKind.FAILED, "12 tasks failed")
    assert "ValueError: no good" in sink.shown[0][2]
    fail_for_good(service, 3)
    show(notifier, clock)
    assert len(sink.shown) == 1  # within the interval: held
    show(notifier, clock, INTERVAL_SECONDS)
    assert sink.titles() == ["12 tasks failed", "3 tasks failed"]


def test_tasks_from_the_window_are_told_when_they_finish_if_asked(
    notifier: Notifier, service: TaskService, sink: FakeSink, clock: FakeClock,
    prefs: Preferences,
) -> None:
    mine = service.submit("uppercase", {"text": "a"})
    notifier.watch([mine.id])  # off by default: not watched
    run_claimed(service, claim_next(service))  # type: ignore[arg-type]
    show(notifier, clock)
    assert sink.shown == []

    prefs.notify_finished = True
    mine = service.submit("uppercase", {"text": "b"})
    other = service.submit("uppercase", {"text": "c"})  # not from the window
    notifier.watch([mine.id])
    for _ in range(2):
        run_claimed(service, claim_next(service))  # type: ignore[arg-type]
    show(notifier, clock)
    assert sink.shown == [(NoticeKind.FINISHED, "Your task finished",
                           f"uppercase {mine.id[:8]} completed")]
    assert other.id[:8] not in sink.shown[0][2]


def test_the_database_becoming_unavailable_is_told_once_per_episode(
    notifier: Notifier, sink: FakeSink, clock: FakeClock
) -> None:
    notifier.database_problem("⚠ Database unavailable: database or disk is full")
    notifier.database_problem("⚠ Database unavailable: database is locked")  # the same episode
    show(notifier, clock)
    assert sink.shown == [(NoticeKind.DATABASE, "Database unavailable",
                           "Database unavailable: database or disk is full")]
    notifier.database_problem(None)
    notifier.database_problem("⚠ Database unavailable: database or disk is full")
    show(notifier, clock, INTERVAL_SECONDS)
    assert len(sink.shown) == 2


def test_switched_off_kinds_are_not_shown(notifier: Notifier, service: TaskService,
                                          sink: FakeSink, clock: FakeClock,
                                          prefs: Preferences) -> None:
    prefs.notify_failed = False
    prefs.notify_database = False
    failed: list[int] = []
    notifier.tasks_failed.connect(failed.append)
    fail_for_good(service, 2)
    notifier.database_problem("⚠ Database unavailable: disk full")
    show(notifier, clock, INTERVAL_SECONDS)
    assert sink.shown == []
    assert failed == [2]  # the tray still learns that tasks failed


def test_a_failing_attempt_that_will_be_retried_is_not_a_failure(
    notifier: Notifier, service: TaskService, sink: FakeSink, clock: FakeClock
) -> None:
    service.submit("explode", {})
    task = claim_next(service)
    assert task is not None
    stored = run_claimed(service, task)
    assert isinstance(stored, Task) and stored.status == "queued"  # attempt 1 of 3
    show(notifier, clock, INTERVAL_SECONDS)
    assert sink.shown == []
