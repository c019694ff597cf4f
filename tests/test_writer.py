"""WriteBatcher: group commit keeps each write's own outcome and durability."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

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


def test_a_failing_write_does_not_undo_the_others(batcher) -> None:
    b, path = batcher
    gate = threading.Event()
    # Hold the writer inside one write so that the next writes pile up into one batch.
    holder = threading.Thread(target=b.execute, args=(lambda c: gate.wait(10),))
    holder.start()
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


def test_commit_failure_fails_every_write_in_the_batch(batcher) -> None:
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


def test_close_commits_what_is_waiting_and_then_refuses(batcher) -> None:
    b, path = batcher
    b.execute(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')"))
    b.close()
    with pytest.raises(sqlite3.ProgrammingError):
        b.execute(lambda c: None)
    assert _rows(path) == [(1, "a")]
