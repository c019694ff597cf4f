"""Schema migrations: numbered steps tracked by ``PRAGMA user_version``.

Step *n* brings a database from version n-1 to n. Each step runs in its own ``BEGIN IMMEDIATE``
transaction that also writes the new ``user_version``, so a failed or interrupted upgrade leaves
the database exactly at the previous version. Migrations run once, at start-up, before any other
thread opens the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from storage.errors import MigrationError, SchemaTooNewError


def _step_1_tutorial_table(conn: sqlite3.Connection) -> None:
    # Exactly the table of the original tutorial, so its databases are recognised as version 1.
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tasks (
            id TEXT PRIMARY KEY,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            result TEXT,
            created_at INTEGER NOT NULL,
            processed_at INTEGER
        )
        """
    )


# Spelled out, not taken from TaskStatus: a migration step must do the same thing forever.
_STATUSES_V2 = ("queued", "running", "completed", "failed", "cancelled")
_STATUS_LIST = ", ".join(f"'{s}'" for s in _STATUSES_V2)


def _step_2_task_lifecycle(conn: sqlite3.Connection) -> None:
    # SQLite cannot add a rowid alias or CHECK constraints with ALTER TABLE, so the table is
    # rebuilt (SQLite's documented 12-step procedure, inside this step's transaction).
    # `seq` gives a stable insertion order: "newest first" and "oldest first" never depend on
    # clock resolution, and it is the rowid, so ordering by it needs no extra index.
    conn.execute(
        f"""
        CREATE TABLE tasks_v2 (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            action TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{{}}',
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({_STATUS_LIST})),
            result TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 3,
            created_at REAL NOT NULL,
            started_at REAL,
            processed_at REAL,
            run_after REAL NOT NULL DEFAULT 0
        )
        """
    )
    # The tutorial stored the whole task as JSON in `payload` ({id, action, data, created_at}),
    # with status 'pending' or 'completed'.
    conn.execute(
        f"""
        INSERT INTO tasks_v2 (id, action, data, status, result, error, attempts,
                              created_at, processed_at)
        SELECT
            id,
            COALESCE(CASE WHEN json_valid(payload)
                          THEN CAST(json_extract(payload, '$.action') AS TEXT) END, 'unknown'),
            CASE WHEN json_valid(payload) AND json_type(payload, '$.data') = 'object'
                 THEN json_extract(payload, '$.data') ELSE '{{}}' END,
            CASE WHEN status = 'pending' THEN 'queued'
                 WHEN status IN ({_STATUS_LIST}) THEN status
                 ELSE 'failed' END,
            CASE WHEN result IS NULL OR json_valid(result) THEN result ELSE json_quote(result) END,
            CASE WHEN status = 'pending' OR status IN ({_STATUS_LIST}) THEN NULL
                 ELSE 'unknown status in an older database: ' || status END,
            CASE WHEN status IN ('completed', 'failed') THEN 1 ELSE 0 END,
            created_at,
            processed_at
        FROM tasks
        ORDER BY created_at, rowid
        """
    )
    conn.execute("DROP TABLE tasks")
    conn.execute("ALTER TABLE tasks_v2 RENAME TO tasks")


def _step_3_indexes_and_counts(conn: sqlite3.Connection) -> None:
    # An index on status alone is ordered by (status, rowid), so "WHERE status=? ORDER BY seq
    # DESC LIMIT n" walks the index backwards and stops after n rows.
    conn.execute("CREATE INDEX tasks_by_status ON tasks (status)")
    conn.execute("CREATE INDEX tasks_by_action ON tasks (action)")
    # The feeder asks for the earliest retry time among queued tasks.
    conn.execute("CREATE INDEX tasks_queued_run_after ON tasks (run_after) WHERE status = 'queued'")
    # Counting a million rows per refresh is too slow for a live window, so counts per status
    # are kept up to date by triggers in the same transaction as the change itself.
    conn.execute(
        "CREATE TABLE task_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.executemany(
        "INSERT INTO task_counts (status, n) "
        "VALUES (?, (SELECT count(*) FROM tasks WHERE status = ?))",
        [(s, s) for s in _STATUSES_V2],
    )
    conn.execute(
        """
        CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
            UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER tasks_count_update AFTER UPDATE OF status ON tasks
        WHEN OLD.status IS NOT NEW.status BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
            UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
        END
        """
    )


