"""What the listing indexes of SQLite's migration 6 cost writes, and what sorted pages cost
on a million tasks: the figures of docs/design.md ("Sorting by any column").

    python scripts/sort_index_cost.py writes [--tasks 20000] [--rounds 3]
    python scripts/sort_index_cost.py reads [--db PATH]   # builds a 1,000,000-task db once

``writes`` stores TASKS tasks one add each (the POST path: add, one commit), then claims and
completes them 64 at a time (the workers' settle), with synchronous=normal so that the CPU
cost shows rather than fsync; once without the new indexes, once with each alone, once with
all, alternating for ROUNDS rounds; it prints the median per phase. ``reads`` times the
first page and a page 500,000 tasks deep, by every order both ways, unfiltered and with a
status filter, through the store's own page().
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import Finish, NewTask, TaskQuery, TaskSort, TaskStatus
from storage.sqlite import SqliteTaskStore, migrate, open_connection

NEW_INDEXES = ("tasks_by_started", "tasks_by_finished", "tasks_by_duration", "tasks_by_attempts",
               "tasks_unset")


def one_run(folder: Path, keep: tuple[str, ...], tasks: int) -> tuple[float, float]:
    path = folder / f"w{time.monotonic_ns()}.db"
    conn = open_connection(path)
    migrate(conn, path)
    for name in NEW_INDEXES:
        if name not in keep:
            conn.execute(f"DROP INDEX {name}")
    conn.close()
    store = SqliteTaskStore(path, synchronous="normal")
    try:
        now = 1_800_000_000.0
        started = time.process_time()
        for i in range(tasks):
            store.add(NewTask("x", '{"i":1}', 3), now + i * 1e-3)
        adding = time.process_time() - started
        started = time.process_time()
        claimed = store.settle([], 64, now + 100).claimed
        while claimed:
            done = [Finish(t.id, t.attempts, TaskStatus.COMPLETED, '{"output":1}', now + 101)
                    for t in claimed]
            claimed = store.settle(done, 64, now + 101).claimed  # type: ignore[arg-type]
        settling = time.process_time() - started
    finally:
        store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return adding, settling


def writes(tasks: int, rounds: int) -> None:
    variants: dict[str, tuple[str, ...]] = {"none": ()}
    variants.update({name: (name,) for name in NEW_INDEXES})
    variants["all (partial), with tasks_unset"] = NEW_INDEXES
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for name, keep in variants.items():
                results[name].append(one_run(Path(folder), keep, tasks))
    base_add = statistics.median(a for a, _ in results["none"])
    base_settle = statistics.median(s for _, s in results["none"])
    print(f"{tasks} tasks, median of {rounds} rounds, CPU seconds (µs per task)")
    print(f"{'indexes':20} {'add':>16} {'claim+finish':>18}")
    for name, runs in results.items():
        add = statistics.median(a for a, _ in runs)
        settle = statistics.median(s for _, s in runs)
        print(f"{name:20} {add:6.2f} ({add / tasks * 1e6:4.0f}) {add / base_add - 1:+5.0%}"
              f" {settle:6.2f} ({settle / tasks * 1e6:4.0f}) {settle / base_settle - 1:+5.0%}")


def reads(db: Path) -> None:
    if not db.exists():
        from benchmarks.big_db import generate

        print(f"generating {db} ...", flush=True)
        generate(db, 1_000_000, "mixed", 3600)
        conn = open_connection(db)
        migrate(conn, db)
        conn.close()
    store = SqliteTaskStore(db)
    try:
        deep_anchor = store.page(TaskQuery(), 1, store.page(TaskQuery(), 500_000)[-1])[0]
        print("page of 100, ms: first / 500,000 deep (cursor: the 500,000th task by creation)")
        for status in (None, TaskStatus.COMPLETED, TaskStatus.FAILED):
            for sort in TaskSort:
                for descending in (True, False):
                    query = TaskQuery(status=status, sort=sort, descending=descending)
                    timings = []
                    for after in (None, deep_anchor):
                        best = float("inf")
                        for _ in range(3):
                            started = time.perf_counter()
                            store.page(query, 100, after)
                            best = min(best, time.perf_counter() - started)
                        timings.append(best * 1000)
                    print(f"{status or 'all':10} {sort:9} {'desc' if descending else 'asc ':4}"
                          f" {timings[0]:7.1f} {timings[1]:7.1f}", flush=True)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("writes", "reads"))
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "sort-1m.db")
    args = parser.parse_args()
    if args.what == "writes":
        writes(args.tasks, args.rounds)
    else:
        reads(args.db)


if __name__ == "__main__":
    main()
