"""SQLite persistence for Taskdesk: connections, migrations and the task store.

Nothing here knows about Qt or HTTP; every SQL statement of the product lives in this package.
"""

from storage.connection import (
    DatabaseDamagedError,
    DatabaseError,
    SchemaTooNewError,
    StorageUnavailableError,
    open_connection,
)
from storage.migrations import LATEST_VERSION, MigrationError, migrate
from storage.models import STATUSES, Task, TaskStatus
from storage.task_store import Finish, TaskStore

__all__ = [
    "LATEST_VERSION",
    "STATUSES",
    "DatabaseDamagedError",
    "DatabaseError",
    "Finish",
    "MigrationError",
    "SchemaTooNewError",
    "StorageUnavailableError",
    "Task",
    "TaskStatus",
    "TaskStore",
    "migrate",
    "open_connection",
]
