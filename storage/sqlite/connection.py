"""Opening SQLite connections with the settings every part of Taskdesk relies on."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from storage.errors import DatabaseDamagedError, DatabaseError, SchemaTooNewError

Synchronous = Literal["full", "normal"]

# How long a statement waits for another writer before giving up with "database is locked".
BUSY_TIMEOUT_MS = 5000


# SQLite's primary result codes for a file whose content is not a valid database.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def damage_in(exc: BaseException | None) -> sqlite3.DatabaseError | None:
    """SQLite's error saying the database file is damaged (not busy, full or locked), if that
    is what *exc* is or was raised from; None otherwise."""
    while exc is not None:
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.DatabaseError) and isinstance(code, int) and (
            code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
        ):
            return exc
        exc = exc.__cause__
    return None


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Raise DatabaseDamagedError, naming *path* and what is wrong, if SQLite's quick_check
    finds the database damaged. It only reads, but it reads every page (about a second per
    million tasks), so it runs when there is a reason to doubt the file."""
    try:
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        if damage_in(exc) is None:
            raise DatabaseError(f"cannot check database {path}: {exc}") from exc
        found = [str(exc)]
    if found != ["ok"]:
        raise DatabaseDamagedError(_damaged(path, "; ".join(found)))


def _damaged(path: Path, detail: str) -> str:
    return (f"database {path} is damaged ({detail}); Taskdesk will not use it. Restore it "
            "from a backup (or salvage its tasks with the sqlite3 tool's .recover) and start "
            "again.")


def open_connection(
    path: Path, synchronous: Synchronous = "full", max_schema_version: int | None = None
) -> sqlite3.Connection:
    """Open *path* in WAL mode, creating it (and its folder) if needed.

    With *max_schema_version*, a database whose ``user_version`` is higher is refused with
    SchemaTooNewError before anything is written to it.

    The connection is in autocommit mode: callers open transactions explicitly with
    ``BEGIN IMMEDIATE`` so that a writer never has to upgrade a read lock (which can deadlock).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DatabaseError(
            f"cannot open database {path}: {path.parent} is not a folder"
        ) from None
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder of database {path}: {exc}") from exc
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if max_schema_version is not None:
            # Checked before anything writes: switching to WAL rewrites the file header, and a
            # database we refuse must be left exactly as it was.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > max_schema_version:
                raise SchemaTooNewError(path, version, max_schema_version)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise DatabaseError(f"cannot use database {path}: WAL mode unavailable ({mode})")
        # FULL syncs the WAL on every commit (survives power loss); NORMAL only at checkpoints
        # (survives a crash of the program, may lose the last commits on power loss).
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_CORRUPT:
            raise DatabaseDamagedError(_damaged(path, str(exc))) from exc
        raise DatabaseError(f"cannot use database {path}: {exc}") from exc
    except SchemaTooNewError:
        conn.close()
        raise
    return conn
