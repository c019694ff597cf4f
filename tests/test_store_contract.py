"""The storage contract (storage/contract.py), held to every backend by one test class.

Each backend provides a ``StoreFactory``: a fresh, migrated database per test, and more stores
on that same database (to race two of them). The tests use the contract only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage import (
    STATUSES,
    Finish,
    Task,
    TaskQuery,
    TaskStatus,
    TaskStore,
    stored_time,
)
from storage.sqlite import SqliteTaskStore
from tests.conftest import make_db

NOW = 1_800_000_000.0
COMPLETED, QUEUED, FAILED = TaskStatus.COMPLETED, TaskStatus.QUEUED, TaskStatus.FAILED

StoreFactory = Callable[[], TaskStore]


@pytest.fixture(params=["sqlite"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one fresh database of the backend under test; closes them all."""
    opened: list[TaskStore] = []
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


def claim(store: TaskStore, n: int = 1, now: float = NOW) -> list[Task]:
    return store.settle([], n, now).claimed


def finish(store: TaskStore, task: Task, status: TaskStatus, text: str, when: float
           ) -> Task | None:
    done = Finish(task.id, task.attempts, status, text, when)  # type: ignore[arg-type]
    return store.settle([done], 0, when).finished[0]


def ids(tasks: list[Task]) -> list[str]:
    return [t.id for t in tasks]


