"""TaskStore: every read and write of tasks, as single SQL statements or short transactions.

Threading: reads run on a connection of the calling thread's own (SQLite connections must not
be shared by threads that use them at once; WAL lets them read while a write commits). Writes
go through one WriteBatcher thread, which commits all writes waiting at a time together (one
fsync per batch); a write method returns once its change is committed. Every state change is
one conditional UPDATE (``... WHERE id = ? AND status = ?``), so two threads racing over the
same task (a cancel and a claim, say) always have exactly one winner.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from storage.connection import (
    DatabaseDamagedError,
    StorageUnavailableError,
    Synchronous,
    damage_in,
    open_connection,
)
from storage.models import STATUSES, TASK_COLUMNS, TASK_JSON_SQL, Task, TaskStatus
from storage.writer import WriteBatcher

T = TypeVar("T")

FinishStatus = Literal["completed", "queued", "failed"]


@dataclass(frozen=True, slots=True)
class Finish:
    """How a running task's attempt ended, to be stored: ``completed`` with the result JSON in
    *text* at time *when*; ``queued`` again with the error in *text*, due at *when*; or
    ``failed`` for good with the error in *text* at time *when*."""

    task_id: str
    status: FinishStatus
    text: str
    when: float


class TaskStore:
    def __init__(self, path: Path, synchronous: Synchronous = "full") -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writer = WriteBatcher(path, synchronous)
        # Why the database could not be used, until a write succeeds again (for /health).
        self.problem: str | None = None
        # What is wrong with the file once SQLite has found it damaged: from then on nothing
        # is written to it (writing into a damaged database can spread the damage).
        self.damage: str | None = None
        self.on_damage: Callable[[str], None] | None = None  # told once, with the message

    # -- connections -------------------------------------------------------------------------

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
        """Close every thread's connection; call once all threads using the store are done."""
        self._writer.close()
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            self.problem = f"cannot read database {self.path}: {exc}"
            raise StorageUnavailableError(self.problem) from exc
        except (sqlite3.DatabaseError, DatabaseDamagedError) as exc:
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
        if first and self.on_damage is not None:
            self.on_damage(message)
        raise DatabaseDamagedError(message) from exc

    def _one(self, sql: str, params: Sequence[object] = ()) -> Task | None:
        rows = self._read(sql, params)
        return Task.from_row(rows[0]) if rows else None

    def _write_one(self, sql: str, params: Sequence[object] = ()) -> Task | None:
        """Run one ``... RETURNING`` statement in the next group commit."""
        rows = self._write(lambda conn: conn.execute(sql, params).fetchall())
        return Task.from_row(rows[0]) if rows else None

    # -- writes ------------------------------------------------------------------------------

    def add(self, action: str, data_json: str, max_attempts: int, now: float) -> Task:
        """Store a new task as queued and return it."""
        task = self._write_one(
            f"INSERT INTO tasks (id, action, data, status, max_attempts, created_at) "
            f"VALUES (?, ?, ?, 'queued', ?, ?) RETURNING {TASK_COLUMNS}",
            (str(uuid.uuid4()), action, data_json, max_attempts, now),
        )
        assert task is not None
        return task

    def add_many(
        self, items: Iterable[tuple[str, str]], max_attempts: int, now: float
    ) -> list[str]:
        """Store several (action, data_json) tasks in one transaction; return their ids."""
        rows = [(str(uuid.uuid4()), action, data, max_attempts, now) for action, data in items]
        self._write(lambda conn: conn.executemany(
            "INSERT INTO tasks (id, action, data, status, max_attempts, created_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?)",
            rows,
        ))
        return [row[0] for row in rows]

    _CLAIM = (
        f"UPDATE tasks SET status = 'running', started_at = ?, processed_at = NULL, "
        f"attempts = attempts + 1 "
        f"WHERE id IN (SELECT value FROM json_each(?)) AND status = 'queued' "
        f"RETURNING {TASK_COLUMNS}"
    )
    # How a running task's attempt ends, by the status it ends in; each takes
    # (result or error, processed_at or run_after, id).
    _FINISH: ClassVar[dict[str, str]] = {
        "completed": (
            f"UPDATE tasks SET status = 'completed', result = ?, error = NULL, processed_at = ? "
            f"WHERE id = ? AND status = 'running' RETURNING {TASK_COLUMNS}"
        ),
        "queued": (
            f"UPDATE tasks SET status = 'queued', error = ?, run_after = ? "
            f"WHERE id = ? AND status = 'running' RETURNING {TASK_COLUMNS}"
        ),
        "failed": (
            f"UPDATE tasks SET status = 'failed', error = ?, processed_at = ? "
            f"WHERE id = ? AND status = 'running' RETURNING {TASK_COLUMNS}"
        ),
    }

    def claim(self, task_id: str, now: float) -> Task | None:
        """queued → running, counting an attempt; None if the task is no longer queued."""
        claimed = self.claim_many([task_id], now)
        return claimed[0] if claimed else None

    def claim_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        """Claim those of *task_ids* that are still queued, in one write; oldest first."""
        return self.settle([], task_ids, now)[1]

    def complete(self, task_id: str, result_json: str, now: float) -> Task | None:
        """running → completed with its result."""
        return self._finish_one(Finish(task_id, "completed", result_json, now))

    def requeue(self, task_id: str, error: str, run_after: float) -> Task | None:
        """running → queued after a failed attempt; it becomes due again at *run_after*."""
        return self._finish_one(Finish(task_id, "queued", error, run_after))

    def fail(self, task_id: str, error: str, now: float) -> Task | None:
        """running → failed for good."""
        return self._finish_one(Finish(task_id, "failed", error, now))

    def _finish_one(self, finish: Finish) -> Task | None:
        return self.settle([finish], [], 0.0)[0][0]

    def settle(
        self, finishes: Sequence[Finish], claim_ids: Sequence[str], now: float
    ) -> tuple[list[Task | None], list[Task]]:
        """Store how some attempts ended and claim the next tasks, all in one write.

        A worker finishing one batch and starting the next thus waits for one commit instead
        of two. Returns each finished task as stored (None where it was no longer running) and
        the tasks claimed, oldest first (those of *claim_ids* that were still queued).
        """
        ids = json.dumps(list(claim_ids)) if claim_ids else None

        def write(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            stored = []
            for f in finishes:
                rows = conn.execute(self._FINISH[f.status], (f.text, f.when, f.task_id)).fetchall()
                stored.append(rows[0] if rows else None)
            claimed = conn.execute(self._CLAIM, (now, ids)).fetchall() if ids else []
            return stored, claimed

        stored, claimed = self._write(write)
        tasks = sorted((Task.from_row(r) for r in claimed), key=lambda t: t.seq)
        return [None if r is None else Task.from_row(r) for r in stored], tasks

    def release(self, task_id: str, run_after: float, error: str | None) -> Task | None:
        """running → queued, giving the attempt back (the action's outcome was not stored)."""
        return self._write_one(
            f"UPDATE tasks SET status = 'queued', attempts = max(0, attempts - 1), "
            f"started_at = NULL, run_after = ?, error = coalesce(?, error) "
            f"WHERE id = ? AND status = 'running' RETURNING {TASK_COLUMNS}",
            (run_after, error, task_id),
        )

    _CANCEL = (
        f"UPDATE tasks SET status = 'cancelled', processed_at = ? "
        f"WHERE id IN (SELECT value FROM json_each(?)) AND status = 'queued' "
        f"RETURNING {TASK_COLUMNS}"
    )
    _RETRY = (
        f"UPDATE tasks SET status = 'queued', attempts = 0, result = NULL, error = NULL, "
        f"started_at = NULL, processed_at = NULL, run_after = 0 "
        f"WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('failed', 'cancelled') "
        f"RETURNING {TASK_COLUMNS}"
    )

    def cancel(self, task_id: str, now: float) -> Task | None:
        """queued → cancelled; None if the task is not queued (or does not exist)."""
        tasks = self.cancel_many([task_id], now)
        return tasks[0] if tasks else None

    def cancel_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        """Cancel those of *task_ids* that are queued, in one write; return them."""
        ids = json.dumps(list(task_ids))
        rows = self._write(lambda conn: conn.execute(self._CANCEL, (now, ids)).fetchall())
        return [Task.from_row(r) for r in rows]

    def retry(self, task_id: str) -> Task | None:
        """failed or cancelled → queued with a fresh set of attempts; None otherwise."""
        tasks = self.retry_many([task_id])
        return tasks[0] if tasks else None

    def retry_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Queue again those of *task_ids* that are failed or cancelled, in one write."""
        ids = json.dumps(list(task_ids))
        rows = self._write(lambda conn: conn.execute(self._RETRY, (ids,)).fetchall())
        return [Task.from_row(r) for r in rows]

    def shift_retry_times(self, seconds: float, after: float) -> int:
        """Move the retry time of queued tasks due after *after* by *seconds*."""
        return self._write(lambda conn: conn.execute(
            "UPDATE tasks SET run_after = run_after + ? WHERE status = 'queued' AND run_after > ?",
            (seconds, after),
        ).rowcount)

    def recover_running(self, now: float) -> int:
        """Put tasks left running by a stopped process back in the queue; return how many.

        The interrupted attempt stays counted, so a task that kills the process every time it
        runs ends as failed instead of looping forever.
        """
        sql = (
            "UPDATE tasks SET "
            "status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
            "error = 'interrupted: Taskdesk stopped while this task was running', "
            "processed_at = CASE WHEN attempts >= max_attempts THEN ? ELSE NULL END, "
            "run_after = 0 "
            "WHERE status = 'running'"
        )
        return self._write(lambda conn: conn.execute(sql, (now,)).rowcount)

    # -- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))

    def list_tasks(
        self,
        status: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        search: str | None = None,
        before_seq: int | None = None,
    ) -> list[Task]:
        """Tasks newest first, optionally filtered by status, exact action and a search text
        (a prefix of the id, or part of the action). ``before_seq`` pages by cursor: only
        tasks older than that one, which stays fast however deep the page is."""
        where, params = _filters(status, action, search, before_seq)
        rows = self._read(
            f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [Task.from_row(r) for r in rows]

    def list_json(
        self,
        status: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[str, int]:
        """list_tasks() as the JSON text of an array's items (each task as Task.to_json()
        writes it, separated by commas) and how many items that is.

        One row, not one per task: Python's sqlite3 releases the interpreter lock around each
        row it steps to, so a listing of 100 rows took 200 turns at the lock, and with a dozen
        API threads listing at once each turn was a wait (16 threads listed 2.4 times slower
        than one). The subquery's order is the order of the concatenation.
        """
        where, params = _filters(status, action)
        [(text, count)] = self._read(
            f"SELECT group_concat(task, ','), count(*) FROM (SELECT {TASK_JSON_SQL} AS task "
            f"FROM tasks{where} ORDER BY seq DESC LIMIT ? OFFSET ?)",
            (*params, limit, offset),
        )
        return text or "", int(count)

    def count(
        self, status: str | None = None, action: str | None = None, *, search: str | None = None
    ) -> int:
        if action is None and not search:
            counts = self.counts()
            return counts[status] if status is not None else sum(counts.values())
        where, params = _filters(status, action, search)
        return int(self._read(f"SELECT count(*) FROM tasks{where}", params)[0][0])

    def count_by_status(self, *, search: str | None = None) -> dict[str, int]:
        """Tasks in each status matching *search* (all tasks when it is empty)."""
        if not search:
            return self.counts()
        where, params = _filters(None, None, search)
        counts = dict.fromkeys(STATUSES, 0)
        sql = f"SELECT status, count(*) FROM tasks{where} GROUP BY status"
        counts.update(self._read(sql, params))
        return counts

    def counts(self) -> dict[str, int]:
        """Number of tasks in each status (kept by triggers, so this is cheap)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self._read("SELECT status, n FROM task_counts"))
        return counts

    def due_ids(self, now: float, limit: int) -> list[str]:
        """Ids of queued tasks whose retry time has come, oldest first."""
        rows = self._read(
            "SELECT id FROM tasks INDEXED BY tasks_by_status "
            "WHERE status = 'queued' AND run_after <= ? ORDER BY seq LIMIT ?",
            (now, limit),
        )
        return [r[0] for r in rows]

    def next_run_after(self, now: float) -> float | None:
        """The earliest retry time after *now* among queued tasks (None: no retry pending)."""
        [(earliest,)] = self._read(
            "SELECT min(run_after) FROM tasks INDEXED BY tasks_queued_run_after "
            "WHERE status = 'queued' AND run_after > ?",
            (now,),
        )
        return None if earliest is None else float(earliest)


def _filters(
    status: str | None,
    action: str | None,
    search: str | None = None,
    before_seq: int | None = None,
) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if status is not None:
        clauses.append("status = ?")
        params.append(TaskStatus(status).value)
    if action is not None:
        clauses.append("action = ?")
        params.append(action)
    if search:
        pattern = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("(id LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\')")
        params.extend([pattern + "%", "%" + pattern + "%"])
    if before_seq is not None:
        clauses.append("seq < ?")
        params.append(before_seq)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
