"""What one submission costs SQLite, statement by statement: ``python -m benchmarks.insert_cost``.

Stores N tasks one commit each (``BEGIN IMMEDIATE``, Taskdesk's own INSERT … RETURNING,
``COMMIT``) into a database migrated to Taskdesk's schema, and the same number of rows into
the bare app's one-index table (benchmarks/bare_app.py), alternating the two REPS times, and
prints the median microseconds of each statement. Every index and trigger of the tasks table
costs each POST an entry and a page written to the WAL at its commit: this is the figure a
new index must be weighed against (a GIL-free measure, unlike the HTTP cases).

    python -m benchmarks.insert_cost [--n 6000] [--reps 3] [--synchronous normal|full]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from storage.sqlite.connection import open_connection
from storage.sqlite.migrations import migrate
from storage.sqlite.store import TASK_COLUMNS, SqliteTaskStore
from storage.task_ids import new_task_id

DATA = '{"x":"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy","n":1}'
BARE_DDL = ("CREATE TABLE tasks(id TEXT PRIMARY KEY, payload TEXT NOT NULL, status TEXT NOT NULL, "
            "result TEXT, created_at INTEGER NOT NULL, processed_at INTEGER)")
BARE_INSERT = "INSERT INTO tasks(id, payload, status, created_at) VALUES (?, ?, 'queued', ?)"
WARM_UP = 500


def measure(folder: Path, bare: bool, n: int, synchronous: str) -> tuple[float, float, float]:
    """Mean microseconds of (BEGIN, INSERT, COMMIT) over *n* single-task commits."""
    path = folder / f"{'bare' if bare else 'taskdesk'}-{time.monotonic_ns()}.db"
    conn = open_connection(path, synchronous)  # type: ignore[arg-type]
    if bare:
        conn.execute(BARE_DDL)
    else:
        migrate(conn, path)
    insert = f"{SqliteTaskStore._INSERT} RETURNING {TASK_COLUMNS}"  # as store.add runs it
    begin = row = commit = 0.0
    for i in range(WARM_UP + n):
        now = time.time()
        params: tuple[object, ...] = (
            (new_task_id(), '{"action":"noop","data":' + DATA + "}", int(now * 1000)) if bare
            else (new_task_id(), "noop", DATA, 3, now, now, 0, None, 0, None, None))
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        t1 = time.perf_counter()
        conn.execute(BARE_INSERT if bare else insert, params).fetchall()
        t2 = time.perf_counter()
        conn.execute("COMMIT")
        t3 = time.perf_counter()
        if i >= WARM_UP:
            begin, row, commit = begin + t1 - t0, row + t2 - t1, commit + t3 - t2
    conn.close()
    return begin / n * 1e6, row / n * 1e6, commit / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float]]] = {"taskdesk": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            sides = ["taskdesk", "bare"] if rep % 2 == 0 else ["bare", "taskdesk"]
            for side in sides:
                runs[side].append(measure(Path(tmp), side == "bare", args.n, args.synchronous))
    print(f"one task per commit, synchronous={args.synchronous}, {args.n} commits, "
          f"median of {args.reps}: microseconds")
    print(f"{'':10s} {'BEGIN':>7s} {'INSERT':>7s} {'COMMIT':>7s} {'total':>7s}")
    totals = {}
    for side, results in runs.items():
        parts = [statistics.median(r[k] for r in results) for k in range(3)]
        totals[side] = statistics.median(sum(r) for r in results)
        print(f"{side:10s} {parts[0]:7.1f} {parts[1]:7.1f} {parts[2]:7.1f} {totals[side]:7.1f}")
    print(f"Taskdesk ÷ bare: {totals['taskdesk'] / totals['bare']:.2f}×")


if __name__ == "__main__":
    main()
