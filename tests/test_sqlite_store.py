"""What the SQLite backend does beyond the contract: indexes, damage, opening under the lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from storage import (
    DatabaseDamagedError,
    DatabaseInUseError,
    NewTask,
    Synchronous,
    Task,
    TaskQuery,
    TaskSort,
    TaskStatus,
    open_store,
)
from storage.sqlite import SqliteTaskStore, damage_marker
from tests.conftest import make_db

NOW = 1_800_000_000.0


def plan(store: SqliteTaskStore, sql: str) -> str:
    return " ".join(str(row) for row in store._conn().execute("EXPLAIN QUERY PLAN " + sql))


def test_listings_and_the_claim_use_indexes(store: SqliteTaskStore) -> None:
    by_status = plan(store, "SELECT id FROM tasks WHERE status = 'failed' "
                            "ORDER BY seq DESC LIMIT 100")
    assert "USING INDEX tasks_by_status" in by_status and "TEMP B-TREE" not in by_status
    assert "TEMP B-TREE" not in plan(store, "SELECT id FROM tasks ORDER BY seq DESC LIMIT 100")
    claim = plan(store, store._CLAIM.replace("?", "1"))
    assert "USING INDEX tasks_ready" in claim and "TEMP B-TREE" not in claim
    due = plan(store, store._NEXT_DUE.replace("?", "1"))
    assert "USING INDEX tasks_delayed" in due and "TEMP B-TREE" not in due


def test_only_tasks_not_due_when_stored_are_in_the_index_of_due_times(
    store: SqliteTaskStore,
) -> None:
    # Every submission in an index of due times cost each POST an entry and a page.
    def indexed() -> int:
        [(n,)] = store._conn().execute(
            "SELECT count(*) FROM tasks INDEXED BY tasks_delayed WHERE status = 'queued' "
            "AND waiting = 0 AND run_after > created_at").fetchall()
        return int(n)

    now = 1_000_000.0
    store.add(NewTask("a", "{}", 3), now)
    assert indexed() == 0 and store.next_due(now) is None
    store.add(NewTask("a", "{}", 3, run_after=now + 60), now)
    assert indexed() == 1 and store.next_due(now) == now + 60


def listing_plans(store: SqliteTaskStore, query: TaskQuery, after: Task | None = None
                  ) -> list[str]:
    """The plans of the statements page() runs for *query* (the store's own SQL, recorded
    as it runs; each finds nothing, so that every part of a page is asked for)."""
    ran: list[tuple[str, Sequence[object]]] = []
    read = store._read

    def recording(sql: str, params: Sequence[object] = ()) -> list[Any]:
        ran.append((sql, params))
        return [] if sql.startswith("SELECT seq, id") else read(sql, params)

    store._read = recording  # type: ignore[method-assign]
    try:
        store.page(query, 100, after)
    finally:
        del store._read
    return [" ".join(str(row[3]) for row in store._conn().execute("EXPLAIN QUERY PLAN " + sql,
                                                                   params))
            for sql, params in ran if sql.startswith("SELECT seq, id")]


def test_listings_by_priority_walk_an_index_on_many_tasks(tmp_path: Path) -> None:
    """Sorting by priority reads only the page, however many tasks there are: the plan walks
    an index and sorts nothing (so a million rows cost what these do), for the first page
    and one deep in the listing. (How long it takes is for benchmarks/, not a test.)"""
    store = SqliteTaskStore(make_db(tmp_path / "big.db"))
    conn = store._conn()
    conn.execute("PRAGMA cache_size = -131072")  # building: keep the indexes in memory
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, action, data, status, created_at, run_after, priority) "
        "VALUES (?, 'x', '{}', ?, ?, ?, ?)",
        ((f"t{i}", "completed" if i % 4 else "queued", NOW, NOW, i % 201 - 100)
         for i in range(20_000)))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    try:
        # With a filter, the same index, filtered as it is walked: nothing is sorted, and a
        # page stops once it has its rows.
        for query, index in (
            (TaskQuery(sort=TaskSort.PRIORITY), "tasks_by_priority"),
            (TaskQuery(status=TaskStatus.QUEUED, sort=TaskSort.PRIORITY), "tasks_by_priority"),
        ):
            for cursor in (None, store.page(query, 1)[0]):
                for found in listing_plans(store, query, cursor):
                    assert f"INDEX {index}" in found and "TEMP B-TREE" not in found, found
            page = store.page(query, 100)
            deep = store.page(query, 100, page[-1])
            assert [t.priority for t in page][:1] == [100] and len(deep) == 100
    finally:
        store.close()


SORT_INDEXES = {
    TaskSort.CREATED: "PRIMARY KEY",  # the rowid itself: "SCAN tasks" walks it
    TaskSort.STARTED: "tasks_by_started",
    TaskSort.FINISHED: "tasks_by_finished",
    TaskSort.DURATION: "tasks_by_duration",
    TaskSort.ATTEMPTS: "tasks_by_attempts",
    TaskSort.ACTION: "tasks_by_action",
    TaskSort.STATUS: "tasks_by_status",
    TaskSort.PRIORITY: "tasks_by_priority",
}


PARTIAL_SORTS = {TaskSort.STARTED, TaskSort.FINISHED, TaskSort.DURATION, TaskSort.ATTEMPTS}


def test_every_order_walks_its_index_and_a_cursor_seeks(tmp_path: Path) -> None:
    """Each order, both ways, first page and deep (after a cursor), with no filter and with
    a status most tasks have: the plan walks the order's index and sorts nothing. After a
    cursor, the ties of its value are found by a seek on (value, rowid) and the rest by a
    seek on the value, so a page deep in a million tasks reads only the page. A status few
    tasks have is taken from tasks_by_status and sorted: at most √(page × tasks) rows."""
    store = SqliteTaskStore(make_db(tmp_path / "big.db"))
    conn = store._conn()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, action, data, status, created_at, run_after, priority, "
        "started_at, processed_at, attempts) VALUES (?, ?, '{}', ?, ?, ?, ?, ?, ?, ?)",
        ((f"t{i}", f"a{i % 7}", "failed" if i % 1000 == 0 else "completed" if i % 4 else "queued",
          NOW + i, NOW, i % 5, NOW + i + 1 if i % 4 else None,
          NOW + i + 1 + i % 13 if i % 4 else None, i % 4) for i in range(20_000)))
    conn.execute("COMMIT")
    try:
        # A task deep in every order that has every value (started, finished, an attempt).
        middle = next(t for t in store.page(TaskQuery(), 10, store.page(TaskQuery(), 10_000)[-1])
                      if t.attempts > 0)
        for sort, index in SORT_INDEXES.items():
            for descending in (True, False):
                for status in (None, TaskStatus.COMPLETED):
                    query = TaskQuery(status=status, sort=sort, descending=descending)
                    first = listing_plans(store, query)
                    deep = listing_plans(store, query, middle)
                    # Orders by a value submitted tasks lack: the tasks without it are a part
                    # of their own, walked by seq in tasks_unset (last descending, first
                    # ascending), so the first page of either direction reads both parts.
                    partial = sort in PARTIAL_SORTS
                    unset = [found for found in first + deep if "tasks_unset" in found]
                    assert len(unset) == (0 if not partial else 2 if descending else 1), unset
                    for found in first + deep:
                        assert "TEMP B-TREE" not in found, (query, found)
                        assert index in found or (index == "PRIMARY KEY" and found in (
                            "SCAN tasks", "SEARCH tasks USING INDEX tasks_by_status (status=?)")
                        ) or (status is not None and "tasks_by_status (status=?" in found
                              and sort == TaskSort.CREATED) or (
                            partial and "INDEX tasks_unset" in found), (query, found)
                    if sort not in (TaskSort.CREATED, TaskSort.STATUS) or status is None:
                        valued = [found for found in deep if "tasks_unset" not in found]
                        assert len(valued) == (1 if sort == TaskSort.CREATED else 2), deep
                        op = "<" if descending else ">"
                        assert sort == TaskSort.CREATED or any(
                            f"=? AND {rowid}{op}?)" in valued[0] for rowid in ("seq", "rowid")
                        ), (query, deep)
                        assert sort == TaskSort.CREATED or f"{op}?)" in valued[1], (query, deep)
                rare = TaskQuery(status=TaskStatus.FAILED, sort=sort, descending=descending)
                for found in listing_plans(store, rare, middle):
                    # (Or the retention index on (status, processed_at), for the tasks of
                    # a status that have finished; by finish time, already in order.)
                    assert "tasks_by_status (status=?" in found or (
                        sort in PARTIAL_SORTS and "tasks_finished (status=?" in found) or (
                        sort in PARTIAL_SORTS and "tasks_unset" in found), (rare, found)
                everything = store.page(TaskQuery(sort=sort, descending=descending), 20_000)
                assert len(everything) == 20_000
    finally:
        store.close()


def test_a_log_keeps_its_last_bytes_and_offsets_of_everything_logged(
    tmp_path: Path,
) -> None:
    from storage.sqlite.logs import TaskLogs

    logs = TaskLogs(tmp_path / "logs", cap=100, slack=50)
    chunks = [bytes([65 + i % 26]) * 30 for i in range(10)]  # 300 bytes in all
    for chunk in chunks:
        logs.append("t1", chunk)
    everything = b"".join(chunks)
    kept = logs.read("t1", 0, 1000)
    assert kept.start >= 300 - 150 and kept.next_offset == 300  # capped: the head dropped
    assert kept.data == everything[kept.start:]
    assert logs.read("t1", 290, 1000).data == everything[290:]
    log_file = tmp_path / "logs" / "t1.log"
    assert log_file.stat().st_mode & 0o777 == 0o600
    logs.remove(["t1"])
    assert not log_file.exists() and logs.read("t1", 0, 10).data == b""
    with pytest.raises(ValueError):
        logs.append("../escape", b"x")


def test_listing_written_by_sqlite_keeps_the_order_and_the_page(store: SqliteTaskStore) -> None:
    store.add_many(NewTask("x", '{"i":1}', 3), 1500, NOW)
    everything = store.page(TaskQuery(), 1500)
    store.cancel_many([t.id for t in everything][::3], NOW)
    for status, limit, offset in ((None, 1000, 0), (None, 100, 1400),
                                  (TaskStatus.CANCELLED, 200, 100), (TaskStatus.QUEUED, 1000, 0)):
        query = TaskQuery(status=status)
        tasks = store.page(query, 1500)[offset:offset + limit]
        assert store.list_json(query, limit, offset) == (
            ",".join(t.to_json() for t in tasks), len(tasks))


def test_damage_found_once_is_remembered_marked_and_nothing_more_is_written(
    store: SqliteTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[str] = []
    store.on_damage = told.append
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    malformed.sqlite_errorcode = 11  # type: ignore[attr-defined]  # SQLITE_CORRUPT

    def broken(write: object) -> None:
        raise malformed

    monkeypatch.setattr(store._writer, "execute", broken)
    with pytest.raises(DatabaseDamagedError, match="is damaged: database disk image is malformed"):
        store.add(NewTask("x", "{}", 3), NOW)
    monkeypatch.undo()
    # The writer works again, but the file is known to be damaged: no write reaches it.
    with pytest.raises(DatabaseDamagedError):
        store.add(NewTask("x", "{}", 3), NOW)
    assert store.count(TaskQuery()) == 0  # reads that do not meet the damage go on
    assert told == [store.damage] and store.damage is not None
    # The next start checks the file before using it.
    assert damage_marker(store.path).read_text(encoding="utf-8").strip() == store.damage


def test_open_takes_the_instance_lock_until_closed(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    first = open_store(db)
    first.announce("http://127.0.0.1:1234")
    with pytest.raises(DatabaseInUseError, match=r"process \d+, API http://127.0.0.1:1234"):
        open_store(db)
    first.close()
    second = open_store(db)
    assert second.migrated[0] == second.migrated[1]  # already migrated by the first
    second.close()


def test_open_checks_a_file_marked_damaged_and_clears_the_mark_when_whole(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    open_store(db).close()
    damage_marker(db).write_text("damaged once\n", encoding="utf-8")
    store = open_store(db)  # passes quick_check: used again
    store.close()
    assert not damage_marker(db).exists()


@pytest.mark.parametrize(("synchronous", "level"), [("full", 2), ("normal", 1)])
def test_every_connection_syncs_as_the_setting_says(
    tmp_path: Path, synchronous: Synchronous, level: int
) -> None:
    # FULL is what makes an accepted task survive a power cut: each commit waits for its fsync.
    store = open_store(tmp_path / "tasks.db", synchronous=synchronous)
    try:
        assert isinstance(store, SqliteTaskStore)
        store.add(NewTask("x", "{}", 3), NOW)  # opens the write connection
        writer = store._writer._conn
        assert writer is not None
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == level
        assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        store.close()
