"""Migrations: fresh, repeated, from the tutorial's schema, refused when too new, and atomic."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from storage import DatabaseError, MigrationError, SchemaTooNewError, TaskQuery
from storage.sqlite import LATEST_VERSION, SqliteTaskStore, migrate, open_connection
from storage.sqlite.migrations import MIGRATIONS, schema_version

TUTORIAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    result TEXT,
    created_at INTEGER NOT NULL,
    processed_at INTEGER
)
"""


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()


def test_fresh_database_ends_at_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = open_connection(path)
    assert migrate(conn, path) == (0, LATEST_VERSION)
    assert schema_version(conn) == LATEST_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    assert {"seq", "id", "action", "data", "status", "result", "error", "attempts",
            "max_attempts", "created_at", "started_at", "processed_at", "run_after"} <= columns


def test_running_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    conn = open_connection(path)
    migrate(conn, path)
    before = _schema(conn)
    assert migrate(conn, path) == (LATEST_VERSION, LATEST_VERSION)
    assert _schema(conn) == before


def test_step_one_is_exactly_the_tutorial_table(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = open_connection(path)
    MIGRATIONS[0](conn)
    ours = conn.execute("PRAGMA table_info(tasks)").fetchall()
    other = sqlite3.connect(":memory:")
    other.execute(TUTORIAL_SCHEMA)
    assert ours == other.execute("PRAGMA table_info(tasks)").fetchall()


def test_tutorial_database_upgrades_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "tutorial.db"
    legacy = sqlite3.connect(path)
    legacy.execute(TUTORIAL_SCHEMA)
    legacy.execute(
        "INSERT INTO tasks VALUES (?, ?, 'completed', ?, 1700000000, 1700000001)",
        ("a", json.dumps({"id": "a", "action": "uppercase", "data": {"text": "hi"},
                          "created_at": 1700000000}), json.dumps({"output": "HI"})),
    )
    legacy.execute(
        "INSERT INTO tasks (id, payload, created_at) VALUES (?, ?, 1700000002)",
        ("b", json.dumps({"id": "b", "action": "sum", "data": {"numbers": [1, 2]},
                          "created_at": 1700000002})),
    )
    legacy.execute("INSERT INTO tasks (id, payload, created_at) VALUES ('c', 'not json', 3)")
    legacy.commit()
    legacy.close()

    conn = open_connection(path)
    assert migrate(conn, path) == (0, LATEST_VERSION)
    store = SqliteTaskStore(path)
    a, b, c = store.get("a"), store.get("b"), store.get("c")
    assert a is not None and b is not None and c is not None
    assert (a.action, a.data, a.status, a.result) == ("uppercase", {"text": "hi"}, "completed",
                                                      {"output": "HI"})
    assert (a.created_at, a.processed_at, a.attempts) == (1700000000, 1700000001, 1)
    assert (b.action, b.data, b.status, b.attempts) == ("sum", {"numbers": [1, 2]}, "queued", 0)
    assert (c.action, c.data, c.status) == ("unknown", {}, "queued")
    assert store.counts() == {"queued": 2, "running": 0, "completed": 1, "failed": 0,
                              "cancelled": 0}
    # Insertion order follows creation time, so "newest first" keeps meaning what it did.
    assert [t.id for t in store.page(TaskQuery(), 1000)] == ["b", "a", "c"]
    store.close()


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = open_connection(path)
    migrate(conn, path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(SchemaTooNewError) as info:
        migrate(conn, path)
    message = str(info.value)
    assert str(path) in message and "newer" in message
    assert schema_version(conn) == LATEST_VERSION + 1


def test_failed_step_rolls_back_and_names_file_and_cause(tmp_path: Path) -> None:
    path = tmp_path / "clash.db"
    conn = open_connection(path)
    # A `tasks` table that is not the tutorial's: step 2 cannot copy it.
    conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, something_else TEXT)")
    conn.execute("INSERT INTO tasks VALUES ('x', 'y')")
    with pytest.raises(MigrationError) as info:
        migrate(conn, path)
    message = str(info.value)
    assert str(path) in message and "version 2" in message and "payload" in message
    # Step 1 (CREATE TABLE IF NOT EXISTS) committed; step 2 left no trace.
    assert schema_version(conn) == 1
    assert conn.execute("SELECT * FROM tasks").fetchall() == [("x", "y")]
    names = {row[1] for row in _schema(conn)}
    assert "tasks_v2" not in names


def test_not_a_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 100
    path.write_bytes(content)
    with pytest.raises((DatabaseError, MigrationError)) as info:
        conn = open_connection(path)
        migrate(conn, path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content
