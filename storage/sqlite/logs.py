"""TaskLogs: each task's log, a plain file ``<task id>.log`` in a folder beside the database.

Files are created mode 0600 (a log may hold anything a command printed). A log keeps its last
MAX_LOG_BYTES: once a file grows past that by a slack, it is rewritten with only its tail,
and the number of bytes dropped so far is kept in ``<task id>.log.dropped``, so offsets stay
those of everything the task ever logged (a reader following a log never sees bytes twice).
Appends and reads of one log take that log's lock; the instance lock makes this process the
only writer.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

from storage.errors import StorageUnavailableError
from storage.models import MAX_LOG_BYTES, LogSlice

# How far past the cap a log may grow before its head is dropped: rewriting 10 MiB at every
# append past the cap would cost more than the output itself.
SLACK_BYTES = 1024 * 1024
_SAFE_ID = re.compile(r"[0-9A-Za-z-]{1,100}")


class TaskLogs:
    def __init__(self, folder: Path, cap: int = MAX_LOG_BYTES, slack: int = SLACK_BYTES) -> None:
        self.folder = folder
        self.cap = cap
        self.slack = slack
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _paths(self, task_id: str) -> tuple[Path, Path]:
        if _SAFE_ID.fullmatch(task_id) is None:  # ids are uuids; never a path of anyone's
            raise ValueError(f"not a task id: {task_id!r}")
        log = self.folder / f"{task_id}.log"
        return log, log.with_name(log.name + ".dropped")

    def _lock(self, task_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(task_id, threading.Lock())

    def append(self, task_id: str, data: bytes) -> None:
        if not data:
            return
        log, dropped_path = self._paths(task_id)
        with self._lock(task_id):
            try:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data)
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                if size > self.cap + self.slack:
                    self._drop_head(log, dropped_path, size)
            except OSError as exc:
                raise StorageUnavailableError(f"cannot write the log of task {task_id} "
                                              f"in {self.folder}: {exc}") from exc

    def _drop_head(self, log: Path, dropped_path: Path, size: int) -> None:
        cut = size - self.cap
        with open(log, "rb") as f:
            f.seek(cut)
            tail = f.read()
        temp = log.with_name(log.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, tail)
        finally:
            os.close(fd)
        dropped = self._dropped(dropped_path) + cut
        dropped_path.write_text(str(dropped), encoding="ascii")
        os.chmod(dropped_path, 0o600)
        os.replace(temp, log)

    @staticmethod
    def _dropped(path: Path) -> int:
        try:
            return int(path.read_text(encoding="ascii"))
        except (FileNotFoundError, ValueError):
            return 0

    def read(self, task_id: str, offset: int, limit: int) -> LogSlice:
        log, dropped_path = self._paths(task_id)
        with self._lock(task_id):
            dropped = self._dropped(dropped_path)
            start = max(offset, dropped)
            try:
                with open(log, "rb") as f:
                    f.seek(start - dropped)
                    data = f.read(limit)
            except FileNotFoundError:
                return LogSlice(b"", start, start)
            except OSError as exc:
                raise StorageUnavailableError(f"cannot read the log of task {task_id} "
                                              f"in {self.folder}: {exc}") from exc
        return LogSlice(data, start, start + len(data))

    def remove(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            for path in self._paths(task_id):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with self._guard:
                self._locks.pop(task_id, None)
