"""One Taskdesk per database file.

Start-up re-queues tasks left ``running``, which is only right if no other process is running
them. So each instance holds an exclusive lock on ``<database>.lock`` for as long as it runs;
a second instance is refused, and the message names the first one's process and API address
(written into the lock file). The operating system releases the lock when the process ends,
however it ends, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from storage.errors import DatabaseError, DatabaseInUseError


class InstanceLock:
    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self.db_path = db_path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise DatabaseInUseError naming the process that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        except OSError as exc:
            raise DatabaseError(f"cannot create lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = _describe(handle.read())
            handle.close()
            raise DatabaseInUseError(
                f"database {self.db_path} is already in use by another Taskdesk{owner}; "
                "use that one, or start this one with another --db"
            ) from None
        self._file = handle
        self.describe(api_url=None)

    def describe(self, api_url: str | None) -> None:
        """Record who holds the lock, for the message a second instance shows."""
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({"pid": os.getpid(), "api_url": api_url}))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        pid, url = info.get("pid"), info.get("api_url")
    except (ValueError, AttributeError):
        return ""
    parts = [f"process {pid}" if pid else "", f"API {url}" if url else "API not available"]
    return " (" + ", ".join(p for p in parts if p) + ")"
