"""The PostgreSQL cases (8–10): several nodes on one database, Taskdesk against procrastinate
on the same server, and POST /tasks on PostgreSQL beside SQLite.

The server is the one the PG* variables name (``PGHOST``, ``PGPORT``, ``PGUSER``,
``PGPASSWORD``; the user must be allowed to create databases); every measurement makes a
database of its own and drops it afterwards. Backlogs are stored with the queue paused, the
nodes started and listening, and then the queue resumed (with the NOTIFY a resume sends):
the time runs from the resume's commit until the last task is counted completed.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.http_load import LoadResult, run_load
from benchmarks.procs import BenchmarkError, Server, python_module, run_json
from benchmarks.report import Row, Stats, Target, ratio_row
from tests.launcher import main_command

BODY = '{"action":"noop","data":{"text":"hello"}}'
DRAIN_TIMEOUT = 300.0
POLL_SECONDS = 0.01
LEASE = "30"


def _admin() -> Any:
    import psycopg

    if not os.environ.get("PGHOST"):
        raise BenchmarkError("no PostgreSQL server: set PGHOST, PGPORT, PGUSER and "
                             "PGPASSWORD (scripts/dev.sh bench starts a throw-away one)")
    return psycopg.connect(dbname=os.environ.get("PGDATABASE", "postgres"), autocommit=True,
                           connect_timeout=5)


@contextmanager
def database(label: str) -> Iterator[str]:
    """A new database for one measurement; its URL (password left to PGPASSWORD)."""
    name = f"taskdesk_bench_{label}_{uuid.uuid4().hex[:8]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    user = os.environ.get("PGUSER", "postgres")
    host, port = os.environ["PGHOST"], os.environ.get("PGPORT", "5432")
    try:
        yield f"postgresql://{user}@{host}:{port}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _node(url: str, log: Path, *options: str) -> Server:
    args = main_command("--headless", "--db", url, "--port", "0", "--lease", LEASE, *options)
    return Server(args, log, name="taskdesk node")


def _backlog(url: str, n: int) -> None:
    """*n* queued no-op tasks, the queue paused (opening the store migrates the database)."""
    from storage import NewTask, open_store

    store = open_store(url)
    try:
        store.set_paused(True)
        for start in range(0, n, 5000):
            store.add_many(NewTask("noop", '{"text":"hello"}', 3), min(5000, n - start),
                           time.time())
    finally:
        store.close()


def _completed(conn: Any) -> int:
    row = conn.execute(
        "SELECT (SELECT n FROM task_counts WHERE status = 'completed') + coalesce((SELECT "
        "sum(n) FROM task_count_deltas WHERE status = 'completed'), 0)").fetchone()
    return int(row[0])


def _resume_and_time(url: str, n: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("UPDATE queue_state SET paused = false")
            conn.execute("SELECT pg_notify('taskdesk', 'bench q ')")
        started = time.perf_counter()
        deadline = started + DRAIN_TIMEOUT
        while _completed(conn) < n:
            if time.perf_counter() > deadline:
                raise BenchmarkError(f"{n} tasks not completed within {DRAIN_TIMEOUT:.0f} s")
            time.sleep(POLL_SECONDS)
        return time.perf_counter() - started


@dataclass(frozen=True)
class Drain:
    per_second: float
    per_node: list[int]  # tasks each node completed, from its log


def drain(folder: Path, nodes: int, n: int, *options: str) -> Drain:
    with database("drain") as url:
        _backlog(url, n)
        logs = [folder / f"node{k}-{uuid.uuid4().hex[:6]}.log" for k in range(nodes)]
        servers = [_node(url, log, *options) for log in logs]
        try:
            for server in servers:
                server.__enter__()
            seconds = _resume_and_time(url, n)
        finally:
            for server in servers:
                server.stop()
        per_node = [len(re.findall(r"task completed id=", server.log)) for server in servers]
    return Drain(n / seconds, per_node)


# -- 8: one node or two ------------------------------------------------------------------------


def case_8(plan: Any, alternate: Any, say: Any) -> list[Row]:
    case = "8 nodes"
    rows: list[Row] = []
    workloads = [
        ("no-op tasks, 2 workers per node", 1000 if plan.quick else 5000,
         ("--work-delay", "0", "--workers", "2")),
        ("100 ms tasks, 8 workers per node", 240 if plan.quick else 800,
         ("--work-delay", "0.1", "--workers", "8")),
    ]
    for label, n, options in workloads:
        def measure(side: str, rep: int, n: int = n, options: tuple[str, ...] = options,
                    label: str = label) -> Drain:
            result = drain(plan.scratch(f"nodes-{side}"), int(side), n, *options)
            say(f"case 8 rep {rep + 1}: {label}, {side} node(s): {result.per_second:,.0f} "
                f"tasks/s, per node {result.per_node}")
            return result

        runs = alternate(("1", "2"), plan.reps, measure)
        one = Stats.of([r.per_second for r in runs["1"]])
        two = Stats.of([r.per_second for r in runs["2"]])
        shares = [sorted(r.per_node) for r in runs["2"]]
        rows += [
            Row(case, f"1 node, {label}, {n:,} tasks: drained", "tasks/s", one),
            Row(case, f"2 nodes, {label}, {n:,} tasks: drained", "tasks/s", two),
            Row(case, f"2 nodes, {label}: tasks done by the busier node", "%",
                Stats.of([100 * s[1] / sum(s) for s in shares]), note="info (50 % is even)"),
            ratio_row(case, f"{label}: 2 nodes ÷ 1 node", two, one, note="info (scaling)"),
        ]
    return rows


# -- 9: Taskdesk against procrastinate ---------------------------------------------------------


def case_9(plan: Any, alternate: Any, say: Any) -> list[Row]:
    n = 1000 if plan.quick else 5000
    workers = 2

    def measure(impl: str, rep: int) -> float:
        if impl == "taskdesk":
            rate = drain(plan.scratch("vs-procrastinate"), 1, n, "--work-delay", "0",
                         "--workers", str(workers)).per_second
        else:
            with database("procrastinate") as url:
                result = run_json(python_module("benchmarks.procrastinate_peer", url, str(n),
                                                str(workers)), DRAIN_TIMEOUT)
            rate = float(result["per_second"])
        say(f"case 9 rep {rep + 1}: {impl} {rate:,.0f} tasks/s")
        return rate

    runs = {k: Stats.of(v) for k, v in
            alternate(("taskdesk", "procrastinate"), plan.reps, measure).items()}
    case = "9 vs procrastinate"
    what = f"{n:,} no-op tasks drained, {workers} workers"
    return [
        Row(case, f"Taskdesk on PostgreSQL, {what}", "tasks/s", runs["taskdesk"]),
        Row(case, f"procrastinate, same server, {what}", "tasks/s", runs["procrastinate"]),
        ratio_row(case, "Taskdesk ÷ procrastinate", runs["taskdesk"], runs["procrastinate"],
                  Target(">=", 2.0, "≥ 2×")),
    ]


# -- 10: POST /tasks on PostgreSQL beside SQLite ------------------------------------------------


def _ids_in_pg(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}


def _ids_in_sqlite(db: Path) -> set[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}
    finally:
        conn.close()


@dataclass(frozen=True)
class Posted:
    load: LoadResult
    missing: int


def case_10(plan: Any, alternate: Any, say: Any) -> list[Row]:
    connections = 16

    def post(folder: Path, db: str) -> tuple[LoadResult, set[str]]:
        ids = folder / "accepted.txt"
        with Server(main_command("--headless", "--db", db, "--port", "0"),
                    folder / "taskdesk.log", name="taskdesk") as server:
            load = run_load(server.port, "/tasks", connections=connections,
                            duration=plan.http_seconds, body=BODY, expect=202, ids_path=ids,
                            use_wrk=plan.use_wrk)
        return load, set(ids.read_text().split())

    def measure(backend: str, rep: int) -> Posted:
        folder = plan.scratch(f"post-{backend}")
        if backend == "postgresql":
            with database("post") as url:
                load, accepted = post(folder, url)
                missing = len(accepted - _ids_in_pg(url))
        else:
            db = folder / "tasks.db"
            load, accepted = post(folder, str(db))
            missing = len(accepted - _ids_in_sqlite(db))
        say(f"case 10 rep {rep + 1}: {backend} {load.per_second:,.0f} req/s p99 "
            f"{load.p99_ms:.1f} ms, {load.errors} errors, {missing} missing")
        return Posted(load, missing)

    runs = alternate(("postgresql", "sqlite"), plan.reps, measure)
    case = "10 POST on PostgreSQL"
    rows: list[Row] = []
    for backend, label in (("postgresql", "PostgreSQL"), ("sqlite", "SQLite (FULL)")):
        loads = [r.load for r in runs[backend]]
        rows += [
            Row(case, f"{label}, {connections} conn, {plan.http_seconds:g} s: req/s", "req/s",
                Stats.of([x.per_second for x in loads])),
            Row(case, f"{label}, {connections} conn: p99", "ms",
                Stats.of([x.p99_ms for x in loads])),
            Row(case, f"{label}, {connections} conn: errors", "errors",
                Stats.of([float(x.errors) for x in loads]), note="info"),
        ]
    rows.append(ratio_row(case, "PostgreSQL ÷ SQLite req/s",
                          Stats.of([r.load.per_second for r in runs["postgresql"]]),
                          Stats.of([r.load.per_second for r in runs["sqlite"]]), note="info"))
    missing = sum(r.missing for rs in runs.values() for r in rs)
    rows.append(Row(case, "accepted (202) tasks missing from the database, all runs", "tasks",
                    Stats.of([float(missing)]), Target("<=", 0, "0")))
    return rows
