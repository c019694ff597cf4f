"""WriteBatcher: group commit on PostgreSQL — writes that arrive together share one
transaction, one NOTIFY and one commit.

PostgreSQL lets every connection write at once, and batches WAL flushes of concurrent
commits by itself; but a transaction that sends NOTIFY takes a lock at commit that serialises
every other notifying commit in the cluster, fsync included. One NOTIFY per write (every POST,
every claim) would make each node's commits wait for each other's fsyncs. So, as on SQLite,
the first thread to arrive while no batch is being committed leads: it runs every write
waiting at that moment on one connection, in one transaction, sends one NOTIFY naming all the
tasks they changed (or "resync" when that would not fit in a payload), and commits. Threads
arriving meanwhile wait and one of them leads the next batch.

A write is ``write(conn, changes)``: it runs its statements and adds the ids of the tasks it
changed to *changes*. A write may also have a ``combine`` attribute, ``combine(conn,
changes, writes) -> results``: the writes of one batch with the same ``combine`` then run as
one statement (every plain submission of a batch in one multi-row INSERT: one round trip for
the batch instead of one per POST). If any write of a batch fails, the transaction is rolled
back and each write of the batch is run again in a transaction of its own, so that one bad
write fails alone. A batch whose connection died before it committed (the server restarted)
is run once more on a fresh connection: nothing of it was committed. If the connection dies
*during* the commit, PostgreSQL may or may not have committed it; the writes fail with
StorageUnavailableError (a submission may then be stored although its caller heard 503: at
least once, never lost).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import errors as pg_errors

from storage.errors import StorageUnavailableError
from storage.postgres.database import Database, connection_lost

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")

CHANNEL = "taskdesk"
# NOTIFY payloads must stay under 8,000 bytes; a uuid and a comma are 37.
MAX_NOTIFY_IDS = 200


@dataclass
class Changes:
    """What a batch changed, to tell other nodes."""

    task_ids: list[str] = field(default_factory=list)
    queue: bool = False
    resync: bool = False

    def add(self, ids: list[str]) -> None:
        if not self.resync:
            self.task_ids.extend(ids)
            if len(self.task_ids) > MAX_NOTIFY_IDS:
                self.resync = True
                self.task_ids.clear()

    def payload(self, node: str) -> str | None:
        """``NODE FLAGS IDS``: FLAGS ``*`` (re-read everything) or ``q`` (the queue's state)
        or ``-``; IDS comma-separated. None when nothing changed."""
        if self.resync:
            return f"{node} * "
        if not self.task_ids and not self.queue:
            return None
        return f"{node} {'q' if self.queue else '-'} {','.join(dict.fromkeys(self.task_ids))}"


Write = Callable[[psycopg.Connection[Any], Changes], T]


class _Pending(Generic[T]):
    __slots__ = ("done", "error", "result", "write")

    def __init__(self, write: Write[T]) -> None:
        self.write = write
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class _UncertainCommitError(Exception):
    """The connection died during COMMIT."""


class WriteBatcher:
    def __init__(self, db: Database, node: Callable[[], str]) -> None:
        self.db = db
        self.node = node  # this node's id, for the NOTIFY payload
        self._cond = threading.Condition()
        self._pending: list[_Pending[object]] = []
        self._leading = False
        self._closed = False

    def execute(self, write: Write[T]) -> T:
        """Run *write* inside the next group commit; its result once committed. Raises what
        *write* raised, or StorageUnavailableError."""
        item: _Pending[T] = _Pending(write)
        with self._cond:
            if self._closed:
                raise StorageUnavailableError(f"database {self.db.location}: the store is closed")
            self._pending.append(item)  # type: ignore[arg-type]
            while self._leading and not item.done:
                self._cond.wait()
            lead = not item.done
            if lead:
                self._leading = True
                batch, self._pending = self._pending, []
        if lead:
            try:
                self._commit_batch(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            while self._leading or self._pending:
                self._cond.wait()

    # -- one batch -----------------------------------------------------------------------------

    def _commit_batch(self, batch: list[_Pending[object]]) -> None:
        try:
            try:
                self._transaction(batch)
            except psycopg.Error as exc:
                if not connection_lost(exc):
                    raise
                self.db.pool.check()  # the server restarted: drop every dead connection
                self._transaction(batch)
        except Exception as exc:
            if len(batch) > 1 and _one_at_fault(exc):
                # One write failed (or a deadlock between nodes): each on its own, so that
                # only the one at fault fails.
                for item in batch:
                    self._commit_batch([item])
                return
            error = self._error(exc)
            for item in batch:
                item.result = None
                item.error = error
        finally:
            for item in batch:
                item.done = True

    def _transaction(self, batch: list[_Pending[object]]) -> None:
        changes = Changes()
        with self.db.connection() as conn:
            committing = False
            try:
                with conn.transaction():
                    results = _run_all(conn, changes, [item.write for item in batch])
                    payload = changes.payload(self.node())
                    if payload is not None:
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    committing = True
            except psycopg.OperationalError as exc:
                if committing and connection_lost(exc):
                    raise _UncertainCommitError(str(exc)) from exc
                raise
        for item, result in zip(batch, results, strict=True):
            item.result = result

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, _UncertainCommitError):
            return StorageUnavailableError(
                f"cannot use database {self.db.location}: the connection was lost while "
                f"committing ({exc}); the change may or may not have been stored")
        if isinstance(exc, psycopg.Error):
            return self.db.translate(exc)
        return exc


def _run_all(conn: psycopg.Connection[Any], changes: Changes, writes: list[Write[object]]
             ) -> list[object]:
    """Run *writes* in order, each group of combinable ones as one, where its first is."""
    results: list[object] = [None] * len(writes)
    groups: dict[object, list[int]] = {}
    for i, write in enumerate(writes):
        combine = getattr(write, "combine", None)
        if combine is not None:
            groups.setdefault(combine, []).append(i)
    done: set[int] = set()
    for i, write in enumerate(writes):
        if i in done:
            continue
        combine = getattr(write, "combine", None)
        if combine is None or len(groups[combine]) == 1:
            results[i] = write(conn, changes)
            continue
        members = groups[combine]
        for k, result in zip(members, combine(conn, changes, [writes[k] for k in members]),
                             strict=True):
            results[k] = result
        done.update(members)
    return results


def _one_at_fault(exc: BaseException) -> bool:
    """Whether *exc* may be the fault of one write of a batch (a refused statement, an error
    raised by the write, a deadlock with another node), not of the database as a whole."""
    if isinstance(exc, _UncertainCommitError):
        return False
    if isinstance(exc, pg_errors.TransactionRollback):
        return True
    return not isinstance(exc, psycopg.OperationalError)
