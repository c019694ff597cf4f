"""Large Taskdesk databases for the "reads at scale" and "memory" cases, generated fast.

An empty database is created and migrated with Taskdesk's own ``storage.migrate`` (so the
schema, indexes and count triggers are exactly the product's), then rows are inserted with
``executemany`` in transactions of ``BATCH_ROWS`` rows, with ``PRAGMA synchronous=OFF`` and a
large page cache during generation only. The file is left in WAL mode, as Taskdesk expects.

Two kinds:
- ``mixed``: a history of finished work, oldest first: 88 % completed (with a result), 7 %
  failed (3 attempts, an error), 5 % cancelled. No queued or running task, so a Taskdesk
  serving reads on it has nothing to run and leaves the file as it found it.
- ``queued``: every task queued and due, as after a burst nobody has worked through yet.
- ``old``: ``mixed``, but finished over a year ago: all of it past the default retention
  (30 days completed, 90 failed or cancelled), as a backlog for the purge to work through.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from storage.sqlite import migrate, open_connection

BATCH_ROWS = 100_000
ACTIONS = ("uppercase", "sum", "send-email", "thumbnail", "noop")
KINDS = ("mixed", "queued", "old")
OLD_SECONDS = 400 * 86_400  # how long ago the "old" kind finished

Row = tuple[str, str, str, str, str | None, str | None, int, float, float | None, float | None]

_INSERT = (
    "INSERT INTO tasks (id, action, data, status, result, error, attempts, created_at, "
    "started_at, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _status(i: int, kind: str) -> str:
    if kind == "queued":
        return "queued"
    slot = i % 100
    if slot < 7:
        return "failed"
    return "cancelled" if slot < 12 else "completed"


def _rows(start: int, count: int, kind: str, first_created: float) -> Iterator[Row]:
    for i in range(start, start + count):
        status = _status(i, kind)
        action = ACTIONS[i % len(ACTIONS)]
        created = first_created + i * 0.5
        data = f'{{"text":"task number {i}"}}'
        if status == "completed":
            yield (str(uuid.uuid4()), action, data, status, f'{{"output":"TASK NUMBER {i}"}}',
                   None, 1, created, created + 0.1, created + 0.2)
        elif status == "failed":
            yield (str(uuid.uuid4()), action, data, status, None,
                   "ValueError: cannot process this input", 3, created, created + 3.1,
                   created + 3.2)
        elif status == "cancelled":
            yield (str(uuid.uuid4()), action, data, status, None, None, 0, created, None,
                   created + 1.0)
        else:
            yield (str(uuid.uuid4()), action, data, status, None, None, 0, created, None, None)


def generate(path: Path, rows: int, kind: str, timeout: float) -> float:
    """Create *path* with *rows* tasks of *kind*; return the seconds it took."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if path.exists():
        raise FileExistsError(path)
    started = time.perf_counter()
    deadline = started + timeout
    conn = open_connection(path)
    try:
        migrate(conn, path)
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB, so index pages stay in memory
        first_created = time.time() - rows * 0.5 - (OLD_SECONDS if kind == "old" else 0)
        for start in range(0, rows, BATCH_ROWS):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"generating {path} took more than {timeout:.0f} s")
            count = min(BATCH_ROWS, rows - start)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, _rows(start, count, kind, first_created))
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


class BigDatabases:
    """Generates each (kind, rows) database once per invocation, in *folder*, and hands out
    its path; callers that let Taskdesk write to it say so and get a copy instead."""

    def __init__(self, folder: Path, timeout: float) -> None:
        self.folder = folder
        self.timeout = timeout
        self.generation_seconds: dict[str, float] = {}

    def path(self, kind: str, rows: int) -> Path:
        path = self.folder / f"{kind}-{rows}.db"
        if not path.exists():
            self.generation_seconds[path.name] = generate(path, rows, kind, self.timeout)
        return path
