"""WriteBatcher: group commit keeps each write's own outcome and durability."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from storage import StorageUnavailableError
from storage.sqlite.writer import WriteBatcher


@pytest.fixture
def batcher(tmp_path: Path):
    path = tmp_path / "w.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.commit()
    conn.close()
    b = WriteBatcher(path)
    yield b, path
    b.close()


def _rows(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT k, v FROM t ORDER BY k").fetchall()
    finally:
        conn.close()


def test_returns_results_once_committed(batcher) -> None:
    b, path = batcher
    assert b.execute(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')").rowcount) == 1
    assert _rows(path) == [(1, "a")]  # visible to another connection: committed


def test_a_failing_write_does_not_undo_the_others(batcher, qtbot: QtBot) -> None:
    b, path = batcher
    gate = threading.Event()
    # Hold the writer inside one write so that the next writes pile up into one batch.
    holder = threading.Thread(target=b.execute, args=(lambda c: gate.wait(10),))
    holder.start()
    qtbot.waitUntil(lambda: b._leading)
    results: dict[int, object] = {}

    def write(k: int, v: str | None) -> None:
        try:
            results[k] = b.execute(lambda c: c.execute("INSERT INTO t VALUES (?, ?)", (k, v))
                                   .rowcount)
        except sqlite3.IntegrityError as exc:
            results[k] = exc

    threads = [threading.Thread(target=write, args=(k, None if k == 2 else f"v{k}"))
               for k in range(1, 5)]
    for t in threads:
        t.start()
    # All four in one batch, or a failing write undoing its batch would go unnoticed.
    qtbot.waitUntil(lambda: len(b._pending) == len(threads))
    gate.set()
    for t in [holder, *threads]:
        t.join()
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert [results[k] for k in (1, 3, 4)] == [1, 1, 1]
    assert _rows(path) == [(1, "v1"), (3, "v3"), (4, "v4")]


def test_exceptions_from_python_code_reach_the_caller(batcher) -> None:
    b, path = batcher

    def broken(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (7, 'x')")
        raise ValueError("not this one")

    with pytest.raises(ValueError, match="not this one"):
        b.execute(broken)
    assert _rows(path) == []  # its partial write was rolled back


def test_a_write_the_full_disk_refuses_fails_alone_and_the_writer_goes_on(batcher) -> None:
    b, path = batcher
    b.execute(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')"))
    # Cap the file at its current size: the next write needs a new page and SQLite reports
    # SQLITE_FULL, as on a full disk.
    b.execute(lambda c: c.execute(
        "PRAGMA max_page_count = " + str(c.execute("PRAGMA page_count").fetchone()[0])))
    with pytest.raises(StorageUnavailableError, match="full"):
        b.execute(lambda c: c.execute("INSERT INTO t VALUES (2, ?)", ("x" * 100_000,)))
    assert _rows(path) == [(1, "a")]
    # The writer keeps going once there is room again.
    b.execute(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    b.execute(lambda c: c.execute("INSERT INTO t VALUES (3, 'c')"))
    assert _rows(path) == [(1, "a"), (3, "c")]


def test_a_failed_commit_fails_every_write_of_its_batch(batcher, qtbot: QtBot) -> None:
    # Each write of the batch succeeds on its own; the COMMIT that would make them durable
    # fails (a deferred foreign key, checked only then): none of them is stored, and every
    # caller is told so, none returns as if its write were committed.
    b, path = batcher
    b.execute(lambda c: c.execute("CREATE TABLE child (k INTEGER REFERENCES t (k) "
                                  "DEFERRABLE INITIALLY DEFERRED)"))
    conn = b._conn
    assert conn is not None
    conn.execute("PRAGMA foreign_keys = ON")  # outside any transaction, or it does nothing
    gate = threading.Event()
    # Hold the writer inside one write so that the next writes pile up into one batch.
    holder = threading.Thread(target=b.execute, args=(lambda c: gate.wait(10),))
    holder.start()
    qtbot.waitUntil(lambda: b._leading)
    results: dict[int, object] = {}
    writes = {
        1: lambda c: c.execute("INSERT INTO t VALUES (1, 'a')").rowcount,
        2: lambda c: c.execute("INSERT INTO child VALUES (99)").rowcount,  # no row 99 in t
        3: lambda c: c.execute("INSERT INTO t VALUES (3, 'c')").rowcount,
    }

    def write(k: int) -> None:
        try:
            results[k] = b.execute(writes[k])
        except sqlite3.Error as exc:
            results[k] = exc

    threads = [threading.Thread(target=write, args=(k,)) for k in writes]
    for t in threads:
        t.start()
    qtbot.waitUntil(lambda: len(b._pending) == len(writes))  # queued behind the held batch
    gate.set()
    for t in [holder, *threads]:
        t.join()
    assert all(isinstance(results[k], sqlite3.IntegrityError) for k in writes), results
    assert _rows(path) == []
    # Nothing of the failed batch is left behind to be committed with the next one.
    assert b.execute(lambda c: c.execute("INSERT INTO t VALUES (4, 'd')").rowcount) == 1
    assert _rows(path) == [(4, "d")]


def test_close_commits_what_is_waiting_and_then_refuses(batcher) -> None:
    b, path = batcher
    b.execute(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')"))
    b.close()
    with pytest.raises(sqlite3.ProgrammingError):
        b.execute(lambda c: None)
    assert _rows(path) == [(1, "a")]
