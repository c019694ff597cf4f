"""Task logs in the database, so that any node (and any node's window) can read a log that a
task on another machine wrote.

A log is a series of chunks ``(task_id, start, data)``, ``start`` being the chunk's offset in
everything the task ever logged (``task_log_sizes`` keeps that total). Appends are held in
memory per task and stored together, up to a chunk of CHUNK_BYTES, at most FLUSH_SECONDS
later (or when CHUNK_BYTES are waiting): a command printing line by line costs one INSERT
per flush, not per line. Once a log holds more than MAX_LOG_BYTES, its chunks wholly before
its last MAX_LOG_BYTES are deleted, so offsets stay those of everything ever logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from storage.models import MAX_LOG_BYTES, LogSlice
from storage.postgres.writer import Changes

log = logging.getLogger("taskdesk.storage")

CHUNK_BYTES = 64 * 1024
FLUSH_SECONDS = 0.25

Write = Callable[[Callable[[psycopg.Connection[Any], Changes], None]], None]
Read = Callable[[str, dict[str, object]], list[Any]]


class TaskLogs:
    def __init__(self, write: Write, read: Read, cap: int = MAX_LOG_BYTES) -> None:
        self._write = write
        self._read = read
        self.cap = cap
        self._lock = threading.Lock()
        # One flush at a time (the flusher, a reader, an append past CHUNK_BYTES): bytes
        # taken first are stored first.
        self._flushing = threading.Lock()
        self._held: dict[str, bytearray] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="taskdesk-log-flush",
                                        daemon=True)
        self._thread.start()

    def append(self, task_id: str, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            held = self._held.setdefault(task_id, bytearray())
            held += data
            full = len(held) >= CHUNK_BYTES
        if full:
            self.flush([task_id])
        self._wake.set()

    def flush(self, task_ids: Sequence[str] | None = None) -> None:
        """Store what is held (for *task_ids*, or every task). If the database refuses, it is
        held again, in front of anything appended meanwhile."""
        with self._flushing:
            with self._lock:
                keys = list(self._held) if task_ids is None else [
                    t for t in task_ids if t in self._held]
                taken = {t: bytes(self._held.pop(t)) for t in keys}
            if not taken:
                return
            try:
                self._write(lambda conn, _changes: self._store(conn, taken))
            except Exception:
                with self._lock:
                    for task_id, data in taken.items():
                        self._held[task_id] = bytearray(data) + self._held.get(task_id, b"")
                raise

    def _store(self, conn: psycopg.Connection[Any], taken: dict[str, bytes]) -> None:
        for task_id, data in taken.items():
            row = conn.execute(
                "INSERT INTO task_log_sizes (task_id, size) VALUES (%s, %s) "
                "ON CONFLICT (task_id) DO UPDATE SET size = task_log_sizes.size + "
                "excluded.size RETURNING size", (task_id, len(data))).fetchone()
            assert row is not None
            size = int(row[0])
            start = size - len(data)
            chunks = [(task_id, start + i, data[i:i + CHUNK_BYTES])
                      for i in range(0, len(data), CHUNK_BYTES)]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO task_log_chunks (task_id, start, data) "
                                "VALUES (%s, %s, %s)", chunks)
            if size > self.cap:
                conn.execute("DELETE FROM task_log_chunks WHERE task_id = %s "
                             "AND start + length(data) <= %s", (task_id, size - self.cap))

    def read(self, task_id: str, offset: int, limit: int) -> LogSlice:
        self.flush([task_id])  # what this node logged is readable at once
        rows = self._read(
            "WITH kept AS (SELECT coalesce(min(start), 0) AS first FROM task_log_chunks "
            "WHERE task_id = %(id)s) "
            "SELECT kept.first, c.start, c.data FROM kept LEFT JOIN task_log_chunks c "
            "ON c.task_id = %(id)s AND c.start + length(c.data) > greatest(%(offset)s, "
            "kept.first) AND c.start < greatest(%(offset)s, kept.first) + %(limit)s "
            "ORDER BY c.start",
            {"id": task_id, "offset": offset, "limit": limit})
        begin = max(offset, int(rows[0][0])) if rows else offset
        data = bytearray()
        for _, start, chunk in rows:
            if start is None:
                continue
            data += bytes(chunk)[max(0, begin - int(start)):] if not data else bytes(chunk)
        data = data[:limit]
        return LogSlice(bytes(data), begin, begin + len(data))

    def forget(self, task_ids: Sequence[str]) -> None:
        """Drop what is held for deleted tasks (their rows go with the tasks' deletion)."""
        with self._lock:
            for task_id in task_ids:
                self._held.pop(task_id, None)

    def close(self) -> None:
        self._closed = True
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        try:
            self.flush()
        except Exception as exc:
            log.warning("cannot store the last lines of task logs: %s", exc)

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            if self._closed:
                return
            # Let more lines gather, then store them together.
            self._stopping.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:
                log.warning("cannot store task logs yet: %s", exc)
                self._wake.set()


def delete_logs(conn: psycopg.Connection[Any], task_ids: list[str]) -> None:
    conn.execute("DELETE FROM task_log_chunks WHERE task_id = ANY(%s::text[])", (task_ids,))
    conn.execute("DELETE FROM task_log_sizes WHERE task_id = ANY(%s::text[])", (task_ids,))
