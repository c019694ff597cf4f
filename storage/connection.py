"""Opening SQLite connections with the settings every part of Taskdesk relies on."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

Synchronous = Literal["full", "normal"]

# How long a statement waits for another writer before giving up with "database is locked".
BUSY_TIMEOUT_MS = 5000


class DatabaseError(Exception):
    """The database file cannot be opened or used; the message names the file and the cause."""


def open_connection(path: Path, synchronous: Synchronous = "full") -> sqlite3.Connection:
    """Open *path* in WAL mode, creating it (and its folder) if needed.

    The connection is in autocommit mode: callers open transactions explicitly with
    ``BEGIN IMMEDIATE`` so that a writer never has to upgrade a read lock (which can deadlock).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise DatabaseError(f"cannot use database {path}: WAL mode unavailable ({mode})")
        # FULL syncs the WAL on every commit (survives power loss); NORMAL only at checkpoints
        # (survives a crash of the program, may lose the last commits on power loss).
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"cannot use database {path}: {exc}") from exc
    return conn
