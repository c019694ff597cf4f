"""What the SQLite backend does beyond the contract: indexes, damage, opening under the lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import DatabaseDamagedError, DatabaseInUseError, TaskQuery, TaskStatus, open_store
from storage.sqlite import SqliteTaskStore, damage_marker

NOW = 1_800_000_000.0


def plan(store: SqliteTaskStore, sql: str) -> str:
    return " ".join(str(row) for row in store._conn().execute("EXPLAIN QUERY PLAN " + sql))


def test_listings_and_the_claim_use_indexes(store: SqliteTaskStore) -> None:
    by_status = plan(store, "SELECT id FROM tasks WHERE status = 'failed' "
                            "ORDER BY seq DESC LIMIT 100")
    assert "USING INDEX tasks_by_status" in by_status and "TEMP B-TREE" not in by_status
    assert "TEMP B-TREE" not in plan(store, "SELECT id FROM tasks ORDER BY seq DESC LIMIT 100")
    claim = plan(store, store._CLAIM.replace("?", "1"))
    assert "USING INDEX tasks_by_status" in claim and "TEMP B-TREE" not in claim


def test_listing_written_by_sqlite_keeps_the_order_and_the_page(store: SqliteTaskStore) -> None:
    store.add_many([("x", f'{{"i":{i}}}') for i in range(1500)], 3, NOW)
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
        store.add("x", "{}", 3, NOW)
    monkeypatch.undo()
    # The writer works again, but the file is known to be damaged: no write reaches it.
    with pytest.raises(DatabaseDamagedError):
        store.add("x", "{}", 3, NOW)
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
