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
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from storage.contract import Settled
from storage.errors import (
    DatabaseDamagedError,
    DatabaseError,
    IdempotencyConflictError,
    StorageUnavailableError,
    UnknownTasksError,
)
from storage.models import (
    ABSENT,
    RETRYABLE,
    STATUSES,
    Added,
    Changes,
    Finish,
    LogSlice,
    NewTask,
    NodeInfo,
    Progress,
    ScheduleState,
    Task,
    TaskQuery,
    TaskSort,
    TaskStatus,
    json_list,
    sort_value,
    stored_time,
)
from storage.sqlite.connection import Synchronous, check_integrity, damage_in, open_connection
from storage.sqlite.instance_lock import InstanceLock
from storage.sqlite.logs import TaskLogs
from storage.sqlite.migrations import LATEST_VERSION, migrate
from storage.sqlite.writer import WriteBatcher
from storage.task_ids import new_task_id

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")

# The columns every read selects, in Task's field order.
TASK_COLUMNS = (
    "seq, id, action, data, status, result, error, attempts, max_attempts, "
    "created_at, started_at, processed_at, run_after, priority, after_ids, waiting, "
    "progress, progress_message, cancel_requested"
)

# A task row as the JSON text Task.to_json() writes, character for character, computed by
# SQLite: a listing of 100 tasks then costs a quarter of what building them in Python does.
# json_object, not concatenated json_quote()s: a fifth less of a listing's time (the stored
# JSON of data, result and after goes through json(), which gives minified text back as it
# is, and Taskdesk stores it minified).
TASK_JSON_SQL = (
    "json_object('id', id, 'action', action, 'data', json(data), 'status', status,"
    " 'result', json(result), 'error', error, 'attempts', attempts,"
    " 'max_attempts', max_attempts, 'created_at', created_at, 'started_at', started_at,"
    " 'processed_at', processed_at, 'run_after', coalesce(nullif(run_after, 0), created_at),"
    " 'priority', priority, 'after', json(coalesce(after_ids, '[]')), 'progress', progress,"
    " 'progress_message', progress_message,"
    " 'cancel_requested', json(CASE WHEN cancel_requested THEN 'true' ELSE 'false' END))"
)
_FINISHED_SQL = "('completed', 'failed', 'cancelled')"


def _sql_list(statuses: frozenset[TaskStatus]) -> str:
    return ", ".join(f"'{s.value}'" for s in STATUSES if s in statuses)