def _step_4_order_dependencies_progress(conn: sqlite3.Connection) -> None:
    # When and in what order (priority, dependencies, idempotency keys, pause, schedules) and
    # what a running task reports (progress, a cancel request).
    for column in (
        "priority INTEGER NOT NULL DEFAULT 0",
        # Unfinished tasks this one waits for; it is claimed only at 0.
        "waiting INTEGER NOT NULL DEFAULT 0",
        "after_ids TEXT",  # JSON array of the ids it waits for, as given (NULL: none)
        "idempotency_key TEXT",
        "request_hash TEXT",
        "progress REAL",
        "progress_message TEXT",
        "cancel_requested INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(f"ALTER TABLE tasks ADD COLUMN {column}")
    # The claim: ready tasks by priority, then age, in one index walk.
    conn.execute(
        "CREATE INDEX tasks_ready ON tasks (priority DESC, seq) "
        "WHERE status = 'queued' AND waiting = 0"
    )
    # When the next waiting task is due (a retry, a delay), among ready ones.
    conn.execute("DROP INDEX tasks_queued_run_after")
    conn.execute(
        "CREATE INDEX tasks_ready_run_after ON tasks (run_after) "
        "WHERE status = 'queued' AND waiting = 0"
    )
    conn.execute(
        "CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    # Retention deletes finished tasks oldest first.
    # (processed_at is set exactly while a task is finished.)
    conn.execute(
        "CREATE INDEX tasks_finished ON tasks (status, processed_at) "
        "WHERE processed_at IS NOT NULL"
    )
    # Who waits for whom: dependents of a task are found by its id.
    conn.execute(
        "CREATE TABLE task_deps (dep_id TEXT NOT NULL, task_id TEXT NOT NULL, "
        "PRIMARY KEY (dep_id, task_id)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE queue_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "paused INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("INSERT INTO queue_state (id, paused) VALUES (1, 0)")
    conn.execute(
        "CREATE TABLE schedules (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0, "
        "last_due REAL, last_task_id TEXT) WITHOUT ROWID"
    )


def _step_5_listings_by_priority(conn: sqlite3.Connection) -> None:
    # Listings by priority, highest first then newest: an index on priority is ordered by
    # (priority, rowid), so "ORDER BY priority DESC, seq DESC LIMIT n" walks it backwards and
    # stops after n rows, with or without a filter. A priority never changes, so only adding
    # and deleting a task write to it. (An index on (status, priority) would serve a status
    # filter better, but every claim and outcome rewrites its entry: it cost case 1 of the
    # benchmarks about an eighth of its CPU time per task.)
    conn.execute("CREATE INDEX tasks_by_priority ON tasks (priority)")


def _step_6_listings_by_any_column(conn: sqlite3.Connection) -> None:
    # Listings by start, finish, duration and attempts (created, status, action and priority
    # are served by the rowid and the indexes of steps 3 and 5). Each index is ordered by
    # (value, rowid), the listing's order with its tie-breaker, so a page walks it and
    # stops. Partial: a submitted task has none of these values yet, and a full index of
    # each gave every POST four more index entries and pages to commit (half again its
    # SQLite time); the tasks lacking a value are walked by seq in tasks_unset, one entry
    # per submission. The expressions and conditions are written exactly as
    # storage/sqlite/store.py's _PARTIAL_SORTS, which must stay so for the indexes to be used.
    conn.execute("CREATE INDEX tasks_by_started ON tasks (started_at) "
                 "WHERE started_at IS NOT NULL")
    conn.execute("CREATE INDEX tasks_by_finished ON tasks (processed_at) "
                 "WHERE processed_at IS NOT NULL")
    conn.execute("CREATE INDEX tasks_by_duration ON tasks (processed_at - started_at) "
                 "WHERE processed_at IS NOT NULL AND started_at IS NOT NULL")
    conn.execute("CREATE INDEX tasks_by_attempts ON tasks (attempts) WHERE attempts > 0")
    conn.execute("CREATE INDEX tasks_unset ON tasks (seq) "
                 "WHERE started_at IS NULL OR processed_at IS NULL OR attempts = 0")


def _step_7_index_only_delayed_tasks(conn: sqlite3.Connection) -> None:
    # The next due time only matters for tasks that were not due when stored: delayed ones,
    # retries after a backoff. Indexing every submission too (run_after = created_at) cost
    # each POST an index entry and a page in its commit, about a tenth of its SQLite time.
    conn.execute("DROP INDEX tasks_ready_run_after")
    conn.execute(
        "CREATE INDEX tasks_delayed ON tasks (run_after) "
        "WHERE status = 'queued' AND waiting = 0 AND run_after > created_at"
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _step_1_tutorial_table,
    _step_2_task_lifecycle,
    _step_3_indexes_and_counts,
    _step_4_order_dependencies_progress,
    _step_5_listings_by_priority,
    _step_6_listings_by_any_column,
    _step_7_index_only_delayed_tasks,
)
LATEST_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path | str) -> tuple[int, int]:
    """Bring the database to LATEST_VERSION; return (version before, version after).

    Raises SchemaTooNewError for a database written by a newer Taskdesk, MigrationError when a
    step fails (the database then stays at the last version that completed).
    """
    try:
        current = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise MigrationError(f"cannot read schema version of database {path}: {exc}") from exc
    if current > LATEST_VERSION:
        raise SchemaTooNewError(path, current, LATEST_VERSION)
    start = current
    for version in range(current + 1, LATEST_VERSION + 1):
        step = MIGRATIONS[version - 1]
        try:
            conn.execute("BEGIN IMMEDIATE")
            step(conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(
                f"migration of database {path} to schema version {version} "
                f"({step.__name__.lstrip('_')}) failed: {exc}"
            ) from exc
    return start, LATEST_VERSION
