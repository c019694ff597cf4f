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
    RETRYABLE,
    SORTS,
    STATUSES,
    Added,
    Finish,
    LogSlice,
    NewTask,
    Progress,
    ScheduleState,
    Task,
    TaskQuery,
    TaskSort,
    TaskStatus,
    describe_statuses,
    parse_sort,
    parse_status,
    stored_time,
)

Synchronous = Literal["full", "normal"]


def open_store(location: Path, *, synchronous: Synchronous = "full") -> TaskStore:
    """Open (creating and migrating as needed) the store at *location* for this instance.

    Raises DatabaseError naming the database and what is wrong; a database it refuses is left
    as it was. ``store.migrated`` says (schema version before, after).
    """
    from storage.sqlite import SqliteTaskStore

    return SqliteTaskStore.open(location, synchronous)


__all__ = [
    "CANCELLABLE",
    "FINISHED",
    "MAX_LOG_BYTES",
    "RETRYABLE",
    "SORTS",
    "STATUSES",
    "Added",
    "DatabaseDamagedError",
    "DatabaseError",
    "DatabaseInUseError",
    "Finish",
    "IdempotencyConflictError",
    "LogSlice",
    "MigrationError",
    "NewTask",
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
    "describe_statuses",
    "open_store",
    "parse_sort",
    "parse_status",
    "stored_time",
]
