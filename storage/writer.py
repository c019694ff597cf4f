"""WriteBatcher: one thread owns the write connection and commits waiting writes together.

SQLite allows one writer at a time. When several threads write through their own connections
they queue on the database lock, and SQLite's busy handler makes them sleep and retry, which
gives long latency tails under load; with ``synchronous=FULL`` each commit also pays its own
fsync. Here every write is handed to a single thread that takes *all* writes waiting at that
moment, runs them in one transaction (each in its own savepoint, so one failing write does not
undo the others) and commits once: one fsync for the whole batch (group commit). Callers
block until the commit that holds their write is durable, so "returned" still means "on disk".
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from storage.connection import Synchronous, open_connection

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], T]


class _Pending(Generic[T]):
    __slots__ = ("done", "error", "result", "write")

    def __init__(self, write: Write[T]) -> None:
        self.write = write
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class WriteBatcher:
    def __init__(self, path: Path, synchronous: Synchronous = "full") -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self._cond = threading.Condition()
        self._pending: list[_Pending[object]] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._cond:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="taskdesk-writer", daemon=True
                    )
                    self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def execute(self, write: Write[T]) -> T:
        """Run *write(conn)* inside the next group commit and return its result once committed.

        Raises what *write* raised, or the sqlite3 error that stopped the commit.
        """
        self._ensure_started()
        pending: _Pending[T] = _Pending(write)
        with self._cond:
            if self._closing:
                raise sqlite3.ProgrammingError("task store is closed")
            self._pending.append(pending)  # type: ignore[arg-type]
            self._cond.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def close(self) -> None:
        """Commit what is waiting, then stop the thread and close the connection."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = open_connection(self.path, self.synchronous)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    batch, self._pending = self._pending, []
                if batch:
                    self._commit(conn, batch)
                elif self._closing:
                    return
        finally:
            conn.close()

    @staticmethod
    def _commit(conn: sqlite3.Connection, batch: list[_Pending[object]]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                conn.execute("SAVEPOINT write")
                try:
                    item.result = item.write(conn)
                except Exception as exc:
                    item.error = exc
                    if not conn.in_transaction:
                        # Some errors (disk full, I/O) make SQLite roll back the whole
                        # transaction, taking the earlier writes of this batch with it.
                        raise
                    conn.execute("ROLLBACK TO write")
                conn.execute("RELEASE write")
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed")
            for item in batch:
                item.result = None
                if item.error is None:
                    item.error = exc
        finally:
            for item in batch:
                item.done.set()