class TestStoreContract:
    # -- adding ------------------------------------------------------------------------------

    def test_add_stores_a_queued_task_that_another_store_sees(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        task = store.add("uppercase", '{"text":"a"}', 3, NOW)
        assert (task.status, task.attempts, task.max_attempts, task.data, task.created_at) == (
            QUEUED, 0, 3, {"text": "a"}, NOW)
        assert task.started_at is None and task.result is None and task.error is None
        seen = open_store().get(task.id)
        assert seen == task

    def test_add_many_stores_all_in_order(self, store: TaskStore) -> None:
        added = store.add_many([("a", "{}"), ("b", '{"x":1}'), ("c", "[]")], 2, NOW)
        assert len(set(added)) == 3
        listed = store.page(TaskQuery(), 10)
        assert ids(listed) == added[::-1]
        assert [t.action for t in listed] == ["c", "b", "a"]
        assert all(t.max_attempts == 2 and t.status == QUEUED for t in listed)
        assert store.add_many([], 3, NOW) == []

    def test_times_are_kept_as_stored_time_gives_them(self, store: TaskStore) -> None:
        when = 1_764_300_000.123456789
        task = store.add("x", "{}", 3, when)
        assert task.created_at == stored_time(when)
        assert store.get(task.id) == task

    # -- claiming and finishing --------------------------------------------------------------

    def test_claim_takes_due_tasks_oldest_first_and_counts_an_attempt(
        self, store: TaskStore
    ) -> None:
        added = store.add_many([("x", "{}")] * 5, 3, NOW)
        first = claim(store, 2, NOW + 1)
        assert ids(first) == added[:2]
        assert all((t.status, t.attempts, t.started_at) == (TaskStatus.RUNNING, 1, NOW + 1)
                   for t in first)
        assert ids(claim(store, 10, NOW + 2)) == added[2:]
        assert claim(store, 10, NOW + 3) == []

    def test_claim_skips_tasks_not_due_and_next_due_says_when(self, store: TaskStore) -> None:
        task = store.add("x", "{}", 3, NOW)
        [running] = claim(store)
        assert finish(store, running, QUEUED, "boom", NOW + 5) is not None
        assert store.next_due(NOW) == NOW + 5
        assert claim(store, 1, NOW + 4) == []
        assert store.next_due(NOW + 5) is None  # due already: nothing waits beyond it
        [again] = claim(store, 1, NOW + 5)
        assert (again.id, again.attempts, again.error) == (task.id, 2, "boom")

    def test_finish_completed_failed_or_queued_again(self, store: TaskStore) -> None:
        store.add_many([("x", "{}")] * 3, 3, NOW)
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
        store.add("x", "{}", 3, NOW)
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
        a = store.add("x", "{}", 3, NOW)
        b = store.add("x", "{}", 3, NOW)
        [ra] = claim(store)
        settled = store.settle([Finish(a.id, ra.attempts, TaskStatus.COMPLETED, "1", NOW)], 5, NOW)
        assert [t.status if t else None for t in settled.finished] == [COMPLETED]
        assert ids(settled.claimed) == [b.id]

    def test_two_stores_claiming_at_once_never_take_the_same_task(
        self, store: TaskStore, open_store: StoreFactory
    ) -> None:
        added = store.add_many([("x", "{}")] * 300, 3, NOW)
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
        added = store.add_many([("x", "{}")] * 200, 3, NOW)
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
                won["cancel"].extend(ids(canceller.cancel_many([task_id], NOW)))

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

    # -- releasing, cancelling, retrying -----------------------------------------------------

    def test_release_gives_the_attempt_back_and_is_fenced(self, store: TaskStore) -> None:
        task = store.add("x", "{}", 3, NOW)
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
        added = store.add_many([("x", "{}")] * 4, 3, NOW)
        claim(store)  # the oldest is running now
        for status in STATUSES:
            assert status.can_cancel == (status == QUEUED)
            assert status.can_retry == (status in (FAILED, TaskStatus.CANCELLED))
        cancelled = store.cancel_many([*added, "no-such-id"], NOW + 1)
        assert sorted(ids(cancelled)) == sorted(added[1:])
        assert all((t.status, t.processed_at) == (TaskStatus.CANCELLED, NOW + 1)
                   for t in cancelled)
        assert claim(store, 10) == []  # a cancelled task is never claimed
        retried = store.retry_many(added[:3])
        assert sorted(ids(retried)) == sorted(added[1:3])
        assert all((t.status, t.attempts, t.error, t.processed_at, t.run_after) ==
                   (QUEUED, 0, None, None, 0.0) for t in retried)
        assert store.counts() == {QUEUED: 2, TaskStatus.RUNNING: 1, COMPLETED: 0, FAILED: 0,
                                  TaskStatus.CANCELLED: 1}
        assert store.cancel_many([], NOW) == [] and store.retry_many([]) == []

    def test_retry_gives_a_failed_task_fresh_attempts(self, store: TaskStore) -> None:
        store.add("x", "{}", 1, NOW)
        [running] = claim(store)
        failed = finish(store, running, FAILED, "boom", NOW + 1)
        assert failed is not None and failed.status == FAILED
        [retried] = store.retry_many([running.id])
        assert (retried.status, retried.attempts, retried.error, retried.result) == (
            QUEUED, 0, None, None)
        assert claim(store)[0].attempts == 1

    def test_shift_retry_times_moves_only_pending_retries(self, store: TaskStore) -> None:
        due = store.add("x", "{}", 3, NOW)
        store.add("x", "{}", 3, NOW)
        [_, later] = claim(store, 2)
        finish(store, later, QUEUED, "e", NOW + 100)
        assert store.shift_retry_times(-60, NOW) == 1
        assert store.next_due(NOW) == NOW + 40
        assert store.get(due.id) is not None

    def test_recover_requeues_running_tasks_and_fails_exhausted_ones(
        self, store: TaskStore
    ) -> None:
        fresh = store.add("x", "{}", 3, NOW)
        last_try = store.add("x", "{}", 1, NOW)
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

    def test_pages_newest_first_with_filters_search_ids_and_cursor(
        self, store: TaskStore
    ) -> None:
        added = store.add_many([("uppercase", "{}"), ("sum", "{}")] * 5, 3, NOW)
        store.cancel_many([added[0]], NOW)
        newest = added[::-1]
        assert ids(store.page(TaskQuery(), 3)) == newest[:3]
        page = store.page(TaskQuery(), 4)
        assert ids(store.page(TaskQuery(), 4, before_seq=page[-1].seq)) == newest[4:8]
        assert ids(store.page(TaskQuery(action="sum"), 100)) == added[1::2][::-1]
        assert ids(store.page(TaskQuery(status=TaskStatus.CANCELLED), 100)) == [added[0]]
        assert ids(store.page(TaskQuery(search=added[3][:8]), 100)) == [added[3]]
        assert ids(store.page(TaskQuery(search="PER"), 100)) == added[0::2][::-1]
        assert ids(store.page(TaskQuery(ids=[added[2], added[5], "nope"]), 100)) == [
            added[5], added[2]]
        cancelled_search = TaskQuery(status=TaskStatus.CANCELLED, search="upper")
        assert ids(store.page(cancelled_search, 100)) == [added[0]]

    def test_search_is_literal_and_ignores_ascii_case_only(self, store: TaskStore) -> None:
        store.add("a_b%c", "{}", 3, NOW)
        store.add("axbyc", "{}", 3, NOW)
        store.add("ÉCLAIR", "{}", 3, NOW)
        assert [t.action for t in store.page(TaskQuery(search="_b%"), 10)] == ["a_b%c"]
        assert [t.action for t in store.page(TaskQuery(search="A_B"), 10)] == ["a_b%c"]
        assert [t.action for t in store.page(TaskQuery(search="éclair"), 10)] == []
        assert [t.action for t in store.page(TaskQuery(search="ÉCL"), 10)] == ["ÉCLAIR"]

    def test_counts_follow_every_transition(self, store: TaskStore) -> None:
        a = store.add("x", "{}", 1, NOW)
        b = store.add("x", "{}", 1, NOW)
        [running] = claim(store)
        store.cancel_many([b.id], NOW)
        assert store.counts() == {QUEUED: 0, TaskStatus.RUNNING: 1, COMPLETED: 0, FAILED: 0,
                                  TaskStatus.CANCELLED: 1}
        finish(store, running, FAILED, "e", NOW)
        store.retry_many([b.id])
        assert store.counts() == {QUEUED: 1, TaskStatus.RUNNING: 0, COMPLETED: 0, FAILED: 1,
                                  TaskStatus.CANCELLED: 0}
        assert a.id == running.id

    def test_count_and_count_by_status(self, store: TaskStore) -> None:
        added = store.add_many([("uppercase", "{}"), ("sum", "{}")] * 5, 3, NOW)
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
            store.add(f"act {odd}", f'{{"i":{i},"s":"x\\u0000y","n":[1.5e300,-0.0]}}', 3, when)
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
