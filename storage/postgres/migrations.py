"""Schema migrations on PostgreSQL: numbered steps, the version kept in ``taskdesk_schema``.

Every instance migrates at start-up, and several may start together: the whole upgrade runs
in one transaction holding an advisory lock, so one of them migrates and the others wait and
then find the schema current. DDL is transactional in PostgreSQL, so a failed step leaves the
database exactly as it was. A database whose version is newer than this code is refused
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from storage.errors import MigrationError, SchemaTooNewError

# pg_advisory_xact_lock keys of this program (arbitrary 64-bit numbers, "tskd" + a role).
MIGRATE_LOCK = 0x74736B64_0001
RESCUE_LOCK = 0x74736B64_0002
FOLD_LOCK = 0x74736B64_0003

Conn = psycopg.Connection[Any]

# Spelled out, not taken from TaskStatus: a migration step must do the same thing forever.
_STATUSES = "'queued', 'running', 'completed', 'failed', 'cancelled'"


def _step_1_tasks(conn: Conn) -> None:
    # Strings that may hold any character (NUL included, which a PostgreSQL text cannot)
    # are stored as JSON string literals (*_json), exactly as Task.to_json writes them, so a
    # listing splices them in and a read decodes them. `action` keeps a searchable copy
    # (NUL shown as U+FFFD).
    conn.execute(f"""
        CREATE TABLE tasks (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            action text NOT NULL,
            action_json text NOT NULL,
            data text NOT NULL,
            status text NOT NULL CHECK (status IN ({_STATUSES})),
            result text,
            error_json text,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL,
            created_at double precision NOT NULL,
            started_at double precision,
            processed_at double precision,
            run_after double precision NOT NULL,
            priority integer NOT NULL DEFAULT 0,
            after_ids text,
            waiting integer NOT NULL DEFAULT 0,
            idempotency_key text,
            request_hash text,
            progress double precision,
            progress_message_json text,
            cancel_requested boolean NOT NULL DEFAULT false,
            node bigint  -- the node running it, while it runs
        )""")
    # The claim walks ready tasks by priority, then age.
    conn.execute("CREATE INDEX tasks_ready ON tasks (priority DESC, seq) "
                 "WHERE status = 'queued' AND waiting = 0")
    conn.execute("CREATE INDEX tasks_ready_run_after ON tasks (run_after) "
                 "WHERE status = 'queued' AND waiting = 0")
    conn.execute("CREATE INDEX tasks_by_status ON tasks (status, seq)")
    conn.execute("CREATE INDEX tasks_by_action ON tasks (action_json, seq)")
    conn.execute("CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (idempotency_key) "
                 "WHERE idempotency_key IS NOT NULL")
    conn.execute("CREATE INDEX tasks_finished ON tasks (status, processed_at) "
                 "WHERE processed_at IS NOT NULL")
    # The rescue looks for running tasks whose node is gone.
    conn.execute("CREATE INDEX tasks_running ON tasks (node) WHERE status = 'running'")
    conn.execute("CREATE TABLE task_deps (dep_id text NOT NULL, task_id text NOT NULL, "
                 "PRIMARY KEY (dep_id, task_id))")
    conn.execute("CREATE INDEX task_deps_by_task ON task_deps (task_id)")
    conn.execute("CREATE TABLE queue_state (id integer PRIMARY KEY CHECK (id = 1), "
                 "paused boolean NOT NULL DEFAULT false)")
    conn.execute("INSERT INTO queue_state (id, paused) VALUES (1, false)")
    conn.execute("CREATE TABLE schedules (name text PRIMARY KEY, "
                 "paused boolean NOT NULL DEFAULT false, last_due double precision, "
                 "last_task_id text)")
    # A double as Task.to_json writes it (with extra_float_digits = 0, which every
    # connection of ours sets, its text has 15 significant digits), 'null' for NULL.
    conn.execute(r"""
        CREATE FUNCTION taskdesk_number(v double precision) RETURNS text
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE WHEN v IS NULL THEN 'null'
                        WHEN v::text ~ '^[^e]*\.' THEN v::text
                        WHEN strpos(v::text, 'e') > 0 THEN replace(v::text, 'e', '.0e')
                        ELSE v::text || '.0' END
        $$""")


def _step_2_counts(conn: Conn) -> None:
    # Counts per status, O(1) to read, without a hot row: each statement that changes
    # tasks appends its net change per status to task_count_deltas (statement-level
    # triggers over the transition tables: one small insert per statement, into a table
    # without unique keys, so no two nodes' commits wait on each other), and a
    # housekeeping pass folds the deltas into task_counts about once a second.
    conn.execute("CREATE TABLE task_counts (status text PRIMARY KEY, n bigint NOT NULL)")
    conn.execute(f"INSERT INTO task_counts (status, n) SELECT s, (SELECT count(*) FROM tasks "
                 f"WHERE status = s) FROM unnest(ARRAY[{_STATUSES}]) AS s")
    conn.execute("CREATE TABLE task_count_deltas (status text NOT NULL, n bigint NOT NULL)")
    conn.execute("""
        CREATE FUNCTION taskdesk_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO task_count_deltas (status, n)
                SELECT status, count(*) FROM new_rows GROUP BY status;
            RETURN NULL;
        END $$""")
    conn.execute("""
        CREATE FUNCTION taskdesk_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO task_count_deltas (status, n)
                SELECT status, -count(*) FROM old_rows GROUP BY status;
            RETURN NULL;
        END $$""")
    conn.execute("""
        CREATE FUNCTION taskdesk_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO task_count_deltas (status, n)
                SELECT status, sum(n) FROM (
                    SELECT status, 1 AS n FROM new_rows
                    UNION ALL SELECT status, -1 FROM old_rows) AS c
                GROUP BY status HAVING sum(n) <> 0;
            RETURN NULL;
        END $$""")
    conn.execute("CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks "
                 "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                 "EXECUTE FUNCTION taskdesk_count_insert()")
    conn.execute("CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks "
                 "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
                 "EXECUTE FUNCTION taskdesk_count_delete()")
    conn.execute("CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks "
                 "REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT "
                 "EXECUTE FUNCTION taskdesk_count_update()")


def _step_3_nodes_and_logs(conn: Conn) -> None:
    # Every instance registers here and heartbeats on the database's clock; one whose
    # heartbeat is older than its lease is dead, and its running tasks are rescued.
    conn.execute("""
        CREATE TABLE nodes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            api_url text,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now(),
            lease_seconds double precision NOT NULL
        )""")
    # Logs in chunks, so that any node can read a log another node's task wrote. `start` is
    # the offset of the chunk's first byte in everything the task ever logged; chunks before
    # the last MAX_LOG_BYTES are dropped.
    conn.execute("CREATE TABLE task_log_chunks (task_id text NOT NULL, start bigint NOT NULL, "
                 "data bytea NOT NULL, PRIMARY KEY (task_id, start))")
    conn.execute("CREATE TABLE task_log_sizes (task_id text PRIMARY KEY, "
                 "size bigint NOT NULL)")


def _step_4_priority_listing(conn: Conn) -> None:
    # GET /tasks?sort=priority walks this index, newest first within a priority.
    conn.execute("CREATE INDEX tasks_by_priority ON tasks (priority DESC, seq DESC)")


def _step_5_listings_by_any_column(conn: Conn) -> None:
    # Listings by start, finish, duration, attempts and action, each walking an index in
    # the listing's order with seq as the tie-breaker (created, status and priority have
    # theirs). A time not there yet is -1, so that the whole order is one index; the
    # expressions are written exactly as storage/postgres/sql.py's SORT_SQL, which must stay
    # so for the indexes to be used. Expression indexes rather than stored generated
    # columns: adding a stored column rewrites the whole table under the migration's lock.
    conn.execute("CREATE INDEX tasks_by_started ON tasks (coalesce(started_at, -1), seq)")
    conn.execute("CREATE INDEX tasks_by_finished ON tasks (coalesce(processed_at, -1), seq)")
    conn.execute("CREATE INDEX tasks_by_duration ON tasks "
                 "(coalesce(processed_at - started_at, -1), seq)")
    conn.execute("CREATE INDEX tasks_by_attempts ON tasks (attempts, seq)")
    # By action in code point order, as SQLite and Python compare (the database's collation
    # may differ); the action filter uses it too, so it replaces the index on action_json.
    conn.execute("DROP INDEX tasks_by_action")
    conn.execute('CREATE INDEX tasks_by_action ON tasks (action COLLATE "C", seq)')


MIGRATIONS: tuple[Callable[[Conn], None], ...] = (
    _step_1_tasks,
    _step_2_counts,
    _step_3_nodes_and_logs,
    _step_4_priority_listing,
    _step_5_listings_by_any_column,
)
LATEST_VERSION = len(MIGRATIONS)


def schema_version(conn: Conn) -> int:
    found = conn.execute("SELECT to_regclass('taskdesk_schema') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return 0
    row = conn.execute("SELECT version FROM taskdesk_schema").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Conn, location: str) -> tuple[int, int]:
    """Bring the database to LATEST_VERSION; (version before, version after). Raises
    SchemaTooNewError for a database of a newer Taskdesk, MigrationError when a step fails
    (nothing of the upgrade is then kept)."""
    step_name = "reading the schema version"
    try:
        with conn.transaction():
            # Instances starting together: one migrates, the others wait here.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            current = schema_version(conn)
            if current > LATEST_VERSION:
                raise SchemaTooNewError(location, current, LATEST_VERSION)
            if current == 0:
                conn.execute("CREATE TABLE taskdesk_schema (version integer NOT NULL)")
                conn.execute("INSERT INTO taskdesk_schema (version) VALUES (0)")
            for version in range(current + 1, LATEST_VERSION + 1):
                step = MIGRATIONS[version - 1]
                step_name = f"to schema version {version} ({step.__name__.lstrip('_')})"
                step(conn)
                conn.execute("UPDATE taskdesk_schema SET version = %s", (version,))
    except psycopg.Error as exc:
        raise MigrationError(f"migration of database {location} {step_name} failed: "
                             f"{str(exc).strip()}") from exc
    return current, LATEST_VERSION
