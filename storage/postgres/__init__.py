"""The PostgreSQL backend: several Taskdesk instances (nodes) on one database — nodes with
heartbeats and leases, claims with SKIP LOCKED, rescue of dead nodes' tasks, NOTIFY."""

from storage.postgres.migrations import LATEST_VERSION, migrate
from storage.postgres.store import PostgresTaskStore

__all__ = ["LATEST_VERSION", "PostgresTaskStore", "migrate"]
