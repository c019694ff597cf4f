"""The storage contract (storage/contract.py), held to every backend by one test class.

Each backend provides a ``StoreFactory``: a fresh, migrated database per test, and more stores
on that same database (to race two of them). The tests use the contract only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage import (
    STATUSES,
    Finish,
    IdempotencyConflictError,
    LogSlice,
    NewTask,
    Progress,
    ScheduleState,
    Task,
    TaskQuery,
    TaskSort,
    TaskStatus,
    TaskStore,
    UnknownTasksError,
    stored_time,
)
from storage.sqlite import SqliteTaskStore
from tests.conftest import make_db
from tests.postgres_server import PgServer

NOW = 1_800_000_000.0
COMPLETED, QUEUED, FAILED = TaskStatus.COMPLETED, TaskStatus.QUEUED, TaskStatus.FAILED

StoreFactory = Callable[[], TaskStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one fresh database of the backend under test; closes them all. On
    PostgreSQL each store is a node of its own, as separate instances would be."""
    opened: list[TaskStore] = []
    if request.param == "postgres":
        from storage.postgres import PostgresTaskStore

        server: PgServer = request.getfixturevalue("pg_server")
        url = server.fresh_database()

        def factory() -> TaskStore:
            store = PostgresTaskStore(url, max_connections=4)
            opened.append(store)
            return store
    else:
        db = make_db(tmp_path / "tasks.db")

        def factory() -> TaskStore:
            store = SqliteTaskStore(db)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> TaskStore:
    return open_store()


def add(store: TaskStore, action: str = "x", data: str = "{}", attempts: int = 3,
        now: float = NOW, **options: Any) -> Task:
    added = store.add(NewTask(action, data, attempts, **options), now)
    assert added.created
    return added.task


def add_all(store: TaskStore, items: list[tuple[str, str]], attempts: int, now: float
            ) -> list[str]:
    """Tasks of different actions and data, one add each (add_many makes copies of one)."""
    return [add(store, action, data, attempts, now).id for action, data in items]


def claim(store: TaskStore, n: int = 1, now: float = NOW) -> list[Task]:
    return store.settle([], n, now).claimed


def finish(store: TaskStore, task: Task, status: TaskStatus, text: str, when: float
           ) -> Task | None:
    done = Finish(task.id, task.attempts, status, text, when)  # type: ignore[arg-type]
    return store.settle([done], 0, when).finished[0]


def ids(tasks: list[Task]) -> list[str]:
    return [t.id for t in tasks]


def all_pages(store: TaskStore, query: TaskQuery, size: int) -> list[Task]:
    """Every task of *query*, read by cursor *size* at a time."""
    found: list[Task] = []
    while page := store.page(query, size, found[-1] if found else None):
        found += page
        assert len(found) <= 1000, "paging does not end"
    return found


def expected_order(tasks: dict[str, Task], query: TaskQuery) -> list[str]:
    """The ids of *tasks* in *query*'s order, as the contract says it, written here apart
    from the stores' own code: a time not there yet before every time, texts by code
    point, and the insertion order (seq) breaking ties, all in the same direction."""
    def time_or_absent(value: float | None) -> tuple[int, float]:
        return (0, 0.0) if value is None else (1, value)

    def duration(t: Task) -> tuple[int, float]:
        if t.started_at is None or t.processed_at is None:
            return (0, 0.0)
        return (1, t.processed_at - t.started_at)

    keys: dict[TaskSort, Callable[[Task], Any]] = {
        TaskSort.CREATED: lambda t: 0,
        TaskSort.STARTED: lambda t: time_or_absent(t.started_at),
        TaskSort.FINISHED: lambda t: time_or_absent(t.processed_at),
        TaskSort.DURATION: duration,
        TaskSort.ATTEMPTS: lambda t: t.attempts,
        TaskSort.ACTION: lambda t: t.action,
        TaskSort.STATUS: lambda t: str(t.status.value),
        TaskSort.PRIORITY: lambda t: t.priority,
    }
    key = keys[query.sort]
    ordered = sorted(tasks.values(), key=lambda t: (key(t), t.seq), reverse=query.descending)
    return ids(ordered)


