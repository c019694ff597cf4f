"""SqliteTaskStore: the storage contract on one SQLite file, for one Taskdesk at a time.

Opening takes the instance lock (start-up recovery re-queues every running task, which is only
right if no other process runs them), checks a file once found damaged, and migrates.

Threading: reads run on a connection of the calling thread's own (SQLite connections must not
be shared by threads that use them at once; WAL lets them read while a write commits). Writes
go through one WriteBatcher: the first writer to arrive commits every write waiting with it in
one transaction (one fsync per batch); a write method returns once its change is committed.
Every state change is one conditional statement (``... WHERE id = ? AND status = ?``), so two
threads racing over the same task always have exactly one winner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from storage.contract import Settled
from storage.errors import DatabaseDamagedError, DatabaseError, StorageUnavailableError
from storage.models import (
    CANCELLABLE,
    RETRYABLE,
    STATUSES,
    Finish,
    Task,
    TaskQuery,
    TaskStatus,
    stored_time,
)
from storage.sqlite.connection import Synchronous, check_integrity, damage_in, open_connection
from storage.sqlite.instance_lock import InstanceLock
from storage.sqlite.migrations import LATEST_VERSION, migrate
from storage.sqlite.writer import WriteBatcher

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")

# The columns every read selects, in Task's field order.
TASK_COLUMNS = (
    "seq, id, action, data, status, result, error, attempts, max_attempts, "
    "created_at, started_at, processed_at, run_after"
)

# A task row as the JSON text Task.to_json() writes, character for character, computed by
# SQLite: a listing of 100 tasks then costs a quarter of what building them in Python does.
TASK_JSON_SQL = (
    "'{\"id\":' || json_quote(id) || ',\"action\":' || json_quote(action)"
    " || ',\"data\":' || data || ',\"status\":' || json_quote(status)"
    " || ',\"result\":' || coalesce(result, 'null') || ',\"error\":' || json_quote(error)"
    " || ',\"attempts\":' || attempts || ',\"max_attempts\":' || max_attempts"
    " || ',\"created_at\":' || json_quote(created_at)"
    " || ',\"started_at\":' || json_quote(started_at)"
    " || ',\"processed_at\":' || json_quote(processed_at) || '}'"
)


def _sql_list(statuses: frozenset[TaskStatus]) -> str:
    return ", ".join(f"'{s.value}'" for s in STATUSES if s in statuses)


def damage_marker(path: Path) -> Path:
    """The file that says *path* was found damaged: the next start checks it before use."""
    return path.with_name(path.name + ".damaged")


class SqliteTaskStore:
    """See storage.contract.TaskStore for what each operation promises."""

    def __init__(self, path: Path, synchronous: Synchronous = "full") -> None:
        """A store on an already migrated database, without the instance lock (tests and
        tools); Taskdesk itself opens its database with ``open``."""
        self.path = path
        self.location = str(path)
        self.synchronous: Synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writer = WriteBatcher(path, synchronous)
        self._instance_lock: InstanceLock | None = None
        self.migrated: tuple[int, int] = (LATEST_VERSION, LATEST_VERSION)
        self.problem: str | None = None
        self.damage: str | None = None
        self.on_damage: Callable[[str], None] | None = None

    @classmethod
    def open(cls, path: Path, synchronous: Synchronous = "full") -> SqliteTaskStore:
        """Take the instance lock, check a file once found damaged, migrate; raises
        DatabaseError (DatabaseInUseError, SchemaTooNewError, MigrationError, …) naming the
        file and the cause, leaving a refused file as it was."""
        lock = InstanceLock(path)
        lock.acquire()
        try:
            conn = open_connection(path, synchronous, max_schema_version=LATEST_VERSION)
            try:
                marker = damage_marker(path)
                if marker.exists():
                    # A past run found the file damaged: use it only if it is whole again
                    # (restored from a backup, say). Before migrating: nothing may write to it.
                    check_integrity(conn, path)
                    log.warning("database %s was found damaged before; it passed an integrity "
                                "check and is used again", path)
                    with contextlib.suppress(OSError):  # if it stays, the next start checks
                        marker.unlink()
                migrated = migrate(conn, path)
            finally:
                conn.close()
        except BaseException:
            lock.release()
            raise
        store = cls(path, synchronous)
        store._instance_lock = lock
        store.migrated = migrated
        return store

    # -- connections -----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("task store is closed")
            conn = open_connection(self.path, self.synchronous)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        if self._instance_lock is not None:
            self._instance_lock.release()
            self._instance_lock = None

    def announce(self, api_url: str | None) -> None:
        if self._instance_lock is not None:
            self._instance_lock.describe(api_url)

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            self.problem = f"cannot read database {self.path}: {exc}"
            raise StorageUnavailableError(self.problem) from exc
        except (sqlite3.DatabaseError, DatabaseError) as exc:
            self._note_damage(exc)
            raise

    def _write(self, write: Callable[[sqlite3.Connection], T]) -> T:
        if self.damage is not None:
            raise DatabaseDamagedError(self.damage)
        try:
            result = self._writer.execute(write)
        except StorageUnavailableError as exc:
            self.problem = str(exc)
            raise
        except sqlite3.DatabaseError as exc:
            self._note_damage(exc)
            raise
        self.problem = None
        return result

    def _note_damage(self, exc: Exception) -> None:
        """If *exc* says the file is damaged, remember it and raise DatabaseDamagedError."""
        found = damage_in(exc)  # also SQLite's error behind open_connection's
        if found is not None:
            message = f"database {self.path} is damaged: {found}"
        elif isinstance(exc, DatabaseDamagedError):
            message = str(exc)
        else:
            return
        first = self.damage is None
        self.damage = message
        if first:
            self._mark_damaged(message)
            if self.on_damage is not None:
                self.on_damage(message)
        raise DatabaseDamagedError(message) from exc

    def _mark_damaged(self, message: str) -> None:
        """Leave a marker that makes the next start check the file before using it."""
        marker = damage_marker(self.path)
        try:
            marker.write_text(message + "\n", encoding="utf-8")
        except OSError as exc:
            log.error("cannot write %s: %s", marker, exc)

    def _one(self, sql: str, params: Sequence[object] = ()) -> Task | None:
        rows = self._read(sql, params)
        return Task.from_row(rows[0]) if rows else None

    # -- writes ----------------------------------------------------------------------------

    _INSERT = (
        "INSERT INTO tasks (id, action, data, status, max_attempts, created_at) "
        "VALUES (?, ?, ?, 'queued', ?, ?)"
    )

    def add(self, action: str, data_json: str, max_attempts: int, now: float) -> Task:
        params = (str(uuid.uuid4()), action, data_json, max_attempts, stored_time(now))
        sql = f"{self._INSERT} RETURNING {TASK_COLUMNS}"
        [row] = self._write(lambda conn: conn.execute(sql, params).fetchall())
        return Task.from_row(row)

    def add_many(
        self, items: Sequence[tuple[str, str]], max_attempts: int, now: float
    ) -> list[str]:
        when = stored_time(now)
        rows = [(str(uuid.uuid4()), action, data, max_attempts, when) for action, data in items]
        self._write(lambda conn: conn.executemany(self._INSERT, rows))
        return [row[0] for row in rows]

    # Due queued tasks, oldest first, as one statement: the tasks_by_status index is ordered
    # by (status, seq), so this walks the queued entries from the oldest and stops at n.
    _CLAIM = (
        f"UPDATE tasks SET status = 'running', started_at = ?, processed_at = NULL, "
        f"attempts = attempts + 1 "
        f"WHERE seq IN (SELECT seq FROM tasks INDEXED BY tasks_by_status "
        f"WHERE status = 'queued' AND run_after <= ? ORDER BY seq LIMIT ?) "
        f"RETURNING {TASK_COLUMNS}"
    )
    # How a running attempt ends, by the status it ends in; each takes
    # (result or error, processed_at or run_after, id, attempt).
    _FENCE = "WHERE id = ? AND status = 'running' AND attempts = ?"
    _FINISH: ClassVar[dict[TaskStatus, str]] = {
        TaskStatus.COMPLETED: (
            f"UPDATE tasks SET status = 'completed', result = ?, error = NULL, processed_at = ? "
            f"{_FENCE} RETURNING {TASK_COLUMNS}"
        ),
        TaskStatus.QUEUED: (
            f"UPDATE tasks SET status = 'queued', error = ?, run_after = ? "
            f"{_FENCE} RETURNING {TASK_COLUMNS}"
        ),
        TaskStatus.FAILED: (
            f"UPDATE tasks SET status = 'failed', error = ?, processed_at = ? "
            f"{_FENCE} RETURNING {TASK_COLUMNS}"
        ),
    }

    def settle(self, finishes: Sequence[Finish], claim: int, now: float) -> Settled:
        when = stored_time(now)
        params = [(f.text, stored_time(f.when), f.task_id, f.attempt) for f in finishes]

        def write(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            stored = []
            for f, p in zip(finishes, params, strict=True):
                rows = conn.execute(self._FINISH[f.status], p).fetchall()
                stored.append(rows[0] if rows else None)
            claimed = conn.execute(self._CLAIM, (when, when, claim)).fetchall() if claim else []
            return stored, claimed

        stored, claimed = self._write(write)
        tasks = sorted((Task.from_row(r) for r in claimed), key=lambda t: t.seq)
        return Settled([None if r is None else Task.from_row(r) for r in stored], tasks)

    def release(self, task_id: str, attempt: int, run_after: float, error: str | None
                ) -> Task | None:
        sql = (f"UPDATE tasks SET status = 'queued', attempts = max(0, attempts - 1), "
               f"started_at = NULL, run_after = ?, error = coalesce(?, error) "
               f"{self._FENCE} RETURNING {TASK_COLUMNS}")
        params = (stored_time(run_after), error, task_id, attempt)
        rows = self._write(lambda conn: conn.execute(sql, params).fetchall())
        return Task.from_row(rows[0]) if rows else None

    _CANCEL = (
        f"UPDATE tasks SET status = 'cancelled', processed_at = ? "
        f"WHERE id IN (SELECT value FROM json_each(?)) AND status IN ({_sql_list(CANCELLABLE)}) "
        f"RETURNING {TASK_COLUMNS}"
    )
    _RETRY = (
        f"UPDATE tasks SET status = 'queued', attempts = 0, result = NULL, error = NULL, "
        f"started_at = NULL, processed_at = NULL, run_after = 0 "
        f"WHERE id IN (SELECT value FROM json_each(?)) AND status IN ({_sql_list(RETRYABLE)}) "
        f"RETURNING {TASK_COLUMNS}"
    )

    def cancel_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        params = (stored_time(now), json.dumps(list(task_ids)))
        rows = self._write(lambda conn: conn.execute(self._CANCEL, params).fetchall())
        return [Task.from_row(r) for r in rows]

    def retry_many(self, task_ids: Sequence[str]) -> list[Task]:
        ids = json.dumps(list(task_ids))
        rows = self._write(lambda conn: conn.execute(self._RETRY, (ids,)).fetchall())
        return [Task.from_row(r) for r in rows]

    def shift_retry_times(self, seconds: float, after: float) -> int:
        return self._write(lambda conn: conn.execute(
            "UPDATE tasks SET run_after = run_after + ? WHERE status = 'queued' AND run_after > ?",
            (seconds, after),
        ).rowcount)

    def recover(self, now: float) -> int:
        # Under the instance lock, every running task is one a stopped process left behind.
        sql = (
            "UPDATE tasks SET "
            "status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
            "error = 'interrupted: Taskdesk stopped while this task was running', "
            "processed_at = CASE WHEN attempts >= max_attempts THEN ? ELSE NULL END, "
            "run_after = 0 "
            "WHERE status = 'running'"
        )
        when = stored_time(now)
        return self._write(lambda conn: conn.execute(sql, (when,)).rowcount)

    # -- reads -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))

    def page(self, query: TaskQuery, limit: int, before_seq: int | None = None) -> list[Task]:
        where, params = _filters(query, before_seq)
        rows = self._read(
            f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [Task.from_row(r) for r in rows]

    def list_json(self, query: TaskQuery, limit: int, offset: int) -> tuple[str, int]:
        # One row, not one per task: Python's sqlite3 releases the interpreter lock around
        # each row it steps to, so a listing of 100 rows took 200 turns at the lock, and with
        # a dozen API threads listing at once each turn was a wait (16 threads listed 2.4
        # times slower than one). The subquery's order is the order of the concatenation.
        where, params = _filters(query)
        [(text, count)] = self._read(
            f"SELECT group_concat(task, ','), count(*) FROM (SELECT {TASK_JSON_SQL} AS task "
            f"FROM tasks{where} ORDER BY seq DESC LIMIT ? OFFSET ?)",
            (*params, limit, offset),
        )
        return text or "", int(count)

    def count(self, query: TaskQuery) -> int:
        if query.action is None and not query.search and query.ids is None:
            counts = self.counts()
            return counts[query.status] if query.status is not None else sum(counts.values())
        where, params = _filters(query)
        return int(self._read(f"SELECT count(*) FROM tasks{where}", params)[0][0])

    def counts(self) -> dict[TaskStatus, int]:
        # Kept by triggers in the same transaction as each change (migration 3).
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._read("SELECT status, n FROM task_counts"):
            counts[TaskStatus(status)] = n
        return counts

    def count_by_status(self, search: str | None = None) -> dict[TaskStatus, int]:
        if not search:
            return self.counts()
        where, params = _filters(TaskQuery(search=search))
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._read(
            f"SELECT status, count(*) FROM tasks{where} GROUP BY status", params
        ):
            counts[TaskStatus(status)] = n
        return counts

    def next_due(self, now: float) -> float | None:
        [(earliest,)] = self._read(
            "SELECT min(run_after) FROM tasks INDEXED BY tasks_queued_run_after "
            "WHERE status = 'queued' AND run_after > ?",
            (now,),
        )
        return None if earliest is None else float(earliest)


def _filters(query: TaskQuery, before_seq: int | None = None) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.status is not None:
        clauses.append("status = ?")
        params.append(TaskStatus(query.status).value)
    if query.action is not None:
        clauses.append("action = ?")
        params.append(query.action)
    if query.search:
        # LIKE is case-insensitive for ASCII letters only; _ and % are escaped to be literal.
        pattern = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("(id LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\')")
        params.extend([pattern + "%", "%" + pattern + "%"])
    if query.ids is not None:
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(query.ids)))
    if before_seq is not None:
        clauses.append("seq < ?")
        params.append(before_seq)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