def logs_folder(path: Path) -> Path:
    """Where the tasks' logs of database *path* live: a folder beside it."""
    return path.with_name(path.name + ".logs")


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
        self.logs = TaskLogs(logs_folder(path))
        self.migrated: tuple[int, int] = (LATEST_VERSION, LATEST_VERSION)
        self.problem: str | None = None
        self.damage: str | None = None
        self.on_damage: Callable[[str], None] | None = None
        # One instance per file (the instance lock): no one else changes tasks under us.
        self.shared = False
        self._host = socket.gethostname()
        self._identity = f"{self._host}, pid {os.getpid()}"
        self._started_at = time.time()
        self._api_url: str | None = None

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
        self._api_url = api_url
        if self._instance_lock is not None:
            self._instance_lock.describe(api_url)

    @property
    def identity(self) -> str:
        return self._identity

    def watch(self, listener: Callable[[Changes | None], None]) -> Callable[[], None]:
        # Nobody else writes to this file while we hold the instance lock: nothing to tell.
        return lambda: None

    def nodes(self) -> list[NodeInfo]:
        # Just this instance, so that GET /nodes answers alike on both backends (and says
        # where this one's API is); it is alive as long as it can answer.
        now = time.time()
        running = tuple(t.id for t in self.page(TaskQuery(status=TaskStatus.RUNNING), 1000))
        return [NodeInfo("local", self._host, os.getpid(), self._api_url, self._started_at,
                         now, alive=True, current=True, running=running)]

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
        "INSERT INTO tasks (id, action, data, status, max_attempts, created_at, run_after, "
        "priority, after_ids, waiting, idempotency_key, request_hash) "
        "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def add(self, new: NewTask, now: float) -> Added:
        when = stored_time(now)
        task_id = new_task_id()
        after = list(dict.fromkeys(new.after))  # each once, in the order given

        def write(conn: sqlite3.Connection) -> Added:
            if new.idempotency_key is not None:
                rows = conn.execute(
                    f"SELECT {TASK_COLUMNS}, request_hash FROM tasks WHERE idempotency_key = ?",
                    (new.idempotency_key,),
                ).fetchall()
                if rows:
                    *columns, request_hash = rows[0]
                    if request_hash != new.request_hash:
                        raise IdempotencyConflictError(new.idempotency_key, columns[1])
                    return Added(Task.from_row(columns), created=False)
            waiting, blocker = 0, None
            if after:
                waiting, blocker = self._dependencies(conn, after)
            run_after = when if new.run_after is None else stored_time(new.run_after)
            [row] = conn.execute(
                f"{self._INSERT} RETURNING {TASK_COLUMNS}",
                (task_id, new.action, new.data_json, new.max_attempts, when, run_after,
                 new.priority, json_list(after) if after else None, waiting,
                 new.idempotency_key, new.request_hash),
            ).fetchall()
            if after:
                conn.executemany("INSERT INTO task_deps (dep_id, task_id) VALUES (?, ?)",
                                 [(dep, task_id) for dep in after])
            if blocker is not None:
                dep_id, dep_status = blocker
                [row] = conn.execute(
                    f"UPDATE tasks SET status = 'cancelled', processed_at = ?, error = ? "
                    f"WHERE id = ? RETURNING {TASK_COLUMNS}",
                    (when, _waited_for(dep_id, dep_status), task_id),
                ).fetchall()
            return Added(Task.from_row(row), created=True)

        return self._write(write)

    @staticmethod
    def _dependencies(conn: sqlite3.Connection, after: list[str]
                      ) -> tuple[int, tuple[str, str] | None]:
        """(how many of *after* are not completed, the first failed or cancelled one)."""
        found = dict(conn.execute(
            "SELECT id, status FROM tasks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(after),),
        ).fetchall())
        missing = [dep for dep in after if dep not in found]
        if missing:
            raise UnknownTasksError(missing)
        blocker = next(((dep, found[dep]) for dep in after
                        if found[dep] in ("failed", "cancelled")), None)
        return sum(1 for dep in after if found[dep] != "completed"), blocker

    def add_many(self, new: NewTask, copies: int, now: float) -> list[str]:
        if new.idempotency_key is not None:
            raise ValueError("copies of a task cannot share an idempotency key")
        when = stored_time(now)
        run_after = when if new.run_after is None else stored_time(new.run_after)
        after = list(dict.fromkeys(new.after))
        ids = [new_task_id() for _ in range(copies)]

        def write(conn: sqlite3.Connection) -> list[str]:
            waiting, blocker = self._dependencies(conn, after) if after else (0, None)
            after_json = json_list(after) if after else None
            conn.executemany(self._INSERT, [
                (task_id, new.action, new.data_json, new.max_attempts, when, run_after,
                 new.priority, after_json, waiting, None, None) for task_id in ids
            ])
            if after:
                conn.executemany("INSERT INTO task_deps (dep_id, task_id) VALUES (?, ?)",
                                 [(dep, task_id) for task_id in ids for dep in after])
            if blocker is not None:
                conn.execute(
                    "UPDATE tasks SET status = 'cancelled', processed_at = ?, error = ? "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (when, _waited_for(*blocker), json.dumps(ids)),
                )
            return ids

        return self._write(write)

    # Ready tasks by priority, then oldest first, as one statement walking the tasks_ready
    # index; nothing while the queue is paused.
    _CLAIM = (
        f"UPDATE tasks SET status = 'running', started_at = ?, processed_at = NULL, "
        f"attempts = attempts + 1, progress = NULL, progress_message = NULL "
        f"WHERE seq IN (SELECT seq FROM tasks INDEXED BY tasks_ready "
        f"WHERE status = 'queued' AND waiting = 0 AND run_after <= ? "
        f"ORDER BY priority DESC, seq LIMIT ?) "
        f"AND (SELECT paused FROM queue_state) = 0 "
        f"RETURNING {TASK_COLUMNS}"
    )
    # How a running attempt ends, by the status it ends in; each takes
    # (result or error, processed_at or run_after, id, attempt). A task whose cancellation
    # was requested while it ran ends cancelled, whatever its attempt came to.
    _FENCE = "WHERE id = ? AND status = 'running' AND attempts = ?"
    _IF_CANCELLED = "CASE WHEN cancel_requested THEN 'cancelled' ELSE"
    _CANCELLED_ERROR = "'cancelled while running'"
    _FINISH: ClassVar[dict[TaskStatus, str]] = {
        TaskStatus.COMPLETED: (
            f"UPDATE tasks SET status = {_IF_CANCELLED} 'completed' END, "
            f"result = CASE WHEN cancel_requested THEN NULL ELSE ? END, "
            f"error = CASE WHEN cancel_requested THEN {_CANCELLED_ERROR} END, processed_at = ? "
            f"{_FENCE} RETURNING {TASK_COLUMNS}"
        ),
        TaskStatus.QUEUED: (
            f"UPDATE tasks SET status = {_IF_CANCELLED} 'queued' END, "
            f"error = CASE WHEN cancel_requested THEN {_CANCELLED_ERROR} ELSE ? END, "
            f"run_after = ?, processed_at = CASE WHEN cancel_requested THEN ?3 END "
            f"{_FENCE} RETURNING {TASK_COLUMNS}"
        ),
        TaskStatus.FAILED: (
            f"UPDATE tasks SET status = {_IF_CANCELLED} 'failed' END, "
            f"error = CASE WHEN cancel_requested THEN {_CANCELLED_ERROR} || ': ' || ? "
            f"ELSE ? END, processed_at = ? "
            f"{_FENCE} RETURNING {TASK_COLUMNS}"
        ),
    }

    def settle(self, finishes: Sequence[Finish], claim: int, now: float) -> Settled:
        when = stored_time(now)
        work = [(f, self._finish_params(f, when)) for f in finishes]

        def write(conn: sqlite3.Connection) -> Settled:
            stored: list[Task | None] = []
            cascaded: list[Task] = []
            for f, params in work:
                rows = conn.execute(self._FINISH[f.status], params).fetchall()
                task = Task.from_row(rows[0]) if rows else None
                stored.append(task)
                if task is not None and task.status.is_finished:
                    cascaded.extend(self._cascade(conn, task, when))
            claimed = conn.execute(self._CLAIM, (when, when, claim)).fetchall() if claim else []
            tasks = sorted((Task.from_row(r) for r in claimed), key=lambda t: (-t.priority, t.seq))
            return Settled(stored, tasks, cascaded)

        return self._write(write)

    @staticmethod
    def _finish_params(f: Finish, now: float) -> tuple[object, ...]:
        when = stored_time(f.when)
        if f.status == TaskStatus.QUEUED:
            # ?3 (processed_at, when the requested cancellation ends it) is *now*.
            return (f.text, when, now, f.task_id, f.attempt)
        if f.status == TaskStatus.FAILED:
            return (f.text, f.text, when, f.task_id, f.attempt)
        return (f.text, when, f.task_id, f.attempt)

    def _cascade(self, conn: sqlite3.Connection, task: Task, now: float) -> list[Task]:
        """What a finished task changes for the tasks waiting for it (one index lookup when
        none does)."""
        if conn.execute("SELECT 1 FROM task_deps WHERE dep_id = ? LIMIT 1",
                        (task.id,)).fetchone() is None:
            return []
        if task.status == TaskStatus.COMPLETED:
            rows = conn.execute(
                f"UPDATE tasks SET waiting = waiting - 1 WHERE id IN "
                f"(SELECT task_id FROM task_deps WHERE dep_id = ?) "
                f"AND status = 'queued' AND waiting > 0 RETURNING {TASK_COLUMNS}",
                (task.id,),
            ).fetchall()
        else:
            how = "failed" if task.status == TaskStatus.FAILED else "was cancelled"
            rows = conn.execute(
                f"WITH RECURSIVE chain(id, cause) AS ("
                f"  SELECT task_id, dep_id FROM task_deps WHERE dep_id = ?1"
                f"  UNION SELECT d.task_id, d.dep_id FROM task_deps d JOIN chain c"
                f"  ON d.dep_id = c.id) "
                f"UPDATE tasks SET status = 'cancelled', processed_at = ?2, error = "
                f"'cancelled: task ' || (SELECT cause FROM chain WHERE chain.id = tasks.id "
                f"LIMIT 1) || ', which it waits for, ' || CASE WHEN (SELECT cause FROM chain "
                f"WHERE chain.id = tasks.id LIMIT 1) = ?1 THEN ?3 ELSE 'was cancelled' END "
                f"WHERE id IN (SELECT id FROM chain) AND status = 'queued' "
                f"RETURNING {TASK_COLUMNS}",
                (task.id, now, how),
            ).fetchall()
        return [Task.from_row(r) for r in rows]

    def release(self, task_id: str, attempt: int, run_after: float, error: str | None
                ) -> Task | None:
        sql = (f"UPDATE tasks SET status = {self._IF_CANCELLED} 'queued' END, "
               f"attempts = max(0, attempts - 1), started_at = NULL, run_after = ?, "
               f"processed_at = CASE WHEN cancel_requested THEN ? END, "
               f"error = CASE WHEN cancel_requested THEN {self._CANCELLED_ERROR} "
               f"ELSE coalesce(?, error) END "
               f"{self._FENCE} RETURNING {TASK_COLUMNS}")
        when = stored_time(run_after)
        params = (when, when, error, task_id, attempt)

        def write(conn: sqlite3.Connection) -> Task | None:
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                return None
            task = Task.from_row(rows[0])
            if task.status.is_finished:
                self._cascade(conn, task, when)
            return task

        return self._write(write)

    def cancel_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        when = stored_time(now)
        ids = json.dumps(list(task_ids))

        def write(conn: sqlite3.Connection) -> list[Task]:
            rows = conn.execute(
                f"UPDATE tasks SET status = 'cancelled', processed_at = ? "
                f"WHERE id IN (SELECT value FROM json_each(?)) AND status = 'queued' "
                f"RETURNING {TASK_COLUMNS}", (when, ids),
            ).fetchall()
            rows += conn.execute(
                f"UPDATE tasks SET cancel_requested = 1 "
                f"WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running' "
                f"AND NOT cancel_requested RETURNING {TASK_COLUMNS}", (ids,),
            ).fetchall()
            changed = [Task.from_row(r) for r in rows]
            for task in list(changed):
                if task.status == TaskStatus.CANCELLED:
                    changed.extend(self._cascade(conn, task, when))
            return changed

        return self._write(write)

    # What a retried task waits for is read from its own list (after_ids) by the unique index
    # on id: task_deps is keyed by the task waited for, so asking it by the waiting task would
    # read it whole. A task waited for that was deleted since counts as done.
    _RETRY = (
        f"UPDATE tasks SET status = 'queued', attempts = 0, result = NULL, error = NULL, "
        f"started_at = NULL, processed_at = NULL, run_after = ?, progress = NULL, "
        f"progress_message = NULL, cancel_requested = 0, waiting = "
        f"(SELECT count(*) FROM json_each(tasks.after_ids) d JOIN tasks t ON t.id = d.value "
        f"WHERE t.status != 'completed') "
        f"WHERE id IN (SELECT value FROM json_each(?)) AND status IN ({_sql_list(RETRYABLE)}) "
        f"AND NOT EXISTS (SELECT 1 FROM json_each(tasks.after_ids) d JOIN tasks t "
        f"ON t.id = d.value WHERE t.status IN ('failed', 'cancelled')) "
        f"RETURNING {TASK_COLUMNS}"
    )

    def retry_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        params = (stored_time(now), json.dumps(list(task_ids)))
        rows = self._write(lambda conn: conn.execute(self._RETRY, params).fetchall())
        return [Task.from_row(r) for r in rows]

    def delete_many(self, task_ids: Sequence[str]) -> list[Task]:
        ids = json.dumps(list(task_ids))

        def write(conn: sqlite3.Connection) -> list[Task]:
            rows = conn.execute(
                f"DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?)) "
                f"AND status IN {_FINISHED_SQL} RETURNING {TASK_COLUMNS}", (ids,)).fetchall()
            return self._forget(conn, rows)

        deleted = self._write(write)
        self.logs.remove([t.id for t in deleted])
        return deleted

    def purge(self, completed_before: float, failed_before: float, limit: int) -> list[Task]:
        def write(conn: sqlite3.Connection) -> list[Task]:
            rows: list[Any] = []
            for status, before in (("completed", completed_before), ("failed", failed_before),
                                   ("cancelled", failed_before)):
                left = limit - len(rows)
                if left <= 0:
                    break
                rows += conn.execute(
                    f"DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks INDEXED BY "
                    f"tasks_finished WHERE status = ? AND processed_at IS NOT NULL "
                    f"AND processed_at < ? ORDER BY processed_at LIMIT ?) "
                    f"RETURNING {TASK_COLUMNS}", (status, stored_time(before), left)).fetchall()
            return self._forget(conn, rows)

        deleted = self._write(write)
        self.logs.remove([t.id for t in deleted])
        return deleted

    @staticmethod
    def _forget(conn: sqlite3.Connection, rows: list[Any]) -> list[Task]:
        """Tasks from deleted rows, after dropping their links in task_deps both ways: to the
        tasks they waited for, by each pair (the table's key: a lookup by the waiting task
        alone would read the whole table), and from tasks that waited for them (finished, so
        their waiting counts already left them out)."""
        deleted = [Task.from_row(r) for r in rows]
        pairs = [(dep, t.id) for t in deleted for dep in t.after]
        if pairs:
            conn.executemany("DELETE FROM task_deps WHERE dep_id = ? AND task_id = ?", pairs)
        if deleted:
            conn.execute("DELETE FROM task_deps WHERE dep_id IN "
                         "(SELECT value FROM json_each(?))", (json.dumps([t.id for t in deleted]),))
        return deleted

    _PROGRESS = (
        f"UPDATE tasks SET progress = ?, progress_message = ? "
        f"WHERE id = ? AND status = 'running' AND attempts = ? RETURNING {TASK_COLUMNS}"
    )

    def set_progress(self, reports: Sequence[Progress]) -> list[Task]:
        params = [(None if r.fraction is None else stored_time(r.fraction), r.message,
                   r.task_id, r.attempt) for r in reports]

        def write(conn: sqlite3.Connection) -> list[Task]:
            updated = []
            for p in params:
                rows = conn.execute(self._PROGRESS, p).fetchall()
                if rows:
                    updated.append(Task.from_row(rows[0]))
            return updated

        return self._write(write) if params else []

    def append_log(self, task_id: str, data: bytes) -> None:
        self.logs.append(task_id, data)

    def shift_retry_times(self, seconds: float, after: float) -> int:
        return self._write(lambda conn: conn.execute(
            "UPDATE tasks SET run_after = run_after + ? WHERE status = 'queued' AND run_after > ?",
            (seconds, after),
        ).rowcount)

    def recover(self, now: float) -> int:
        # Under the instance lock, every running task is one a stopped process left behind.
        sql = (
            "UPDATE tasks SET "
            "status = CASE WHEN cancel_requested THEN 'cancelled' "
            "WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
            "error = CASE WHEN cancel_requested THEN 'cancelled while running' "
            "ELSE 'interrupted: Taskdesk stopped while this task was running' END, "
            "processed_at = CASE WHEN cancel_requested OR attempts >= max_attempts "
            "THEN ?1 END, run_after = ?1 "
            f"WHERE status = 'running' RETURNING {TASK_COLUMNS}"
        )
        when = stored_time(now)

        def write(conn: sqlite3.Connection) -> int:
            rows = conn.execute(sql, (when,)).fetchall()
            for row in rows:
                task = Task.from_row(row)
                if task.status.is_finished:
                    self._cascade(conn, task, when)
            return len(rows)

        return self._write(write)

    def set_paused(self, paused: bool) -> None:
        self._write(lambda conn: conn.execute("UPDATE queue_state SET paused = ?",
                                              (int(paused),)))

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO schedules (name, paused) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused", (name, int(paused))))

    def record_firing(self, name: str, due: float, task_id: str) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO schedules (name, last_due, last_task_id) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_due = max(coalesce(last_due, 0), "
            "excluded.last_due), last_task_id = CASE WHEN excluded.last_due >= "
            "coalesce(last_due, 0) THEN excluded.last_task_id ELSE last_task_id END",
            (name, stored_time(due), task_id)))

    # -- reads -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))

    def page(self, query: TaskQuery, limit: int, after: Task | None = None) -> list[Task]:
        tasks: list[Task] = []
        for clauses, params, order in self._parts(query, limit, after):
            rows = self._read(
                f"SELECT {TASK_COLUMNS} FROM tasks{_where(clauses)} ORDER BY {order} LIMIT ?",
                (*params, limit - len(tasks)))
            tasks += [Task.from_row(r) for r in rows]
            if len(tasks) >= limit:
                break
        return tasks

    def list_json(self, query: TaskQuery, limit: int, offset: int) -> tuple[str, int]:
        # One row, not one per task: Python's sqlite3 releases the interpreter lock around
        # each row it steps to, so a listing of 100 rows took 200 turns at the lock, and with
        # a dozen API threads listing at once each turn was a wait (16 threads listed 2.4
        # times slower than one). The subquery's order is the order of the concatenation;
        # an order in two parts (see _parts) is their UNION ALL, which SQLite runs left to
        # right, each part reading at most the rows the page could need.
        arms, arm_params = [], []
        for clauses, params, order in self._parts(query, limit + offset):
            arms.append(f"SELECT * FROM (SELECT {TASK_JSON_SQL} AS task FROM tasks"
                        f"{_where(clauses)} ORDER BY {order} LIMIT ?)")
            arm_params += [*params, limit + offset]
        [(text, count)] = self._read(
            f"SELECT group_concat(task, ','), count(*) FROM ({' UNION ALL '.join(arms)} "
            f"LIMIT ? OFFSET ?)", (*arm_params, limit, offset))
        return text or "", int(count)

    def _parts(self, query: TaskQuery, rows: int, after: Task | None = None
               ) -> list[tuple[list[str], list[object], str]]:
        """The statements of a listing of up to *rows* tasks after *after*, in the listing's
        order: (WHERE clauses, parameters, ORDER BY) of each. An order by a value some tasks
        do not have yet (_PARTIAL_SORTS) is in two parts: the tasks with the value, walked
        in its partial index, and the others (last descending, first ascending, like the -1
        that stands for them), by seq in tasks_unset."""
        walk = self._walks(query, rows)
        clauses, params = _filters(query, True, walk)
        direction = " DESC" if query.descending else ""
        op = "<" if query.descending else ">"
        partial = _PARTIAL_SORTS.get(query.sort)
        if partial is None:
            return self._valued(query, clauses, params, walk, SORT_SQL[query.sort], after)
        expression, has_value, lacks_value = partial
        with_value = [*clauses, has_value]
        without = [*clauses, _UNSET_INDEX_WHERE, lacks_value]
        after_lacks = after is not None and _lacks_value(query.sort, after)
        valued = self._valued(query, with_value, params,
                              walk, expression, None if after_lacks else after)
        unvalued = [(without if not after_lacks else [*without, f"seq {op} ?"],
                     params if not after_lacks or after is None else [*params, after.seq],
                     f"seq{direction}")]
        if query.descending:
            return unvalued if after_lacks else valued + unvalued
        return unvalued + valued if after is None or after_lacks else valued

    @staticmethod
    def _valued(query: TaskQuery, clauses: list[str], params: list[object], walk: bool,
                expression: str, after: Task | None
                ) -> list[tuple[list[str], list[object], str]]:
        direction = " DESC" if query.descending else ""
        op = "<" if query.descending else ">"
        order = f"seq{direction}" if expression == "seq" else (
            f"{expression}{direction}, seq{direction}")
        if after is None:
            return [(clauses, params, order)]
        if expression == "seq":
            return [([*clauses, f"seq {op} ?"], [*params, after.seq], order)]
        # The cursor's values as given, not re-read: paging goes on from where the last
        # page ended even when that task changed or was deleted since. In two parts,
        # because SQLite seeks an index by the first value of a row value only: a page
        # deep among a million equal values would read all of those before the cursor.
        # Ties of the cursor's value first (equality, then a range of the rowid: a
        # seek; ordered by seq alone, or SQLite sorts what the index gives in order),
        # then the values beyond it (a range: a seek).
        value = sort_value(query.sort, after)
        if query.status is not None and not walk:
            # A status few tasks have: its index, not the order's (see _walks).
            expression = "+" + expression
        return [([*clauses, f"{expression} = ?", f"seq {op} ?"], [*params, value, after.seq],
                 f"seq{direction}"),
                ([*clauses, f"{expression} {op} ?"], [*params, value], order)]

    def _walks(self, query: TaskQuery, rows: int) -> bool:
        """Whether a listing of *rows* rows should walk the index of its order, filtering as
        it goes, rather than take the tasks of its status from tasks_by_status and sort them.
        Walking reads about rows × all / matching entries, sorting reads every match: with
        the exact counts at hand (O(1)), walk when matching² >= rows × all, so neither reads
        more than √(rows × all) rows (10,000 for a page of 100 in a million tasks). An
        index per (status, order) would read only the page, but every claim and outcome
        would rewrite one more index entry (see docs/design.md). Orders by creation or
        status are served by tasks_by_status itself."""
        if query.sort in (TaskSort.CREATED, TaskSort.STATUS):
            return False
        status = TaskStatus.QUEUED if query.scheduled_after is not None else query.status
        if status is None:
            return False
        counts = self.counts()
        return counts[status] ** 2 >= rows * sum(counts.values())

    def count(self, query: TaskQuery) -> int:
        if (query.action is None and not query.search and query.ids is None
                and query.scheduled_after is None):
            counts = self.counts()
            return counts[query.status] if query.status is not None else sum(counts.values())
        clauses, params = _filters(query)
        return int(self._read(f"SELECT count(*) FROM tasks{_where(clauses)}", params)[0][0])

    def counts(self) -> dict[TaskStatus, int]:
        # Kept by triggers in the same transaction as each change (migration 3).
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._read("SELECT status, n FROM task_counts"):
            counts[TaskStatus(status)] = n
        return counts

    def count_by_status(self, search: str | None = None) -> dict[TaskStatus, int]:
        if not search:
            return self.counts()
        clauses, params = _filters(TaskQuery(search=search))
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._read(
            f"SELECT status, count(*) FROM tasks{_where(clauses)} GROUP BY status", params
        ):
            counts[TaskStatus(status)] = n
        return counts

    # A task stored due (run_after = created_at) is not in the index, and is due already.
    _NEXT_DUE = (
        "SELECT min(run_after) FROM tasks INDEXED BY tasks_delayed "
        "WHERE status = 'queued' AND waiting = 0 AND run_after > created_at AND run_after > ?"
    )

    def next_due(self, now: float) -> float | None:
        [(earliest,)] = self._read(self._NEXT_DUE, (now,))
        return None if earliest is None else float(earliest)

    def paused(self) -> bool:
        return bool(self._read("SELECT paused FROM queue_state")[0][0])

    def schedule_states(self) -> dict[str, ScheduleState]:
        rows = self._read("SELECT name, paused, last_due, last_task_id FROM schedules")
        return {name: ScheduleState(name, bool(paused), last_due, last_task)
                for name, paused, last_due, last_task in rows}

    def read_log(self, task_id: str, offset: int, limit: int) -> LogSlice:
        return self.logs.read(task_id, offset, limit)


