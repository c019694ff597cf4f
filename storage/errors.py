"""What a store raises, whatever the backend: each says in words what went wrong and where."""

from __future__ import annotations


class DatabaseError(Exception):
    """The database cannot be opened or used; the message names it and the cause."""


class StorageUnavailableError(DatabaseError):
    """The database cannot be read or written right now: the disk is full, another program
    holds a lock longer than the busy timeout, the file became read-only, the server is
    unreachable. Nothing was changed; the same request can succeed later."""


class DatabaseDamagedError(DatabaseError):
    """The database is damaged ("database disk image is malformed", "file is not a
    database"): retrying cannot help; it must be restored from a backup."""


class DatabaseInUseError(DatabaseError):
    """Another Taskdesk is using this database and the backend allows only one."""


class SchemaTooNewError(DatabaseError):
    """The database was written by a newer Taskdesk than this one."""

    def __init__(self, location: object, version: int, latest: int) -> None:
        super().__init__(
            f"database {location} has schema version {version}, but this Taskdesk only knows "
            f"versions up to {latest}; it was written by a newer Taskdesk. "
            "Upgrade Taskdesk or use another --db."
        )


class MigrationError(DatabaseError):
    """A migration step failed; the message names the database, the step and the cause."""


class UnknownTasksError(Exception):
    """A new task names tasks to wait for that do not exist."""

    def __init__(self, task_ids: list[str]) -> None:
        shown = ", ".join(task_ids[:10]) + (f" and {len(task_ids) - 10} more"
                                              if len(task_ids) > 10 else "")
        super().__init__(f"unknown task id(s) in after: {shown}")
        self.task_ids = task_ids


class IdempotencyConflictError(Exception):
    """An idempotency key already stored with a different request."""

    def __init__(self, key: str, task_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used for a different request "
                         f"(task {task_id})")
        self.key = key
        self.task_id = task_id
