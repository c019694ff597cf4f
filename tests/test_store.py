"""TaskStore: every transition is one conditional statement with exactly one winner."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from storage import DatabaseDamagedError, TaskStore

NOW = 1_800_000_000.0


def test_add_stores_queued_task_that_other_connections_see(store: TaskStore, db_path: Path) -> None:
    task = store.add("uppercase", '{"text":"a"}', 3, NOW)
    assert (task.status, task.attempts, task.max_attempts, task.data) == ("queued", 0, 3,
                                                                          {"text": "a"})
    other = TaskStore(db_path)
    try:
        seen = other.get(task.id)
        assert seen is not None and seen.status == "queued"
    finally:
        other.close()


def test_full_life_queued_running_completed(store: TaskStore) -> None:
    task = store.add("x", "{}", 3, NOW)
    running = store.claim(task.id, NOW + 1)
    assert running is not None
    assert (running.status, running.attempts, running.started_at) == ("running", 1, NOW + 1)
    assert store.claim(task.id, NOW + 2) is None  # already claimed
    done = store.complete(task.id, '{"output":"processed"}', NOW + 3)
    assert done is not None
    assert (done.status, done.result, done.processed_at, done.duration) == (
        "completed", {"output": "processed"}, NOW + 3, 2.0)
    assert store.complete(task.id, "{}", NOW + 4) is None  # completes once
    assert store.counts()["completed"] == 1


def test_requeue_then_fail(store: TaskStore) -> None:
    task = store.add("x", "{}", 2, NOW)
    store.claim(task.id, NOW)
    again = store.requeue(task.id, "boom", NOW + 5)
    assert again is not None and (again.status, again.error, again.run_after) == (
        "queued", "boom", NOW + 5)
    assert store.due_ids(NOW + 4, 10) == []
    assert store.due_ids(NOW + 5, 10) == [task.id]
    assert store.next_run_after(NOW) == NOW + 5
    assert store.next_run_after(NOW + 5) is None  # due already: not a pending retry
    store.claim(task.id, NOW + 5)
    failed = store.fail(task.id, "boom again", NOW + 6)
    assert failed is not None and (failed.status, failed.error, failed.attempts) == (
        "failed", "boom again", 2)


def test_cancel_only_queued_and_retry_only_failed_or_cancelled(store: TaskStore) -> None:
    task = store.add("x", "{}", 3, NOW)
    assert store.retry(task.id) is None
    cancelled = store.cancel(task.id, NOW + 1)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert store.cancel(task.id, NOW + 2) is None
    assert store.claim(task.id, NOW + 2) is None  # a cancelled task is never run
    retried = store.retry(task.id)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.error, retried.processed_at) == (
        "queued", 0, None, None)
    store.claim(task.id, NOW + 3)
    assert store.cancel(task.id, NOW + 4) is None  # running cannot be cancelled
    assert store.cancel("no-such-id", NOW) is None


def test_cancel_racing_claim_has_exactly_one_winner(store: TaskStore, db_path: Path) -> None:
    ids = store.add_many([("x", "{}")] * 200, 3, NOW)
    results: dict[str, list[str]] = {"claim": [], "cancel": []}
    barrier = threading.Barrier(2)

    def run(kind: str) -> None:
        own = TaskStore(db_path)
        try:
            barrier.wait()
            for task_id in ids:
                won = own.claim(task_id, NOW) if kind == "claim" else own.cancel(task_id, NOW)
                if won is not None:
                    results[kind].append(task_id)
        finally:
            own.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in ("claim", "cancel")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed, cancelled = set(results["claim"]), set(results["cancel"])
    assert claimed | cancelled == set(ids)
    assert not claimed & cancelled
    counts = store.counts()
    assert (counts["running"], counts["cancelled"]) == (len(claimed), len(cancelled))


def test_recover_running_requeues_and_fails_exhausted(store: TaskStore) -> None:
    fresh = store.add("x", "{}", 3, NOW)
    last_try = store.add("x", "{}", 1, NOW)
    store.claim(fresh.id, NOW)
    store.claim(last_try.id, NOW)
    assert store.recover_running(NOW + 1) == 2
    a, b = store.get(fresh.id), store.get(last_try.id)
    assert a is not None and (a.status, a.attempts) == ("queued", 1)
    assert b is not None and b.status == "failed" and b.error is not None
    assert "interrupted" in b.error
    assert store.recover_running(NOW + 2) == 0


def test_listing_newest_first_with_filters_paging_and_counts(store: TaskStore) -> None:
    ids = store.add_many([("uppercase", "{}"), ("sum", "{}")] * 5, 3, NOW)
    store.cancel(ids[0], NOW)
    assert [t.id for t in store.list_tasks(limit=3)] == ids[::-1][:3]
    assert [t.id for t in store.list_tasks(limit=3, offset=3)] == ids[::-1][3:6]
    page = store.list_tasks(limit=4)
    assert [t.id for t in store.list_tasks(limit=4, before_seq=page[-1].seq)] == ids[::-1][4:8]
    assert [t.id for t in store.list_tasks(action="sum")] == ids[1::2][::-1]
    assert [t.id for t in store.list_tasks(status="cancelled")] == [ids[0]]
    assert store.count() == 10 and store.count("queued") == 9
    assert store.count(action="sum") == 5 and store.count("queued", "uppercase") == 4
    assert store.count(search=ids[3][:8]) == 1 and store.count(search="upper") == 5
    assert store.count_by_status(search="upper")["cancelled"] == 1


def test_status_listing_uses_an_index(store: TaskStore) -> None:
    conn = store._conn()
    plan = " ".join(
        str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE status = 'failed' "
            "ORDER BY seq DESC LIMIT 100"
        )
    )
    assert "USING INDEX tasks_by_status" in plan and "TEMP B-TREE" not in plan
    plan = " ".join(str(row) for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM tasks ORDER BY seq DESC LIMIT 100"))
    assert "TEMP B-TREE" not in plan


def test_counts_follow_every_transition(store: TaskStore) -> None:
    a = store.add("x", "{}", 1, NOW)
    b = store.add("x", "{}", 1, NOW)
    store.claim(a.id, NOW)
    store.cancel(b.id, NOW)
    assert store.counts() == {"queued": 0, "running": 1, "completed": 0, "failed": 0,
                              "cancelled": 1}
    store.fail(a.id, "e", NOW)
    store.retry(b.id)
    assert store.counts() == {"queued": 1, "running": 0, "completed": 0, "failed": 1,
                              "cancelled": 0}


def test_cancel_and_retry_many_change_only_tasks_in_the_right_status(store: TaskStore) -> None:
    ids = store.add_many([("x", "{}")] * 4, 3, NOW)
    store.claim(ids[0], NOW)  # running: cannot be cancelled
    cancelled = store.cancel_many([*ids, "no-such-id"], NOW + 1)
    assert sorted(t.id for t in cancelled) == sorted(ids[1:])
    assert all(t.status == "cancelled" for t in cancelled)
    retried = store.retry_many([ids[0], ids[1], ids[2]])
    assert sorted(t.id for t in retried) == sorted(ids[1:3])
    assert store.counts() == {"queued": 2, "running": 1, "completed": 0, "failed": 0,
                              "cancelled": 1}
    assert store.cancel_many([], NOW) == [] and store.retry_many([]) == []


def test_to_json_is_to_dict_as_text(store: TaskStore) -> None:
    import json

    plain = store.add("uppercase", '{"text":"héllo \\"q\\""}', 3, NOW)
    store.claim(plain.id, NOW + 1)
    done = store.complete(plain.id, '{"output":"HÉLLO \\"Q\\""}', NOW + 2.5)
    failed = store.add("x", "{}", 1, NOW)
    store.claim(failed.id, NOW)
    failed_now = store.fail(failed.id, "ValueError: bad\nline", NOW + 1)
    for task in (plain, done, failed_now):
        assert task is not None
        assert json.loads(task.to_json()) == task.to_dict()


def test_listing_written_by_sqlite_is_to_json_character_for_character(store: TaskStore) -> None:
    times = [NOW, NOW + 0.5, NOW + 0.123456789, 1_764_300_000.40606, 1e-3, 12.0]
    odd = "é😀\u2028\x7f \"q\" \\ \t\n\x00\x1f end"
    for i, when in enumerate(times):
        task = store.add(f"act {odd}", f'{{"i":{i},"s":"x\\u0000y","n":[1.5e300,-0.0]}}', 3, when)
        if i % 3 == 0:
            continue  # queued: no result, no start
        store.claim(task.id, when + 0.1)
        if i % 3 == 1:
            store.complete(task.id, '{"output":"ÉÉ","big":123456789012345678901234567890}',
                           when + 0.2)
        else:
            store.fail(task.id, f"ValueError: {odd}", when + 0.3)
    tasks = store.list_tasks(limit=100)
    assert len(tasks) == len(times)
    assert store.list_json(limit=100) == (",".join(t.to_json() for t in tasks), len(tasks))
    failed = store.list_tasks("failed")
    assert store.list_json("failed") == (",".join(t.to_json() for t in failed), len(failed))
    assert store.list_json("running") == ("", 0)


def test_listing_written_by_sqlite_keeps_the_order_and_the_page(store: TaskStore) -> None:
    store.add_many([("x", f'{{"i":{i}}}') for i in range(1500)], 3, NOW)
    store.cancel_many([t.id for t in store.list_tasks(limit=1500)][::3], NOW)
    for status, limit, offset in ((None, 1000, 0), (None, 100, 1400), ("cancelled", 200, 100),
                                  ("queued", 1000, 0)):
        tasks = store.list_tasks(status, limit=limit, offset=offset)
        assert store.list_json(status, None, limit, offset) == (
            ",".join(t.to_json() for t in tasks), len(tasks))


def test_damage_found_once_is_remembered_and_nothing_more_is_written(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[str] = []
    store.on_damage = told.append
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    malformed.sqlite_errorcode = 11  # type: ignore[attr-defined]  # SQLITE_CORRUPT

    def broken(write: object) -> None:
        raise malformed

    monkeypatch.setattr(store._writer, "execute", broken)
    with pytest.raises(DatabaseDamagedError, match="is damaged: database disk image is malformed"):
        store.add("x", "{}", 3, NOW)
    monkeypatch.undo()
    # The writer works again, but the file is known to be damaged: no write reaches it.
    with pytest.raises(DatabaseDamagedError):
        store.add("x", "{}", 3, NOW)
    assert store.count() == 0  # reads that do not meet the damage go on
    assert told == [store.damage] and store.damage is not None