def _filters(query: TaskQuery, listing: bool = False, walk: bool = False
             ) -> tuple[list[str], list[object]]:
    """The WHERE clauses of *query* and their parameters. For a *listing*, the action filter
    is kept from the planner (a unary + hides a column from it) unless its index gives the
    order: SQLite would otherwise take every task of the action and sort them. *walk* does
    the same to the status filter (see SqliteTaskStore._walks)."""
    clauses: list[str] = []
    params: list[object] = []
    plus = "+" if walk else ""
    if query.status is not None:
        clauses.append(f"{plus}status = ?")
        params.append(TaskStatus(query.status).value)
    if query.action is not None:
        hidden = listing and query.sort not in (TaskSort.CREATED, TaskSort.ACTION)
        clauses.append(f"{'+' if hidden else ''}action = ?")
        params.append(query.action)
    if query.search:
        # LIKE is case-insensitive for ASCII letters only; _ and % are escaped to be literal.
        pattern = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("(id LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\')")
        params.extend([pattern + "%", "%" + pattern + "%"])
    if query.ids is not None:
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(query.ids)))
    if query.scheduled_after is not None:
        clauses.append(f"{plus}status = 'queued' AND run_after > ?")
        params.append(query.scheduled_after)
    return clauses, params


def _where(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""


# What each order compares before seq, written exactly as the index that serves it (SQLite
# uses an index on an expression only for the same expression): the rowid itself, or
# tasks_by_status, tasks_by_action, tasks_by_priority (migrations 3, 5). Each index ends in
# the rowid, so walking it gives the tie-breaker's order too and no listing sorts; a filter
# is applied as the index is walked. -1 stands for a time not there yet (TaskSort).
SORT_SQL: dict[TaskSort, str] = {
    TaskSort.CREATED: "seq",
    TaskSort.STARTED: "coalesce(started_at, -1)",
    TaskSort.FINISHED: "coalesce(processed_at, -1)",
    TaskSort.DURATION: "coalesce(processed_at - started_at, -1)",
    TaskSort.ATTEMPTS: "attempts",
    TaskSort.ACTION: "action",
    TaskSort.STATUS: "status",
    TaskSort.PRIORITY: "priority",
}

# Orders by a value a task does not have when it is submitted (no start, no finish, no
# attempt): (the value, the condition of having it, of lacking it). Their indexes
# (migration 6) are partial: the tasks that have the value, in tasks_by_started,
# tasks_by_finished, tasks_by_duration or tasks_by_attempts, and those lacking any of them
# in tasks_unset, by seq. A full index of each value gave every submission an entry, and
# its commit a page, in four more indexes: half again its SQLite time (see
# benchmarks/insert_cost.py); now it has one. The condition of lacking a value is written
# beside tasks_unset's own (_UNSET_INDEX_WHERE), which SQLite must find in a query's WHERE
# to use that index.
_PARTIAL_SORTS: dict[TaskSort, tuple[str, str, str]] = {
    TaskSort.STARTED: ("started_at", "started_at IS NOT NULL", "started_at IS NULL"),
    TaskSort.FINISHED: ("processed_at", "processed_at IS NOT NULL", "processed_at IS NULL"),
    TaskSort.DURATION: ("processed_at - started_at",
                        "(processed_at IS NOT NULL AND started_at IS NOT NULL)",
                        "(processed_at IS NULL OR started_at IS NULL)"),
    TaskSort.ATTEMPTS: ("attempts", "attempts > 0", "attempts = 0"),
}
_UNSET_INDEX_WHERE = "(started_at IS NULL OR processed_at IS NULL OR attempts = 0)"


def _lacks_value(sort: TaskSort, task: Task) -> bool:
    """Whether *task* is among the tasks of _PARTIAL_SORTS[*sort*] without the value."""
    if sort == TaskSort.ATTEMPTS:
        return task.attempts == 0
    return sort_value(sort, task) == ABSENT


def order_by(query: TaskQuery) -> str:
    direction = " DESC" if query.descending else ""
    expression = SORT_SQL[query.sort]
    if expression == "seq":
        return f"seq{direction}"
    return f"{expression}{direction}, seq{direction}"


def _waited_for(dep_id: str, dep_status: str) -> str:
    how = "failed" if dep_status == "failed" else "was cancelled"
    return f"cancelled: task {dep_id}, which it waits for, {how}"
