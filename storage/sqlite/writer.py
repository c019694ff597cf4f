"""WriteBatcher: group commit — writes that arrive together are committed together.

SQLite allows one writer at a time. When several threads write through their own connections
they queue on the database lock, and SQLite's busy handler makes them sleep and retry, which
gives long latency tails under load; with ``synchronous=FULL`` each commit also pays its own
fsync. Here all writes share one connection, and the first thread to arrive while no commit is
in progress becomes the *leader*: it takes every write waiting at that moment, runs them in one
transaction (each in its own savepoint, so one failing write does not undo the others) and
commits once — one fsync for the whole batch. Threads arriving meanwhile wait; when the leader
is done, it hands the lead to the oldest of them, which commits the next batch. A write alone
costs no thread switch at all, and a caller returns only once the commit holding its write is
durable.

Each waiting thread sleeps on a lock of its own and is woken exactly once, when its write is
committed or when it is handed the lead: a shared condition's ``notify_all`` woke every waiter
after each batch, most of them only to go back to sleep, a storm of interpreter-lock and futex
hand-offs under load.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from storage.errors import StorageUnavailableError
from storage.sqlite.connection import BUSY_TIMEOUT_MS, Synchronous, open_connection

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], T]


class _Pending(Generic[T]):
    __slots__ = ("deadline", "done", "error", "lead", "result", "wake", "write")

    def __init__(self, write: Write[T]) -> None:
        self.write = write
        self.wake = threading.Lock()  # held until the write is done or the lead handed over
        self.wake.acquire()
        self.lead = False
        # A write waits for another program's lock at most the busy timeout in all, however
        # long it first waited behind a batch that was itself waiting for that lock.
        self.deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class WriteBatcher:
    def __init__(self, path: Path, synchronous: Synchronous = "full") -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self._cond = threading.Condition()
        self._pending: list[_Pending[object]] = []
        self._leading = False  # a thread is committing a batch
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._busy_ms = BUSY_TIMEOUT_MS  # the connection's busy timeout now

    def execute(self, write: Write[T]) -> T:
        """Run *write(conn)* inside the next group commit and return its result once committed.

        Raises what *write* raised, or StorageUnavailableError when the database could not be
        written (disk full, locked, read-only, I/O error).
        """
        item: _Pending[T] = _Pending(write)
        with self._cond:
            if self._closed:
                raise sqlite3.ProgrammingError("task store is closed")
            self._pending.append(item)  # type: ignore[arg-type]
            lead = not self._leading
            self._leading = True
        if not lead:
            item.wake.acquire()  # until committed, or handed the lead
            lead = item.lead
        if lead:
            with self._cond:
                batch, self._pending = self._pending, []
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    successor = self._pending[0] if self._pending else None
                    if successor is None:
                        self._leading = False
                        self._cond.notify_all()  # only close() waits on it
                for done in batch:
                    if done is not item:
                        done.wake.release()
                if successor is not None:
                    successor.lead = True
                    successor.wake.release()
        if isinstance(item.error, sqlite3.OperationalError):
            raise StorageUnavailableError(
                f"cannot write to database {self.path}: {item.error}"
            ) from item.error
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def close(self) -> None:
        """Refuse new writes, wait for the batch in progress, close the connection."""
        with self._cond:
            self._closed = True
            while self._leading or self._pending:
                self._cond.wait()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _commit(self, batch: list[_Pending[object]]) -> None:
        try:
            if self._conn is None:
                self._conn = open_connection(self.path, self.synchronous)
            conn = self._conn
            left_ms = int((min(item.deadline for item in batch) - time.monotonic()) * 1000)
            busy_ms = BUSY_TIMEOUT_MS if left_ms > BUSY_TIMEOUT_MS - 50 else max(0, left_ms)
            if busy_ms != self._busy_ms:
                conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
                self._busy_ms = busy_ms
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                # Alone, a write needs no savepoint: if it fails, the whole transaction goes.
                [item] = batch
                try:
                    item.result = item.write(conn)
                except Exception as exc:
                    item.error = exc
                    if not conn.in_transaction:
                        raise
                    conn.execute("ROLLBACK")
                    return
            else:
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
            if self._conn is not None and self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed")
            for item in batch:
                item.result = None
                if item.error is None:
                    item.error = exc
        finally:
            for item in batch:
                item.done = True
