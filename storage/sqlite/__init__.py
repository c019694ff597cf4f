"""The SQLite backend: one file, one Taskdesk at a time (an instance lock), WAL, group commit."""

from storage.sqlite.connection import open_connection
from storage.sqlite.migrations import LATEST_VERSION, migrate
from storage.sqlite.store import SqliteTaskStore, damage_marker

__all__ = ["LATEST_VERSION", "SqliteTaskStore", "damage_marker", "migrate", "open_connection"]
