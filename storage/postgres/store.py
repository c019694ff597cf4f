"""PostgresTaskStore: the storage contract on a PostgreSQL database that several Taskdesk
instances (nodes) share.

Differences from SQLite, and why:
- Writes from this node go through one WriteBatcher (group commit, one NOTIFY per batch);
  reads use pooled connections (storage/postgres/database.py).
- A claim is one statement: a MATERIALIZED CTE picks ready tasks by priority ``FOR UPDATE
  SKIP LOCKED`` (nodes claiming at once take different tasks and never wait for each other)
  and the UPDATE marks them running on this node. It claims nothing once this node's row is
  gone (it was found dead): its tasks went to others.
- Finishing, releasing and progress are fenced by node as well as by attempt: a node that
  was paused past its lease comes back to tasks that were handed to others and changes none.
- ``recover`` rescues dead nodes; the running tasks of live nodes are left alone.
- Other nodes' changes reach ``watch``ers through LISTEN/NOTIFY (listener.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from storage.contract import Settled
from storage.errors import (
    DatabaseDamagedError,
    DatabaseError,
    IdempotencyConflictError,
    StorageUnavailableError,
    UnknownTasksError,
)
from storage.models import (
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
    TaskStatus,
    json_list,
    stored_time,
)
from storage.postgres import nodes as node_sql
from storage.postgres.database import Database
from storage.postgres.housekeeping import Housekeeper
from storage.postgres.listener import Listener
from storage.postgres.logs import TaskLogs, delete_logs
from storage.postgres.migrations import migrate
from storage.postgres.nodes import NodeRegistry
from storage.postgres.sql import (
    SORT_SQL,
    TASK_COLUMNS,
    TASK_JSON_SQL,
    filters,
    order_by,
    possible_ids,
    quoted,
    searchable,
    task_columns,
    task_from_row,
    tasks_from_rows,
)
from storage.postgres.writer import Changes as Notes
from storage.postgres.writer import WriteBatcher
from storage.task_ids import new_task_id

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")
Conn = psycopg.Connection[Any]

# Connections the pool may open: the API server's threads, the workers, the window, the
# writer, housekeeping and log flushing (the listener has its own).
BASE_CONNECTIONS = 24

_T = task_columns("t.")
_CANCELLED = "to_json('cancelled while running'::text)::text"


class PostgresTaskStore:
    """See storage.contract.TaskStore for what each operation promises."""

    def __init__(self, url: str, *, lease: float = 30.0, max_connections: int | None = None,
                 timeout: float | None = None) -> None:
        """A store on an already migrated database, registered as a node and running its
        listener and housekeeping; ``open`` migrates first. *timeout*: how long a call waits
        for a connection before StorageUnavailableError (5 s)."""
        self.db = Database(url, max_connections or BASE_CONNECTIONS, timeout)
        self.location = self.db.location
        self.shared = True
        self.migrated = (0, 0)
        self.damage: str | None = None
        self.on_damage: Callable[[str], None] | None = None
        self._problem: str | None = None
        self.lease = lease
        self.node = NodeRegistry(lease)
        self.db.open()
        try:
            self.db.run(self.node.register)
        except Exception:
            self.db.close()
            raise
        self._writer = WriteBatcher(self.db, lambda: self.node.id)
        self.logs = TaskLogs(self._write_notes, self._read_named)
        self.listener = Listener(self.db, lambda: self.node.id)
        self.listener.start()
        self.housekeeper = Housekeeper(lease, fold=self._fold, heartbeat=self._heartbeat,
                                       rescue=self._rescue_dead,
                                       failed=self._housekeeping_failed)
        self.housekeeper.start()
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, lease: float = 30.0) -> PostgresTaskStore:
        db = Database(url, 1)
        db.open()
        try:
            migrated = db.run(lambda conn: migrate(conn, db.location))
        except StorageUnavailableError as exc:
            raise DatabaseError(str(exc)) from exc
        finally:
            db.close()
        store = cls(url, lease=lease)
        store.migrated = migrated
        return store

    # -- state -----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.node.describe()

    @property
    def problem(self) -> str | None:
        notice = self.node.notice()
        if self._problem and notice:
            return f"{self._problem}; {notice}"
        return self._problem or notice

    @problem.setter
    def problem(self, value: str | None) -> None:
        self._problem = value

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.housekeeper.stop()
        self.listener.stop()
        self.logs.close()
        try:
            self.db.run(self.node.leave)  # its tasks are finished or handed back by now
        except Exception as exc:
            log.warning("cannot remove %s from the nodes: %s (others will, after its lease)",
                        self.identity, exc)
        self._writer.close()
        self.db.close()

    def announce(self, api_url: str | None) -> None:
        self.node.api_url = api_url
        try:
            self.db.run(lambda conn: conn.execute(
                "UPDATE nodes SET api_url = %s WHERE id = %s", (api_url, self.node.number)))
        except StorageUnavailableError as exc:
            log.warning("cannot record the API address: %s", exc)

    def watch(self, listener: Callable[[Changes | None], None]) -> Callable[[], None]:
        return self.listener.watch(listener)

    def nodes(self) -> list[NodeInfo]:
        return self._read_with(self.node.list)

    # -- plumbing --------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self._read_with(lambda conn: conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def _read_named(self, sql: str, params: dict[str, object]) -> list[Any]:
        return self._read_with(lambda conn: conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def _read_with(self, work: Callable[[Conn], T]) -> T:
        try:
            result = self.db.run(work)
        except StorageUnavailableError as exc:
            self.problem = str(exc)
            raise
        except DatabaseDamagedError as exc:
            self._damaged(exc)
            raise
        return result

    def _write(self, write: Callable[[Conn, Notes], T]) -> T:
        if self.damage is not None:
            raise DatabaseDamagedError(self.damage)
        try:
            result = self._writer.execute(write)
        except StorageUnavailableError as exc:
            self.problem = str(exc)
            raise
        except DatabaseDamagedError as exc:
            self._damaged(exc)
            raise
        self.problem = None
        return result

    def _damaged(self, exc: DatabaseDamagedError) -> None:
        """Remember that the server reported damage: told once, no task written again."""
        if self.damage is not None:
            return
        self.damage = str(exc)
        if self.on_damage is not None:
            self.on_damage(self.damage)

    def _write_notes(self, write: Callable[[Conn, Notes], None]) -> None:
        self._write(write)

    def _tell_here(self, task_ids: list[str]) -> None:
        """Changes made by this store's own housekeeping, which no service of ours made:
        tell our watchers as if another node had (our NOTIFYs do not come back to us)."""
        if task_ids:
            self.listener.tell(Changes(tuple(task_ids)))

    # -- housekeeping ----------------------------------------------------------------------

    def _fold(self) -> None:
        def fold(conn: Conn) -> None:
            with conn.transaction():
                node_sql.fold_counts(conn)

        self.db.run(fold)

    def _heartbeat(self) -> None:
        self.db.run(self.node.heartbeat)
        if self._problem and self._problem.startswith("cannot use database"):
            self.problem = None

    def _rescue(self, wait: bool = False, own: bool = False, at: float | None = None
                ) -> list[Task]:
        now = stored_time(time.time() if at is None else at)

        def write(conn: Conn, notes: Notes) -> list[Task]:
            found = node_sql.rescue(conn, now, wait, self.node.number if own else None)
            if found is None:
                return []
            tasks, _ = found
            for task in list(tasks):
                if task.status.is_finished:
                    tasks.extend(self._cascade(conn, [task], now))
            notes.add([t.id for t in tasks])
            return tasks

        rescued = self._write(write)
        self._tell_here([t.id for t in rescued])
        return rescued

    def _rescue_dead(self) -> None:
        self._rescue()

    def _housekeeping_failed(self, exc: Exception) -> None:
        if isinstance(exc, DatabaseDamagedError):
            self._damaged(exc)
        message = str(exc) if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {exc}"
        if not message.startswith("cannot use database"):
            message = f"cannot use database {self.location}: {message}"
        self.problem = f"{message} ({self.identity} cannot send its heartbeat)"
        log.warning("housekeeping: %s", message)

    # -- writes ----------------------------------------------------------------------------

    _INSERT = (
        "INSERT INTO tasks (id, action, action_json, data, status, max_attempts, created_at, "
        "run_after, priority, after_ids, waiting, idempotency_key, request_hash) "
        "VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s)"
    )

    def add(self, new: NewTask, now: float) -> Added:
        when = stored_time(now)
        task_id = new_task_id()
        after = list(dict.fromkeys(new.after))
        run_after = when if new.run_after is None else stored_time(new.run_after)
        key = new.idempotency_key
        if key is None and not after:
            # The common POST: stored with the other plain submissions of its batch.
            return self._write(_PlainAdd((
                task_id, searchable(new.action), quoted(new.action), new.data_json,
                new.max_attempts, when, run_after, new.priority)))

        def known(conn: Conn) -> Added | None:
            rows = conn.execute(f"SELECT {TASK_COLUMNS}, request_hash FROM tasks "
                                "WHERE idempotency_key = %s", (key,)).fetchall()
            if not rows:
                return None
            *columns, request_hash = rows[0]
            if request_hash != new.request_hash:
                raise IdempotencyConflictError(str(key), columns[1])
            return Added(task_from_row(columns), created=False)

        def write(conn: Conn, notes: Notes) -> Added:
            if key is not None:
                found = known(conn)
                if found is not None:
                    return found
            waiting, blocker = self._dependencies(conn, after) if after else (0, None)
            conflict = (" ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL "
                        "DO NOTHING" if key is not None else "")
            rows = conn.execute(
                f"{self._INSERT}{conflict} RETURNING {TASK_COLUMNS}",
                (task_id, searchable(new.action), quoted(new.action), new.data_json,
                 new.max_attempts, when, run_after, new.priority,
                 json_list(after) if after else None, waiting, key, new.request_hash),
            ).fetchall()
            if not rows:
                # Another node stored this key a moment ago (we waited for its commit).
                found = known(conn)
                assert found is not None
                return found
            if after:
                conn.execute("INSERT INTO task_deps (dep_id, task_id) "
                             "SELECT unnest(%s::text[]), %s", (after, task_id))
            if blocker is not None:
                rows = conn.execute(
                    f"UPDATE tasks SET status = 'cancelled', processed_at = %s, "
                    f"error_json = %s WHERE id = %s RETURNING {TASK_COLUMNS}",
                    (when, quoted(_waited_for(*blocker)), task_id)).fetchall()
            notes.add([task_id])
            return Added(task_from_row(rows[0]), created=True)

        return self._write(write)

    @staticmethod
    def _dependencies(conn: Conn, after: list[str]) -> tuple[int, tuple[str, str] | None]:
        """(how many of *after* are not completed, the first failed or cancelled one).

        Locked FOR SHARE until the write commits: another node ending one of them waits for
        it, so that its cascade sees the task waiting (else it would wait for good), or this
        read waits for that node's commit and sees the end."""
        found = dict(conn.execute("SELECT id, status FROM tasks WHERE id = ANY(%s::text[]) "
                                  "FOR SHARE", (possible_ids(after),)).fetchall())
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

        def write(conn: Conn, notes: Notes) -> list[str]:
            if not ids:
                return ids
            waiting, blocker = self._dependencies(conn, after) if after else (0, None)
            conn.execute(
                "INSERT INTO tasks (id, action, action_json, data, status, max_attempts, "
                "created_at, run_after, priority, after_ids, waiting) "
                "SELECT i, %s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s "
                "FROM unnest(%s::text[]) WITH ORDINALITY AS u(i, n) ORDER BY n",
                (searchable(new.action), quoted(new.action), new.data_json, new.max_attempts,
                 when, run_after, new.priority, json_list(after) if after else None, waiting,
                 ids))
            if after:
                conn.execute("INSERT INTO task_deps (dep_id, task_id) "
                             "SELECT d, i FROM unnest(%s::text[]) AS i, unnest(%s::text[]) AS d",
                             (ids, after))
            if blocker is not None:
                conn.execute("UPDATE tasks SET status = 'cancelled', processed_at = %s, "
                             "error_json = %s WHERE id = ANY(%s::text[])",
                             (when, quoted(_waited_for(*blocker)), ids))
            notes.add(ids)
            return ids

        return self._write(write)

    # Ready tasks by priority, then oldest first, locked without waiting for those another
    # node is claiming; MATERIALIZED, so that the planner cannot fold the subquery into the
    # UPDATE and take more rows than asked (Oban's fetch_jobs, River's JobGetAvailable).
    # Nothing while the queue is paused, or once this node's row is gone.
    _CLAIM = (
        "WITH ready AS MATERIALIZED ("
        " SELECT seq FROM tasks WHERE status = 'queued' AND waiting = 0 AND run_after <= %(now)s"
        " AND NOT (SELECT paused FROM queue_state)"
        " AND EXISTS (SELECT 1 FROM nodes WHERE id = %(node)s)"
        " ORDER BY priority DESC, seq LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
        "UPDATE tasks t SET status = 'running', node = %(node)s, started_at = %(now)s,"
        " processed_at = NULL, attempts = t.attempts + 1, progress = NULL,"
        " progress_message_json = NULL "
        f"FROM ready WHERE t.seq = ready.seq RETURNING {_T}"
    )
    # How running attempts end, all of one settle in one statement: fenced by task, attempt
    # and node. A task whose cancellation was requested while it ran ends cancelled.
    _FINISH = (
        "UPDATE tasks t SET "
        "status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE f.status END, "
        "result = CASE WHEN f.status <> 'completed' THEN t.result "
        " WHEN t.cancel_requested THEN NULL ELSE f.result END, "
        "error_json = CASE WHEN t.cancel_requested THEN f.cancel_error "
        " WHEN f.status = 'completed' THEN NULL ELSE f.error END, "
        "run_after = CASE WHEN f.status = 'queued' THEN f.at ELSE t.run_after END, "
        "processed_at = CASE WHEN f.status <> 'queued' THEN f.at "
        " WHEN t.cancel_requested THEN %(now)s END, "
        "node = NULL "
        "FROM unnest(%(ids)s::text[], %(attempts)s::int[], %(statuses)s::text[], "
        " %(results)s::text[], %(errors)s::text[], %(cancel_errors)s::text[], "
        " %(ats)s::float8[]) AS f(id, attempt, status, result, error, cancel_error, at) "
        "WHERE t.id = f.id AND t.status = 'running' AND t.attempts = f.attempt "
        f"AND t.node = %(node)s RETURNING {_T}"
    )

    def settle(self, finishes: Sequence[Finish], claim: int, now: float) -> Settled:
        when = stored_time(now)
        first: dict[tuple[str, int], Finish] = {}
        for f in finishes:  # a second finish of one attempt changes nothing
            first.setdefault((f.task_id, f.attempt), f)
        unique = list(first.values())
        params = {
            "ids": [f.task_id for f in unique], "attempts": [f.attempt for f in unique],
            "statuses": [f.status.value for f in unique],
            # Errors as the JSON literals error_json holds (PostgreSQL text cannot hold a
            # NUL an exception's message may have); results are JSON text already.
            "results": [f.text if f.status == TaskStatus.COMPLETED else None for f in unique],
            "errors": [None if f.status == TaskStatus.COMPLETED else quoted(f.text)
                       for f in unique],
            "cancel_errors": [quoted("cancelled while running" + (
                f": {f.text}" if f.status == TaskStatus.FAILED else "")) for f in unique],
            "ats": [stored_time(f.when) for f in unique], "now": when,
        }

        def write(conn: Conn, notes: Notes) -> Settled:
            node = self.node.number
            stored: dict[str, Task] = {}
            if unique:
                rows = conn.execute(self._FINISH, {**params, "node": node}).fetchall()
                stored = {t.id: t for t in tasks_from_rows(rows)}
            cascaded = self._cascade(conn, list(stored.values()), when)
            claimed = tasks_from_rows(conn.execute(
                self._CLAIM, {"now": when, "node": node, "n": claim}).fetchall()) if claim else []
            claimed.sort(key=lambda t: (-t.priority, t.seq))
            notes.add([*stored, *(t.id for t in cascaded), *(t.id for t in claimed)])
            finished: list[Task | None] = []
            for f in finishes:
                task = stored.get(f.task_id)
                finished.append(task if task is not None and first.get(
                    (f.task_id, f.attempt)) is f else None)
            return Settled(finished, claimed, cascaded)

        return self._write(write)

    def _cascade(self, conn: Conn, tasks: list[Task], now: float) -> list[Task]:
        """What finished *tasks* change for the tasks waiting for them."""
        done = [t.id for t in tasks if t.status == TaskStatus.COMPLETED]
        ended = [t for t in tasks if t.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)]
        changed: list[Task] = []
        if done:
            changed += tasks_from_rows(conn.execute(
                "UPDATE tasks t SET waiting = greatest(0, t.waiting - d.n) FROM (SELECT "
                "task_id, count(*) AS n FROM task_deps WHERE dep_id = ANY(%s::text[]) "
                "GROUP BY task_id) AS d WHERE t.id = d.task_id AND t.status = 'queued' "
                f"AND t.waiting > 0 RETURNING {_T}", (done,)).fetchall())
        for task in ended:
            how = "failed" if task.status == TaskStatus.FAILED else "was cancelled"
            changed += tasks_from_rows(conn.execute(
                "WITH RECURSIVE chain(id, cause) AS ("
                " SELECT task_id, dep_id FROM task_deps WHERE dep_id = %(id)s"
                " UNION SELECT d.task_id, d.dep_id FROM task_deps d JOIN chain c"
                " ON d.dep_id = c.id) "
                "UPDATE tasks t SET status = 'cancelled', processed_at = %(now)s, node = NULL, "
                "error_json = to_json('cancelled: task ' || c.cause || ', which it waits for, '"
                " || CASE WHEN c.cause = %(id)s THEN %(how)s ELSE 'was cancelled' END)::text "
                "FROM (SELECT DISTINCT ON (id) id, cause FROM chain ORDER BY id, cause) AS c "
                f"WHERE t.id = c.id AND t.status = 'queued' RETURNING {_T}",
                {"id": task.id, "now": now, "how": how}).fetchall())
        return changed

    def release(self, task_id: str, attempt: int, run_after: float, error: str | None
                ) -> Task | None:
        when = stored_time(run_after)

        def write(conn: Conn, notes: Notes) -> Task | None:
            rows = conn.execute(
                "UPDATE tasks SET status = CASE WHEN cancel_requested THEN 'cancelled' "
                "ELSE 'queued' END, attempts = greatest(0, attempts - 1), started_at = NULL, "
                "run_after = %(when)s, node = NULL, "
                "processed_at = CASE WHEN cancel_requested THEN %(when)s END, "
                f"error_json = CASE WHEN cancel_requested THEN {_CANCELLED} "
                "ELSE coalesce(%(error)s, error_json) END "
                "WHERE id = %(id)s AND status = 'running' AND attempts = %(attempt)s "
                f"AND node = %(node)s RETURNING {TASK_COLUMNS}",
                {"when": when, "error": quoted(error), "id": task_id, "attempt": attempt,
                 "node": self.node.number}).fetchall()
            if not rows:
                return None
            task = task_from_row(rows[0])
            cascaded = self._cascade(conn, [task], when) if task.status.is_finished else []
            notes.add([task.id, *(t.id for t in cascaded)])
            return task

        return self._write(write)

    def cancel_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        when = stored_time(now)
        ids = possible_ids(task_ids)

        def write(conn: Conn, notes: Notes) -> list[Task]:
            if not ids:
                return []
            # One statement: a task another node moves from running back to queued (or
            # claims) meanwhile is judged by what it is once that node commits, not missed
            # by two statements that each saw it as the other status.
            changed = tasks_from_rows(conn.execute(
                "UPDATE tasks SET "
                "status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, "
                "processed_at = CASE WHEN status = 'queued' THEN %s ELSE processed_at END, "
                "cancel_requested = cancel_requested OR status = 'running' "
                "WHERE id = ANY(%s::text[]) AND (status = 'queued' "
                f"OR status = 'running' AND NOT cancel_requested) RETURNING {TASK_COLUMNS}",
                (when, ids)).fetchall())
            changed += self._cascade(
                conn, [t for t in changed if t.status == TaskStatus.CANCELLED], when)
            notes.add([t.id for t in changed])
            return changed

        return self._write(write)

    _RETRY = (
        "UPDATE tasks t SET status = 'queued', attempts = 0, result = NULL, error_json = NULL, "
        "started_at = NULL, processed_at = NULL, run_after = %s, progress = NULL, "
        "progress_message_json = NULL, cancel_requested = false, node = NULL, waiting = "
        "(SELECT count(*) FROM task_deps d JOIN tasks x ON x.id = d.dep_id "
        "WHERE d.task_id = t.id AND x.status <> 'completed') "
        "WHERE t.id = ANY(%s::text[]) AND t.status IN ('failed', 'cancelled') "
        "AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks x ON x.id = d.dep_id "
        "WHERE d.task_id = t.id AND x.status IN ('failed', 'cancelled')) "
        f"RETURNING {_T}"
    )

    def retry_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        params = (stored_time(now), possible_ids(task_ids))

        def write(conn: Conn, notes: Notes) -> list[Task]:
            # The tasks they wait for, locked first for the reason _dependencies gives.
            conn.execute("SELECT 1 FROM tasks x JOIN task_deps d ON x.id = d.dep_id "
                         "WHERE d.task_id = ANY(%s::text[]) FOR SHARE OF x", (params[1],))
            retried = tasks_from_rows(conn.execute(self._RETRY, params).fetchall())
            notes.add([t.id for t in retried])
            return retried

        return self._write(write) if task_ids else []

    def delete_many(self, task_ids: Sequence[str]) -> list[Task]:
        ids = possible_ids(task_ids)

        def write(conn: Conn, notes: Notes) -> list[Task]:
            rows = conn.execute(
                "DELETE FROM tasks WHERE id = ANY(%s::text[]) AND status IN "
                f"('completed', 'failed', 'cancelled') RETURNING {TASK_COLUMNS}",
                (ids,)).fetchall()
            return self._forget(conn, notes, rows)

        deleted = self._write(write) if ids else []
        self.logs.forget([t.id for t in deleted])
        return deleted

    def purge(self, completed_before: float, failed_before: float, limit: int) -> list[Task]:
        def write(conn: Conn, notes: Notes) -> list[Task]:
            rows: list[Any] = []
            for status, before in (("completed", completed_before), ("failed", failed_before),
                                   ("cancelled", failed_before)):
                left = limit - len(rows)
                if left <= 0:
                    break
                rows += conn.execute(
                    "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE status = %s "
                    "AND processed_at IS NOT NULL AND processed_at < %s "
                    f"ORDER BY processed_at LIMIT %s) RETURNING {TASK_COLUMNS}",
                    (status, stored_time(before), left)).fetchall()
            return self._forget(conn, notes, rows)

        deleted = self._write(write)
        self.logs.forget([t.id for t in deleted])
        return deleted

    @staticmethod
    def _forget(conn: Conn, notes: Notes, rows: list[Any]) -> list[Task]:
        deleted = tasks_from_rows(rows)
        if deleted:
            ids = [t.id for t in deleted]
            conn.execute("DELETE FROM task_deps WHERE task_id = ANY(%s::text[])", (ids,))
            delete_logs(conn, ids)
            notes.add(ids)
        return deleted

    def set_progress(self, reports: Sequence[Progress]) -> list[Task]:
        if not reports:
            return []
        params = {
            "ids": [r.task_id for r in reports], "attempts": [r.attempt for r in reports],
            "fractions": [None if r.fraction is None else stored_time(r.fraction)
                          for r in reports],
            "messages": [quoted(r.message) for r in reports],
        }

        def write(conn: Conn, notes: Notes) -> list[Task]:
            rows = conn.execute(
                "UPDATE tasks t SET progress = p.fraction, progress_message_json = p.message "
                "FROM unnest(%(ids)s::text[], %(attempts)s::int[], %(fractions)s::float8[], "
                "%(messages)s::text[]) AS p(id, attempt, fraction, message) "
                "WHERE t.id = p.id AND t.status = 'running' AND t.attempts = p.attempt "
                f"AND t.node = %(node)s RETURNING {_T}",
                {**params, "node": self.node.number}).fetchall()
            updated = tasks_from_rows(rows)
            notes.add([t.id for t in updated])
            return updated

        return self._write(write)

    def append_log(self, task_id: str, data: bytes) -> None:
        self.logs.append(task_id, data)

    def shift_retry_times(self, seconds: float, after: float) -> int:
        def write(conn: Conn, notes: Notes) -> int:
            rows = conn.execute(
                "UPDATE tasks SET run_after = run_after + %s WHERE status = 'queued' "
                "AND run_after > %s RETURNING id", (seconds, after)).fetchall()
            notes.add([r[0] for r in rows])
            return len(rows)

        return self._write(write)

    def recover(self, now: float) -> int:
        # Dead nodes' tasks, and any left running by this node itself (none at start-up);
        # the tasks of live nodes are theirs.
        return len(self._rescue(wait=True, own=True, at=now))

    def set_paused(self, paused: bool) -> None:
        def write(conn: Conn, notes: Notes) -> None:
            conn.execute("UPDATE queue_state SET paused = %s", (paused,))
            notes.queue = True

        self._write(write)

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        def write(conn: Conn, notes: Notes) -> None:
            conn.execute("INSERT INTO schedules (name, paused) VALUES (%s, %s) ON CONFLICT "
                         "(name) DO UPDATE SET paused = excluded.paused", (name, paused))
            notes.queue = True

        self._write(write)

    def record_firing(self, name: str, due: float, task_id: str) -> None:
        def write(conn: Conn, notes: Notes) -> None:
            conn.execute(
                "INSERT INTO schedules AS s (name, last_due, last_task_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET last_due = greatest(coalesce(s.last_due, 0), "
                "excluded.last_due), last_task_id = CASE WHEN excluded.last_due >= "
                "coalesce(s.last_due, 0) THEN excluded.last_task_id ELSE s.last_task_id END",
                (name, stored_time(due), task_id))

        self._write(write)

    # -- reads -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        if "\x00" in task_id:
            return None  # no task has such an id, and PostgreSQL text cannot hold a NUL
        rows = self._read(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s", (task_id,))
        return task_from_row(rows[0]) if rows else None

    def page(self, query: TaskQuery, limit: int, after: Task | None = None) -> list[Task]:
        where, params = filters(query, after)
        return tasks_from_rows(self._read(
            f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY {order_by(query)} LIMIT %s",
            (*params, limit)))

    def list_json(self, query: TaskQuery, limit: int, offset: int) -> tuple[str, int]:
        # One row: PostgreSQL writes the page's JSON, in order.
        where, params = filters(query)
        [(text, count)] = self._read(
            f"SELECT string_agg(task, ',' ORDER BY {order_by(query, 'sort_value')}), count(*) "
            f"FROM (SELECT seq, {SORT_SQL[query.sort]} AS sort_value, {TASK_JSON_SQL} AS task "
            f"FROM tasks{where} ORDER BY {order_by(query)} LIMIT %s OFFSET %s) AS page",
            (*params, limit, offset))
        return text or "", int(count)

    def count(self, query: TaskQuery) -> int:
        if (query.action is None and not query.search and query.ids is None
                and query.scheduled_after is None):
            counts = self.counts()
            return counts[query.status] if query.status is not None else sum(counts.values())
        where, params = filters(query)
        return int(self._read(f"SELECT count(*) FROM tasks{where}", params)[0][0])

    _COUNTS = (
        "SELECT c.status, c.n + coalesce(d.n, 0) FROM task_counts c LEFT JOIN "
        "(SELECT status, sum(n) AS n FROM task_count_deltas GROUP BY status) AS d "
        "ON d.status = c.status"
    )

    def counts(self) -> dict[TaskStatus, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._read(self._COUNTS):
            counts[TaskStatus(status)] = int(n)
        return counts

    def count_by_status(self, search: str | None = None) -> dict[TaskStatus, int]:
        if not search:
            return self.counts()
        where, params = filters(TaskQuery(search=search))
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._read(
                f"SELECT status, count(*) FROM tasks{where} GROUP BY status", params):
            counts[TaskStatus(status)] = int(n)
        return counts

    def next_due(self, now: float) -> float | None:
        [(earliest,)] = self._read(
            "SELECT min(run_after) FROM tasks WHERE status = 'queued' AND waiting = 0 "
            "AND run_after > %s", (now,))
        return None if earliest is None else float(earliest)

    def paused(self) -> bool:
        return bool(self._read("SELECT paused FROM queue_state")[0][0])

    def schedule_states(self) -> dict[str, ScheduleState]:
        rows = self._read("SELECT name, paused, last_due, last_task_id FROM schedules")
        return {name: ScheduleState(name, bool(paused), last_due, last_task)
                for name, paused, last_due, last_task in rows}

    def read_log(self, task_id: str, offset: int, limit: int) -> LogSlice:
        if not possible_ids([task_id]):
            return LogSlice(b"", offset, offset)
        try:
            return self.logs.read(task_id, offset, limit)
        except StorageUnavailableError as exc:
            self.problem = str(exc)
            raise


class _PlainAdd:
    """A submission without idempotency key or dependencies: a write that a batch combines
    with the others like it into one multi-row INSERT."""

    _SQL = (
        "INSERT INTO tasks (id, action, action_json, data, status, max_attempts, created_at, "
        "run_after, priority) SELECT i, a, j, d, 'queued', m, c, r, p FROM unnest("
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::float8[], "
        "%s::float8[], %s::int[]) WITH ORDINALITY AS u(i, a, j, d, m, c, r, p, n) ORDER BY n "
        f"RETURNING {TASK_COLUMNS}"
    )

    def __init__(self, row: tuple[str, str, str | None, str, int, float, float, int]) -> None:
        self.row = row

    def __call__(self, conn: Conn, notes: Notes) -> Added:
        return _PlainAdd.combine(conn, notes, [self])[0]

    @staticmethod
    def combine(conn: Conn, notes: Notes, writes: Sequence[_PlainAdd]) -> list[Added]:
        columns = [list(c) for c in zip(*(w.row for w in writes), strict=True)]
        stored = {t.id: t for t in tasks_from_rows(conn.execute(_PlainAdd._SQL,
                                                                 columns).fetchall())}
        notes.add(list(stored))
        return [Added(stored[w.row[0]], created=True) for w in writes]


def _waited_for(dep_id: str, dep_status: str) -> str:
    how = "failed" if dep_status == "failed" else "was cancelled"
    return f"cancelled: task {dep_id}, which it waits for, {how}"

