"""Persistence for Taskdesk: the storage contract and its backends.

Nothing here knows about Qt or HTTP, and nothing outside this package knows which database
it talks to: the service and the window use the ``TaskStore`` contract (storage/contract.py)
and the types beside it. Every SQL statement of the product lives in this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from storage.contract import Settled, TaskStore
from storage.errors import (
    DatabaseDamagedError,
    DatabaseError,
    DatabaseInUseError,
    IdempotencyConflictError,
    MigrationError,
    SchemaTooNewError,
    StorageUnavailableError,
    UnknownTasksError,
)
from storage.models import (
    CANCELLABLE,
    FINISHED,
    MAX_LOG_BYTES,
    ORDERS,
    RETRYABLE,
    SORTS,
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
    describe_statuses,
    parse_order,
    parse_sort,
    parse_status,
    sort_key,
    sort_value,
    stored_time,
)

Synchronous = Literal["full", "normal"]


def is_postgres_url(location: Path | str) -> bool:
    """Whether *location* names a PostgreSQL database (``postgresql://…``) rather than a file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def describe_location(location: Path | str) -> str:
    """*location* as messages and logs show it: a PostgreSQL URL without its password."""
    if is_postgres_url(location):
        from storage.postgres.url import redact

        return redact(str(location))
    return str(location)


def open_store(location: Path | str, *, synchronous: Synchronous = "full",
               lease: float = 30.0) -> TaskStore:
    """Open (creating and migrating as needed) the store at *location* for this instance: a
    SQLite file, or a PostgreSQL database given as a ``postgresql://`` URL (shared by every
    instance pointed at it; *lease*: seconds without a heartbeat after which this instance
    counts as dead and its running tasks are handed to others).

    Raises DatabaseError naming the database and what is wrong; a database it refuses is left
    as it was. ``store.migrated`` says (schema version before, after).
    """
    if is_postgres_url(location):
        from storage.postgres import PostgresTaskStore

        return PostgresTaskStore.open(str(location), lease=lease)
    from storage.sqlite import SqliteTaskStore

    return SqliteTaskStore.open(Path(location), synchronous)


__all__ = [
    "CANCELLABLE",
    "FINISHED",
    "MAX_LOG_BYTES",
    "ORDERS",
    "RETRYABLE",
    "SORTS",
    "STATUSES",
    "Added",
    "Changes",
    "DatabaseDamagedError",
    "DatabaseError",
    "DatabaseInUseError",
    "Finish",
    "IdempotencyConflictError",
    "LogSlice",
    "MigrationError",
    "NewTask",
    "NodeInfo",
    "Progress",
    "ScheduleState",
    "SchemaTooNewError",
    "Settled",
    "StorageUnavailableError",
    "Synchronous",
    "Task",
    "TaskQuery",
    "TaskSort",
    "TaskStatus",
    "TaskStore",
    "UnknownTasksError",
    "describe_location",
    "describe_statuses",
    "is_postgres_url",
    "open_store",
    "parse_order",
    "parse_sort",
    "parse_status",
    "sort_key",
    "sort_value",
    "stored_time",
]