class TestStoreContract:
    # -- adding ------------------------------------------------------------------------------

    def test_add_stores_a_queued_task_that_another_store_sees(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        task = add(store, "uppercase", '{"text":"a"}', 3, NOW)
        assert (task.status, task.attempts, task.max_attempts, task.data, task.created_at) == (
            QUEUED, 0, 3, {"text": "a"}, NOW)
        assert task.started_at is None and task.result is None and task.error is None
        seen = open_store().get(task.id)
        assert seen == task

    def test_add_many_stores_copies_in_order(self, store: TaskStore) -> None:
        added = store.add_many(NewTask("b", '{"x":1}', 2, priority=5), 3, NOW)
        assert len(set(added)) == 3
        listed = store.page(TaskQuery(), 10)
        assert ids(listed) == added[::-1]
        assert all((t.action, t.data, t.max_attempts, t.status, t.priority, t.run_after) ==
                   ("b", {"x": 1}, 2, QUEUED, 5, NOW) for t in listed)
        assert store.add_many(NewTask("b", "{}", 2), 0, NOW) == []

    def test_times_are_kept_as_stored_time_gives_them(self, store: TaskStore) -> None:
        when = 1_764_300_000.123456789
        task = add(store, "x", "{}", 3, when)
        assert task.created_at == stored_time(when)
        assert store.get(task.id) == task

    # -- claiming and finishing --------------------------------------------------------------

    def test_claim_takes_due_tasks_oldest_first_and_counts_an_attempt(
        self, store: TaskStore
    ) -> None:
        added = store.add_many(NewTask("x", "{}", 3), 5, NOW)
        first = claim(store, 2, NOW + 1)
        assert ids(first) == added[:2]
        assert all((t.status, t.attempts, t.started_at) == (TaskStatus.RUNNING, 1, NOW + 1)
                   for t in first)
        assert ids(claim(store, 10, NOW + 2)) == added[2:]
        assert claim(store, 10, NOW + 3) == []

    def test_claim_skips_tasks_not_due_and_next_due_says_when(self, store: TaskStore) -> None:
        task = add(store, "x", "{}", 3, NOW)
        [running] = claim(store)
        assert finish(store, running, QUEUED, "boom", NOW + 5) is not None
        assert store.next_due(NOW) == NOW + 5
        assert claim(store, 1, NOW + 4) == []
        assert store.next_due(NOW + 5) is None  # due already: nothing waits beyond it
        [again] = claim(store, 1, NOW + 5)
        assert (again.id, again.attempts, again.error) == (task.id, 2, "boom")

    def test_finish_completed_failed_or_queued_again(self, store: TaskStore) -> None:
        store.add_many(NewTask("x", "{}", 3), 3, NOW)
        ra, rb, rc = claim(store, 3, NOW + 1)
        done = store.settle([
            Finish(ra.id, 1, TaskStatus.COMPLETED, '{"output":1}', NOW + 3),
            Finish(rb.id, 1, TaskStatus.FAILED, "ValueError: no", NOW + 3),
            Finish(rc.id, 1, TaskStatus.QUEUED, "again", NOW + 9),
        ], 0, NOW + 3).finished
        assert [t.status if t else None for t in done] == [COMPLETED, FAILED, QUEUED]
        da, db, dc = done
        assert da is not None and (da.result, da.error, da.processed_at, da.duration) == (
            {"output": 1}, None, NOW + 3, 2.0)
        assert db is not None and (db.error, db.processed_at) == ("ValueError: no", NOW + 3)
        assert dc is not None and (dc.error, dc.run_after, dc.processed_at) == (
            "again", NOW + 9, None)

    def test_finish_is_fenced_by_status_and_attempt(self, store: TaskStore) -> None:
        add(store, "x", "{}", 3, NOW)
        [first] = claim(store)
        assert finish(store, first, QUEUED, "e", NOW) is not None
        [second] = claim(store)
        assert second.attempts == 2
        # The first attempt's late outcome changes nothing, nor does a second finish.
        assert finish(store, first, COMPLETED, '"late"', NOW + 1) is None
        assert finish(store, second, COMPLETED, '"ok"', NOW + 2) is not None
        assert finish(store, second, FAILED, "e", NOW + 3) is None
        stored = store.get(second.id)
        assert stored is not None and (stored.status, stored.result) == (COMPLETED, "ok")

    def test_outcomes_and_the_next_claim_share_one_settle(self, store: TaskStore) -> None:
        a = add(store, "x", "{}", 3, NOW)
        b = add(store, "x", "{}", 3, NOW)
        [ra] = claim(store)
        settled = store.settle([Finish(a.id, ra.attempts, TaskStatus.COMPLETED, "1", NOW)], 5, NOW)
        assert [t.status if t else None for t in settled.finished] == [COMPLETED]
        assert ids(settled.claimed) == [b.id]

    def test_two_stores_claiming_at_once_never_take_the_same_task(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        added = store.add_many(NewTask("x", "{}", 3), 300, NOW)
        taken: dict[int, list[str]] = {0: [], 1: []}
        barrier = threading.Barrier(2)
        others = [open_store(), open_store()]

        def run(k: int) -> None:
            barrier.wait()
            while batch := claim(others[k], 7):
                taken[k].extend(ids(batch))

        threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken[0] + taken[1]) == sorted(added)
        assert not set(taken[0]) & set(taken[1])

    def test_cancel_racing_claim_has_exactly_one_winner(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        added = store.add_many(NewTask("x", "{}", 3), 200, NOW)
        won: dict[str, list[str]] = {"claim": [], "cancel": []}
        barrier = threading.Barrier(2)
        claimer, canceller = open_store(), open_store()

        def claim_all() -> None:
            barrier.wait()
            while batch := claim(claimer, 3):
                won["claim"].extend(ids(batch))

        def cancel_all() -> None:
            barrier.wait()
            for task_id in added:
                changed = canceller.cancel_many([task_id], NOW)
                won["cancel"].extend(t.id for t in changed if t.status == TaskStatus.CANCELLED)

        threads = [threading.Thread(target=claim_all), threading.Thread(target=cancel_all)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed, cancelled = set(won["claim"]), set(won["cancel"])
        assert claimed | cancelled == set(added) and not claimed & cancelled
        counts = store.counts()
        assert (counts[TaskStatus.RUNNING], counts[TaskStatus.CANCELLED]) == (
            len(claimed), len(cancelled))
        # The claimed ones the canceller reached after the claim were asked to stop instead.
        asked = store.page(TaskQuery(status=TaskStatus.RUNNING), 1000)
        assert all(t.cancel_requested for t in asked)

    # -- releasing, cancelling, retrying -----------------------------------------------------

    def test_release_gives_the_attempt_back_and_is_fenced(self, store: TaskStore) -> None:
        task = add(store, "x", "{}", 3, NOW)
        [running] = claim(store)
        released = store.release(task.id, running.attempts, NOW + 7, "cannot store outcome")
        assert released is not None
        assert (released.status, released.attempts, released.started_at, released.run_after,
                released.error) == (QUEUED, 0, None, NOW + 7, "cannot store outcome")
        assert store.release(task.id, running.attempts, NOW, None) is None  # not running
        [again] = claim(store, 1, NOW + 7)
        kept = store.release(task.id, again.attempts, NOW + 8, None)
        assert kept is not None and kept.error == "cannot store outcome"  # None keeps it

    def test_cancel_and_retry_change_only_tasks_whose_status_allows_it(
        self, store: TaskStore
    ) -> None:
        done = add(store)
        [done_running] = claim(store)
        finish(store, done_running, COMPLETED, "1", NOW)
        added = store.add_many(NewTask("x", "{}", 3), 4, NOW)
        [running] = claim(store)  # the oldest is running now
        for status in STATUSES:
            assert status.can_cancel == (status in (QUEUED, TaskStatus.RUNNING))
            assert status.can_retry == (status in (FAILED, TaskStatus.CANCELLED))
        changed = store.cancel_many([*added, done.id, "no-such-id"], NOW + 1)
        assert sorted(ids(changed)) == sorted(added)
        by_id = {t.id: t for t in changed}
        assert all((by_id[i].status, by_id[i].processed_at) == (TaskStatus.CANCELLED, NOW + 1)
                   for i in added[1:])
        # The running one is asked to stop: still running until its attempt ends.
        assert (by_id[running.id].status, by_id[running.id].cancel_requested) == (
            TaskStatus.RUNNING, True)
        assert store.cancel_many([running.id], NOW + 2) == []  # asked once is enough
        assert claim(store, 10) == []  # a cancelled task is never claimed
        retried = store.retry_many(added[:3], NOW + 3)
        assert sorted(ids(retried)) == sorted(added[1:3])
        assert all((t.status, t.attempts, t.error, t.processed_at, t.run_after) ==
                   (QUEUED, 0, None, None, NOW + 3) for t in retried)
        assert store.counts() == {QUEUED: 2, TaskStatus.RUNNING: 1, COMPLETED: 1, FAILED: 0,
                                  TaskStatus.CANCELLED: 1}
        assert store.cancel_many([], NOW) == [] and store.retry_many([], NOW) == []

    def test_a_running_task_asked_to_stop_ends_cancelled_whatever_its_outcome(
        self, store: TaskStore
    ) -> None:
        store.add_many(NewTask("x", "{}", 3), 4, NOW)
        a, b, c, d = claim(store, 4)
        store.cancel_many([a.id, b.id, c.id, d.id], NOW + 1)
        done = store.settle([
            Finish(a.id, 1, TaskStatus.COMPLETED, '"late"', NOW + 2),
            Finish(b.id, 1, TaskStatus.FAILED, "ActionCancelled: stopped", NOW + 2),
            Finish(c.id, 1, TaskStatus.QUEUED, "would retry", NOW + 9),
        ], 0, NOW + 2).finished
        for task in done:
            assert task is not None
            assert (task.status, task.result, task.processed_at) == (
                TaskStatus.CANCELLED, None, NOW + 2)
            assert task.error is not None and task.error.startswith("cancelled while running")
        released = store.release(d.id, 1, NOW + 3, None)
        assert released is not None and released.status == TaskStatus.CANCELLED
        assert store.counts()[TaskStatus.CANCELLED] == 4

    def test_retry_gives_a_failed_task_fresh_attempts(self, store: TaskStore) -> None:
        add(store, "x", "{}", 1, NOW)
        [running] = claim(store)
        failed = finish(store, running, FAILED, "boom", NOW + 1)
        assert failed is not None and failed.status == FAILED
        [retried] = store.retry_many([running.id], NOW)
        assert (retried.status, retried.attempts, retried.error, retried.result) == (
            QUEUED, 0, None, None)
        assert claim(store)[0].attempts == 1

    def test_shift_retry_times_moves_only_pending_retries(self, store: TaskStore) -> None:
        due = add(store, "x", "{}", 3, NOW)
        add(store, "x", "{}", 3, NOW)
        [_, later] = claim(store, 2)
        finish(store, later, QUEUED, "e", NOW + 100)
        assert store.shift_retry_times(-60, NOW) == 1
        assert store.next_due(NOW) == NOW + 40
        assert store.get(due.id) is not None

    def test_recover_requeues_running_tasks_and_fails_exhausted_ones(
        self, store: TaskStore
    ) -> None:
        fresh = add(store, "x", "{}", 3, NOW)
        last_try = add(store, "x", "{}", 1, NOW)
        claim(store, 2)
        assert store.recover(NOW + 1) == 2
        a, b = store.get(fresh.id), store.get(last_try.id)
        assert a is not None and (a.status, a.attempts) == (QUEUED, 1)
        assert b is not None and b.status == FAILED and b.processed_at == NOW + 1
        assert b.error is not None and "interrupted" in b.error
        assert store.recover(NOW + 2) == 0

    # -- reading -----------------------------------------------------------------------------

    def test_get_unknown_is_none(self, store: TaskStore) -> None:
        assert store.get("no-such-id") is None

    def test_ids_no_task_can_have_find_nothing_and_change_nothing(self, store: TaskStore
                                                                  ) -> None:
        task = add(store)
        odd = ["a\x00b", "\x00", "é😀"]
        assert [store.get(i) for i in odd] == [None, None, None]
        assert store.page(TaskQuery(ids=[*odd, task.id]), 10) == [task]
        assert store.cancel_many(odd, NOW) == [] and store.retry_many(odd, NOW) == []
        assert store.delete_many(odd) == []
        with pytest.raises(UnknownTasksError):
            store.add(NewTask("x", "{}", 3, after=("a\x00b",)), NOW)

    def test_pages_newest_first_with_filters_search_ids_and_cursor(
        self, store: TaskStore
    ) -> None:
        added = add_all(store, [("uppercase", "{}"), ("sum", "{}")] * 5, 3, NOW)
        store.cancel_many([added[0]], NOW)
        newest = added[::-1]
        assert ids(store.page(TaskQuery(), 3)) == newest[:3]
        page = store.page(TaskQuery(), 4)
        assert ids(store.page(TaskQuery(), 4, after=page[-1])) == newest[4:8]
        assert ids(store.page(TaskQuery(action="sum"), 100)) == added[1::2][::-1]
        assert ids(store.page(TaskQuery(status=TaskStatus.CANCELLED), 100)) == [added[0]]
        assert ids(store.page(TaskQuery(search=added[3][:8]), 100)) == [added[3]]
        assert ids(store.page(TaskQuery(search="PER"), 100)) == added[0::2][::-1]
        assert ids(store.page(TaskQuery(ids=[added[2], added[5], "nope"]), 100)) == [
            added[5], added[2]]
        cancelled_search = TaskQuery(status=TaskStatus.CANCELLED, search="upper")
        assert ids(store.page(cancelled_search, 100)) == [added[0]]

    def test_search_is_literal_and_ignores_ascii_case_only(self, store: TaskStore) -> None:
        add(store, "a_b%c", "{}", 3, NOW)
        add(store, "axbyc", "{}", 3, NOW)
        add(store, "ÉCLAIR", "{}", 3, NOW)
        assert [t.action for t in store.page(TaskQuery(search="_b%"), 10)] == ["a_b%c"]
        assert [t.action for t in store.page(TaskQuery(search="A_B"), 10)] == ["a_b%c"]
        assert [t.action for t in store.page(TaskQuery(search="éclair"), 10)] == []
        assert [t.action for t in store.page(TaskQuery(search="ÉCL"), 10)] == ["ÉCLAIR"]

    def test_counts_follow_every_transition(self, store: TaskStore) -> None:
        a = add(store, "x", "{}", 1, NOW)
        b = add(store, "x", "{}", 1, NOW)
        [running] = claim(store)
        store.cancel_many([b.id], NOW)
        assert store.counts() == {QUEUED: 0, TaskStatus.RUNNING: 1, COMPLETED: 0, FAILED: 0,
                                  TaskStatus.CANCELLED: 1}
        finish(store, running, FAILED, "e", NOW)
        store.retry_many([b.id], NOW)
        assert store.counts() == {QUEUED: 1, TaskStatus.RUNNING: 0, COMPLETED: 0, FAILED: 1,
                                  TaskStatus.CANCELLED: 0}
        assert a.id == running.id

    def test_count_and_count_by_status(self, store: TaskStore) -> None:
        added = add_all(store, [("uppercase", "{}"), ("sum", "{}")] * 5, 3, NOW)
        store.cancel_many([added[0]], NOW)
        assert store.count(TaskQuery()) == 10
        assert store.count(TaskQuery(status=QUEUED)) == 9
        assert store.count(TaskQuery(action="sum")) == 5
        assert store.count(TaskQuery(status=QUEUED, action="uppercase")) == 4
        assert store.count(TaskQuery(search=added[3][:8])) == 1
        assert store.count(TaskQuery(search="upper")) == 5
        by_status = store.count_by_status("upper")
        assert (by_status[TaskStatus.CANCELLED], by_status[QUEUED]) == (1, 4)
        assert store.count_by_status() == store.counts()

    def test_list_json_is_page_as_to_json_by_offset(self, store: TaskStore) -> None:
        odd = "é😀\u2028\x7f \"q\" \\ \t\n\x00\x1f end"
        for i, when in enumerate([NOW, NOW + 0.5, NOW + 0.123456789, 1_764_300_000.40606]):
            add(store, f"act {odd}", f'{{"i":{i},"s":"x\\u0000y","n":[1.5e300,-0.0]}}', 3, when)
        [a, b] = claim(store, 2, NOW + 0.1)
        finish(store, a, COMPLETED, '{"output":"ÉÉ","big":123456789012345678901234567890}',
               NOW + 0.2)
        finish(store, b, FAILED, f"ValueError: {odd}", NOW + 0.3)
        for query, limit, offset in ((TaskQuery(), 100, 0), (TaskQuery(), 2, 1),
                                     (TaskQuery(status=FAILED), 10, 0),
                                     (TaskQuery(status=TaskStatus.RUNNING), 10, 0)):
            everything = store.page(query, 1000)
            expected = everything[offset:offset + limit]
            text, count = store.list_json(query, limit, offset)
            assert (text, count) == (",".join(t.to_json() for t in expected), len(expected))
            assert json.loads(f"[{text}]") == [t.to_dict() for t in expected]

    def test_counts_and_problem_on_an_empty_store(self, store: TaskStore) -> None:
        assert store.counts() == dict.fromkeys(STATUSES, 0)
        assert store.next_due(NOW) is None
        assert store.problem is None and store.damage is None


class TestOrderAndDependencies:
    def test_higher_priority_runs_first_then_oldest_first(self, store: TaskStore) -> None:
        low = add(store, priority=-5)
        mid = [add(store) for _ in range(2)]
        high = add(store, priority=100)
        # One at a time: which tasks a claim takes, not only the order a batch comes back in.
        assert [ids(claim(store))[0] for _ in range(4)] == [high.id, *ids(mid), low.id]
        low = add(store, priority=-5)
        mid = [add(store) for _ in range(2)]
        high = add(store, priority=100)
        assert ids(claim(store, 2)) == [high.id, mid[0].id]
        assert ids(claim(store, 10)) == [mid[1].id, low.id]

    def test_a_delayed_task_waits_for_its_time(self, store: TaskStore) -> None:
        later = add(store, run_after=NOW + 60)
        assert later.run_after == NOW + 60 and later.status == QUEUED
        now_task = add(store)
        assert ids(claim(store, 10, NOW)) == [now_task.id]
        assert store.next_due(NOW) == NOW + 60
        scheduled = TaskQuery(scheduled_after=NOW)
        assert ids(store.page(scheduled, 10)) == [later.id] and store.count(scheduled) == 1
        assert ids(claim(store, 10, NOW + 60)) == [later.id]
        assert store.count(scheduled) == 0

    def test_a_dependent_runs_once_all_it_waits_for_completed(self, store: TaskStore) -> None:
        a, b = add(store), add(store)
        c = add(store, after=(a.id, b.id, a.id))
        assert (c.after, c.waiting) == ((a.id, b.id), 2)
        ra, rb = claim(store, 2)
        assert claim(store, 5) == []  # c waits
        settled = store.settle([Finish(ra.id, 1, TaskStatus.COMPLETED, "1", NOW)], 5, NOW)
        assert settled.claimed == [] and [t.waiting for t in settled.cascaded] == [1]
        settled = store.settle([Finish(rb.id, 1, TaskStatus.COMPLETED, "2", NOW)], 5, NOW)
        assert [t.waiting for t in settled.cascaded] == [0]
        assert ids(settled.claimed) == [c.id]
        # Waiting for tasks completed already: ready at once.
        assert add(store, after=(a.id,)).waiting == 0

    def test_a_failed_or_cancelled_task_cancels_its_dependents_down_the_chain(
        self, store: TaskStore
    ) -> None:
        a = add(store, attempts=1)
        b = add(store, after=(a.id,))
        c = add(store, after=(b.id,))
        other = add(store)
        [ra] = claim(store)
        settled = store.settle([Finish(ra.id, 1, TaskStatus.FAILED, "boom", NOW + 1)], 0, NOW + 1)
        cancelled = {t.id: t for t in settled.cascaded}
        assert set(cancelled) == {b.id, c.id}
        assert cancelled[b.id].error == f"cancelled: task {a.id}, which it waits for, failed"
        assert cancelled[c.id].error == (
            f"cancelled: task {b.id}, which it waits for, was cancelled")
        assert all(t.status == TaskStatus.CANCELLED and t.processed_at == NOW + 1
                   for t in cancelled.values())
        d = add(store, after=(other.id,))
        changed = store.cancel_many([other.id], NOW + 2)
        assert {t.id: t.status for t in changed} == {other.id: TaskStatus.CANCELLED,
                                                     d.id: TaskStatus.CANCELLED}
        # Waiting for a task failed already: cancelled at once, the error naming it.
        late = add(store, after=(a.id,))
        assert late.status == TaskStatus.CANCELLED and late.error is not None
        assert a.id in late.error

    def test_retry_of_a_dependent_waits_until_what_it_waits_for_is_retried(
        self, store: TaskStore
    ) -> None:
        a = add(store, attempts=1)
        b = add(store, after=(a.id,))
        [ra] = claim(store)
        finish(store, ra, FAILED, "boom", NOW)
        assert store.retry_many([b.id], NOW) == []  # a is still failed
        assert ids(store.retry_many([a.id], NOW)) == [a.id]
        [rb] = store.retry_many([b.id], NOW)
        assert (rb.status, rb.waiting) == (QUEUED, 1)

    def test_listings_by_priority_highest_first_then_newest(self, store: TaskStore) -> None:
        priorities = [0, 5, -3, 5, 0, 100, -100, 5, 0]
        added = [add(store, priority=p) for p in priorities]
        store.cancel_many([added[3].id, added[4].id], NOW)
        expected = [t.id for t in sorted(added, key=lambda t: (-t.priority, -t.seq))]
        by_priority = TaskQuery(sort=TaskSort.PRIORITY)
        assert ids(store.page(by_priority, 100)) == expected
        assert ids(store.page(TaskQuery(), 100)) == ids(added)[::-1]  # newest is the default
        # Paging by cursor goes on in the same order, across equal priorities too.
        seen: list[str] = []
        cursor = None
        while page := store.page(by_priority, 2, cursor):
            seen += ids(page)
            cursor = page[-1]
        assert seen == expected
        # With filters; list_json in the same order by offset; counts ignore the order.
        queued = TaskQuery(status=QUEUED, sort=TaskSort.PRIORITY)
        assert ids(store.page(queued, 100)) == [
            i for i in expected if i not in (added[3].id, added[4].id)]
        text, count = store.list_json(by_priority, 4, 2)
        assert [t["id"] for t in json.loads(f"[{text}]")] == expected[2:6] and count == 4
        assert store.count(queued) == 7 and store.count(by_priority) == 9

    def test_listings_by_every_column_both_ways_with_ties_and_absent_times(
        self, store: TaskStore
    ) -> None:
        tasks = self.tasks_in_every_state(store)
        for sort in TaskSort:
            for descending in (False, True):
                query = TaskQuery(sort=sort, descending=descending)
                expected = expected_order(tasks, query)
                assert ids(store.page(query, 100)) == expected, query
                # Page by page, across ties and the absent times, the same order.
                assert ids(all_pages(store, query, 2)) == expected, query
                # The API's listing by offset in the same order.
                text, count = store.list_json(query, 3, 4)
                assert [t["id"] for t in json.loads(f"[{text}]")] == expected[4:7], query
                assert count == 3
                # With a filter, the order of what matches.
                for status in (COMPLETED, QUEUED):
                    filtered = TaskQuery(status=status, sort=sort, descending=descending)
                    assert ids(all_pages(store, filtered, 2)) == [
                        i for i in expected if tasks[i].status == status], filtered
                by_action = TaskQuery(action="b", sort=sort, descending=descending)
                assert ids(all_pages(store, by_action, 2)) == [
                    i for i in expected if tasks[i].action == "b"], by_action

    @staticmethod
    def tasks_in_every_state(store: TaskStore) -> dict[str, Task]:
        """Tasks queued (never started), running, completed with durations that tie and
        differ, failed, and cancelled while queued (finished, never started), with equal
        actions and attempts; by id, as stored now."""
        actions = ["b", "a", "b", "c", "a", "b", "b", "a", "c", "b", "a", "b"]
        added = [add(store, action, attempts=2, now=NOW + i) for i, action in enumerate(actions)]
        # Claimed oldest first: the first five run, at times that tie for two of them.
        for i, when in enumerate([NOW + 20, NOW + 20, NOW + 21, NOW + 22, NOW + 23]):
            [claimed] = claim(store, 1, when)
            assert claimed.id == added[i].id
        durations = {0: 5.0, 1: 5.0, 2: 0.25}  # two equal durations, one short
        for i, seconds in durations.items():
            task = store.get(added[i].id)
            assert task is not None and task.started_at is not None
            finish(store, task, COMPLETED, "{}", task.started_at + seconds)
        running = store.get(added[3].id)
        assert running is not None
        # Failed once, queued again, then claimed again and failed for good: two attempts.
        finish(store, running, QUEUED, "boom", NOW + 24)
        [again] = claim(store, 1, NOW + 30)
        assert again.id == running.id and again.attempts == 2
        finish(store, again, FAILED, "boom", NOW + 31)
        store.cancel_many([added[6].id, added[7].id], NOW + 40)  # finished, never started
        tasks = {t.id: t for t in store.page(TaskQuery(), 100)}
        assert {t.status for t in tasks.values()} == set(STATUSES)
        return tasks

    def test_paging_goes_on_from_a_cursor_task_that_changed_or_was_deleted(
        self, store: TaskStore
    ) -> None:
        added = [add(store, attempts=1, now=NOW + i) for i in range(6)]
        for task in claim(store, 6, NOW + 10):
            finish(store, task, FAILED, "boom", NOW + 20 + task.seq % 7)
        query = TaskQuery(sort=TaskSort.FINISHED)
        expected = ids(store.page(query, 10))
        first = store.page(query, 3)
        [deleted] = store.delete_many([first[-1].id])
        assert ids(store.page(query, 10, after=deleted)) == expected[3:]
        # A cursor task that has moved since (queued again: no finish time, so last when
        # newest finished come first): the listing goes on from where it was.
        [retried] = store.retry_many([first[0].id], NOW + 50)
        assert ids(store.page(query, 10, after=first[0])) == [
            i for i in expected[1:] if i != deleted.id] + [retried.id]
        assert len(added) == 6

    def test_unknown_tasks_to_wait_for_are_refused_and_nothing_is_stored(
        self, store: TaskStore
    ) -> None:
        a = add(store)
        with pytest.raises(UnknownTasksError) as info:
            store.add(NewTask("x", "{}", 3, after=(a.id, "nope-1", "nope-2")), NOW)
        assert info.value.task_ids == ["nope-1", "nope-2"]
        with pytest.raises(UnknownTasksError):
            store.add_many(NewTask("x", "{}", 3, after=("nope",)), 5, NOW)
        assert store.count(TaskQuery()) == 1

    def test_an_idempotency_key_stores_one_task_per_request(self, store: TaskStore) -> None:
        first = store.add(NewTask("x", "{}", 3, idempotency_key="k1", request_hash="h"), NOW)
        again = store.add(NewTask("x", "{}", 3, idempotency_key="k1", request_hash="h"), NOW)
        assert first.created and not again.created and again.task.id == first.task.id
        with pytest.raises(IdempotencyConflictError) as info:
            store.add(NewTask("y", "{}", 3, idempotency_key="k1", request_hash="other"), NOW)
        assert info.value.task_id == first.task.id
        assert store.count(TaskQuery()) == 1
        # Kept only as long as the task: deleted, the key is free again.
        [running] = claim(store)
        finish(store, running, COMPLETED, "1", NOW)
        assert ids(store.delete_many([first.task.id])) == [first.task.id]
        assert store.add(NewTask("x", "{}", 3, idempotency_key="k1", request_hash="h"),
                         NOW).created

    def test_purge_frees_idempotency_keys_and_keeps_dependents_retryable(
        self, store: TaskStore
    ) -> None:
        a = add(store, attempts=1, idempotency_key="a-key", request_hash="h")
        b = add(store, after=(a.id,), idempotency_key="b-key", request_hash="h")
        [ra] = claim(store)
        finish(store, ra, COMPLETED, "1", NOW)
        [rb] = claim(store)
        finish(store, rb, FAILED, "boom", NOW + 1)
        assert ids(store.purge(NOW + 0.5, 0.0, 10)) == [a.id]  # b is kept: failed, not old
        assert store.add(NewTask("x", "{}", 3, idempotency_key="a-key", request_hash="h"),
                         NOW + 2).created
        # b waited for a, which completed and is gone: retried, it is ready at once.
        [retried] = store.retry_many([b.id], NOW + 3)
        assert (retried.status, retried.waiting) == (QUEUED, 0)
        assert b.id in ids(claim(store, 5, NOW + 3))

    def test_concurrent_adds_with_one_key_store_one_task(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        barrier = threading.Barrier(8)
        results: list[tuple[str, bool]] = []
        lock = threading.Lock()
        stores = [open_store() for _ in range(8)]

        def run(own: TaskStore) -> None:
            barrier.wait()
            added = own.add(NewTask("x", "{}", 3, idempotency_key="race", request_hash="h"), NOW)
            with lock:
                results.append((added.task.id, added.created))

        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({task_id for task_id, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        assert store.count(TaskQuery()) == 1


class TestTheQueueAndItsUpkeep:
    def test_a_paused_queue_claims_nothing_for_anyone_until_resumed(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        add(store)
        other = open_store()
        assert not other.paused()
        store.set_paused(True)
        assert other.paused() and claim(other) == []
        store.set_paused(False)
        assert len(claim(other)) == 1

    def test_progress_is_kept_for_the_running_attempt_only(self, store: TaskStore) -> None:
        add(store)
        [running] = claim(store)
        [updated] = store.set_progress([Progress(running.id, 1, 0.25, "a quarter")])
        assert (updated.progress, updated.progress_message) == (0.25, "a quarter")
        assert store.set_progress([Progress(running.id, 2, 0.5, None)]) == []  # another attempt
        finish(store, running, QUEUED, "again", NOW)
        assert store.set_progress([Progress(running.id, 1, 0.9, None)]) == []  # not running
        [again] = claim(store)
        assert (again.progress, again.progress_message) == (None, None)  # a new attempt
        assert store.set_progress([]) == []

    def test_delete_removes_finished_tasks_only_with_their_logs(self, store: TaskStore) -> None:
        done, queued = add(store), add(store)
        [running] = claim(store)
        store.append_log(done.id, b"output\n")
        finish(store, running, COMPLETED, "1", NOW)
        assert ids(store.delete_many([done.id, queued.id, "nope"])) == [done.id]
        assert store.get(done.id) is None and store.get(queued.id) is not None
        assert store.read_log(done.id, 0, 100).data == b""
        assert store.counts()[COMPLETED] == 0

    def test_purge_deletes_old_finished_tasks_by_status_oldest_first(
        self, store: TaskStore
    ) -> None:
        tasks = [add(store, attempts=1) for _ in range(6)]
        running = claim(store, 6)
        outcomes = [COMPLETED, COMPLETED, COMPLETED, FAILED, FAILED, QUEUED]
        for i, (task, status) in enumerate(zip(running, outcomes, strict=True)):
            if status != QUEUED:
                finish(store, task, status, "x", NOW + i)
        store.cancel_many([tasks[5].id], NOW + 10)  # running: ends cancelled when it finishes
        finish(store, running[5], COMPLETED, "1", NOW + 10)
        # completed before NOW + 2: tasks 0 and 1; failed/cancelled before NOW + 4: task 3.
        assert ids(store.purge(NOW + 2, NOW + 4, 1)) == [tasks[0].id]  # the limit
        assert sorted(ids(store.purge(NOW + 2, NOW + 4, 100))) == sorted(
            [tasks[1].id, tasks[3].id])
        assert store.purge(NOW + 2, NOW + 4, 100) == []
        assert sorted(ids(store.purge(NOW + 100, NOW + 100, 100))) == sorted(
            [tasks[2].id, tasks[4].id, tasks[5].id])
        assert store.count(TaskQuery()) == 0

    def test_schedule_state_is_kept(self, store: TaskStore, open_store: StoreFactory) -> None:
        assert store.schedule_states() == {}
        store.record_firing("nightly", NOW, "t1")
        store.record_firing("nightly", NOW - 60, "t0")  # an older firing recorded late
        store.set_schedule_paused("nightly", True)
        store.set_schedule_paused("hourly", True)
        states = open_store().schedule_states()
        assert states["nightly"] == ScheduleState("nightly", True, NOW, "t1")
        assert states["hourly"] == ScheduleState("hourly", True, None, None)
        store.set_schedule_paused("hourly", False)
        assert not store.schedule_states()["hourly"].paused

    def test_logs_append_and_read_by_offset(self, store: TaskStore) -> None:
        task = add(store)
        assert store.read_log(task.id, 0, 100) == LogSlice(b"", 0, 0)
        store.append_log(task.id, b"hello ")
        store.append_log(task.id, b"\xff\xfeworld\n")
        assert store.read_log(task.id, 0, 100) == LogSlice(b"hello \xff\xfeworld\n", 0, 14)
        assert store.read_log(task.id, 6, 3) == LogSlice(b"\xff\xfew", 6, 9)
        assert store.read_log(task.id, 14, 100) == LogSlice(b"", 14, 14)
