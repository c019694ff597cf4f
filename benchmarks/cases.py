"""The seven benchmark cases. Each runs its measurements and returns rows for the table.

Comparisons run both sides in the same invocation, alternating (the order rotates each
repetition), so that repetition i of each side ran under the same conditions; ratios are of
the medians, and the min/max of a ratio row are those of the per-repetition ratios.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks.big_db import BigDatabases
from benchmarks.http_load import LoadResult, run_load
from benchmarks.memory_probe import settled_rss
from benchmarks.procs import BenchmarkError, Server, python_module, run_json
from benchmarks.report import Row, Stats, Target, ratio_row

T = TypeVar("T")

BODY = '{"action":"noop","data":{"text":"hello"}}'
WORKERS = 2
TUTORIAL_DELAY = 0.1
QUEUE_RUN_TIMEOUT = 300.0
PROBE_TIMEOUT = 120.0
MEMORY_SETTLE_TIMEOUT = 30.0
MEMORY_WORK_DELAY = "3600"


@dataclass(frozen=True)
class Plan:
    quick: bool
    reps: int
    workdir: Path
    big: BigDatabases
    queue_tasks: int
    tutorial_tasks: int
    http_seconds: float
    big_rows: int
    window_seconds: float
    window_rate: float
    use_wrk: bool

    def scratch(self, label: str) -> Path:
        """A fresh folder for one measurement, inside the invocation's work folder."""
        return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.workdir))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def alternate(sides: Sequence[str], reps: int, measure: Callable[[str, int], T]
              ) -> dict[str, list[T]]:
    """Run *measure(side, rep)* for every side in every repetition, rotating the order."""
    results: dict[str, list[T]] = {side: [] for side in sides}
    for rep in range(reps):
        k = rep % len(sides)
        for side in [*sides[k:], *sides[:k]]:
            results[side].append(measure(side, rep))
    return results


def _n(value: int) -> str:
    return f"{value:,}"


# -- 1 and 2: the queue in process --------------------------------------------------------------


def _queue_run(impl: str, n: int, delay: float) -> float:
    result = run_json(python_module("benchmarks.queue_runs", impl, str(n), str(delay)),
                      QUEUE_RUN_TIMEOUT)
    return float(result["per_second"])


def case_1(plan: Plan) -> list[Row]:
    n = plan.queue_tasks
    impls = ("taskdesk", "taskdesk-normal", "huey", "huey-normal")

    def measure(impl: str, rep: int) -> float:
        rate = _queue_run(impl, n, 0)
        say(f"case 1 rep {rep + 1}: {impl} {rate:,.0f} tasks/s")
        return rate

    runs = {k: Stats.of(v) for k, v in alternate(impls, plan.reps, measure).items()}
    case = "1 in-process"
    what = f"{_n(n)} no-op tasks, 2 workers"
    return [
        Row(case, f"Taskdesk (FULL, default), {what}", "tasks/s", runs["taskdesk"]),
        Row(case, f"Taskdesk `--synchronous normal`, {what}", "tasks/s",
            runs["taskdesk-normal"]),
        Row(case, f"huey SqliteHuey defaults, {what}", "tasks/s", runs["huey"]),
        Row(case, f"huey `synchronous=NORMAL`, {what}", "tasks/s", runs["huey-normal"]),
        ratio_row(case, "Taskdesk default ÷ huey default", runs["taskdesk"], runs["huey"],
                  Target(">=", 4.0, "≥ 4×")),
        ratio_row(case, "Taskdesk default ÷ huey NORMAL", runs["taskdesk"], runs["huey-normal"],
                  Target(">=", 2.0, "≥ 2×")),
        ratio_row(case, "Taskdesk NORMAL ÷ huey NORMAL", runs["taskdesk-normal"],
                  runs["huey-normal"], note="info (like for like)"),
    ]


def case_2(plan: Plan) -> list[Row]:
    n = plan.tutorial_tasks
    ideal = WORKERS / TUTORIAL_DELAY

    def measure(impl: str, rep: int) -> float:
        share = _queue_run(impl, n, TUTORIAL_DELAY) / ideal * 100
        say(f"case 2 rep {rep + 1}: {impl} {share:.1f} % of {ideal:.0f}/s")
        return share

    runs = alternate(("taskdesk", "huey"), plan.reps, measure)
    case = "2 tutorial"
    what = f"{_n(n)} tasks × 100 ms, 2 workers, share of ideal {ideal:.0f}/s"
    return [
        Row(case, f"Taskdesk, {what}", "%", Stats.of(runs["taskdesk"]),
            Target(">=", 99.0, "≥ 99 %")),
        Row(case, f"huey, {what}", "%", Stats.of(runs["huey"]), note="info (about 96 %)"),
    ]


# -- 3: HTTP submit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitRun:
    load: LoadResult
    missing: int  # accepted tasks not found in the database afterwards


def _ids_in_db(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}
    finally:
        conn.close()


def _submit_run(plan: Plan, sync: str, connections: int) -> SubmitRun:
    folder = plan.scratch(f"submit-{sync}-{connections}")
    db, ids = folder / "tasks.db", folder / "accepted.txt"
    with Server.taskdesk(db, folder / "taskdesk.log", "--synchronous", sync) as server:
        load = run_load(server.port, "/tasks", connections=connections,
                        duration=plan.http_seconds, body=BODY, expect=202, ids_path=ids,
                        use_wrk=plan.use_wrk)
    accepted = set(ids.read_text().split())
    if len(accepted) != load.ok:
        raise BenchmarkError(f"{load.ok} tasks accepted but {len(accepted)} ids recorded")
    return SubmitRun(load, len(accepted - _ids_in_db(db)))


def case_3(plan: Plan) -> list[Row]:
    cells = [f"{sync}/{c}" for c in (16, 64) for sync in ("full", "normal")]

    def measure(cell: str, rep: int) -> SubmitRun:
        sync, connections = cell.split("/")
        run = _submit_run(plan, sync, int(connections))
        say(f"case 3 rep {rep + 1}: {sync} {connections} conn: {run.load.per_second:,.0f} "
            f"req/s p99 {run.load.p99_ms:.1f} ms, {run.load.errors} errors, "
            f"{run.missing} missing")
        return run

    runs = alternate(cells, plan.reps, measure)
    case = "3 HTTP submit"
    rows: list[Row] = []
    for sync in ("full", "normal"):
        rows += _submit_rows(case, sync, runs[f"{sync}/16"], runs[f"{sync}/64"],
                             f"{plan.http_seconds:g} s")
    # "Zero errors" must hold in every repetition, not only in the median one.
    worst = max(float(r.load.errors) for r in runs["full/64"])
    missing = sum(r.missing for rs in runs.values() for r in rs)
    rows.append(Row(case, "FULL, 64 conn: errors in the worst rep", "errors",
                    Stats.of([worst]), Target("<=", 0, "0")))
    rows.append(Row(case, "accepted (202) tasks missing from the database, all runs", "tasks",
                    Stats.of([float(missing)]), Target("<=", 0, "0")))
    return rows


def _submit_rows(case: str, sync: str, r16: list[SubmitRun], r64: list[SubmitRun],
                 secs: str) -> list[Row]:
    """Rows for one synchronous mode; targets apply to the default (FULL) only."""
    judged = sync == "full"
    label = "FULL (default)" if judged else "NORMAL"
    info = "" if judged else "info (targets are for the default)"

    def target(op: str, limit: float, text: str) -> Target | None:
        return Target(op, limit, text) if judged else None

    def stats(runs: list[SubmitRun], key: str) -> Stats:
        return Stats.of([float(getattr(r.load, key)) for r in runs])

    rate16, rate64 = stats(r16, "per_second"), stats(r64, "per_second")
    return [
        Row(case, f"{label}, 16 conn, {secs}: req/s", "req/s", rate16,
            target(">=", 2000, "≥ 2,000 req/s"), info),
        Row(case, f"{label}, 16 conn: p50", "ms", stats(r16, "p50_ms"), note="info"),
        Row(case, f"{label}, 16 conn: p99", "ms", stats(r16, "p99_ms"),
            target("<=", 50, "≤ 50 ms"), info),
        Row(case, f"{label}, 16 conn: errors", "errors", stats(r16, "errors"), note="info"),
        Row(case, f"{label}, 64 conn, {secs}: req/s", "req/s", rate64, note="info"),
        ratio_row(case, f"{label}, 64 conn ÷ 16 conn req/s", rate64, rate16,
                  target(">=", 0.9, "≥ 0.90× (90 %)"), info),
        Row(case, f"{label}, 64 conn: p50", "ms", stats(r64, "p50_ms"), note="info"),
        Row(case, f"{label}, 64 conn: p99", "ms", stats(r64, "p99_ms"),
            target("<=", 100, "≤ 100 ms"), info),
        Row(case, f"{label}, 64 conn: errors", "errors", stats(r64, "errors"), note="info"),
    ]


# -- 4: HTTP pipeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRun:
    submitted_per_second: float
    completed_per_second: float
    backlog: int


def _taskdesk_counts(db: Path) -> tuple[int, int]:
    """(completed, backlog = queued + running), read from the file by another connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        counts = dict(conn.execute("SELECT status, n FROM task_counts").fetchall())
    finally:
        conn.close()
    return counts.get("completed", 0), counts.get("queued", 0) + counts.get("running", 0)


def _huey_counts(db: Path) -> tuple[int, int]:
    """(results stored, tasks waiting in huey's queue)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        done = conn.execute("SELECT count(*) FROM kv").fetchone()[0]
        waiting = conn.execute("SELECT count(*) FROM task").fetchone()[0]
    finally:
        conn.close()
    return int(done), int(waiting)


def _pipeline_run(plan: Plan, impl: str) -> PipelineRun:
    folder = plan.scratch(f"pipeline-{impl}")
    log = folder / f"{impl}.log"
    if impl == "taskdesk":
        db = folder / "tasks.db"
        server = Server.taskdesk(db, log, "--work-delay", "0")
        counts = _taskdesk_counts
    else:
        db = folder / "huey.db"
        server = Server(python_module("benchmarks.huey_peer", "--db", str(db), "--workers",
                                      str(WORKERS)), log, name="huey peer")
        counts = _huey_counts
    with server:
        done_before, _ = counts(db)
        load = run_load(server.port, "/tasks", connections=16, duration=plan.http_seconds,
                        body=BODY, expect=202, use_wrk=plan.use_wrk)
        done_after, backlog = counts(db)
    return PipelineRun(load.ok / load.seconds, (done_after - done_before) / load.seconds,
                       backlog)


def case_4(plan: Plan) -> list[Row]:
    def measure(impl: str, rep: int) -> PipelineRun:
        run = _pipeline_run(plan, impl)
        say(f"case 4 rep {rep + 1}: {impl} submitted {run.submitted_per_second:,.0f}/s, "
            f"completed {run.completed_per_second:,.0f}/s, backlog {run.backlog:,}")
        return run

    runs = alternate(("taskdesk", "huey"), plan.reps, measure)
    td = Stats.of([r.completed_per_second for r in runs["taskdesk"]])
    hu = Stats.of([r.completed_per_second for r in runs["huey"]])
    case = "4 HTTP pipeline"
    what = f"POST at 16 conn for {plan.http_seconds:g} s, 2 workers, work-delay 0"
    bound = td.median * 1.0
    return [
        Row(case, f"Taskdesk: completed/s, {what}", "tasks/s", td,
            Target(">=", 1500, "≥ 1,500/s")),
        Row(case, "Taskdesk: accepted POSTs/s meanwhile", "req/s",
            Stats.of([r.submitted_per_second for r in runs["taskdesk"]]), note="info"),
        Row(case, "Taskdesk: backlog (queued + running) at the end", "tasks",
            Stats.of([float(r.backlog) for r in runs["taskdesk"]]),
            Target("<=", bound, f"bounded: ≤ 1 s of completions ({bound:,.0f})")),
        Row(case, f"huey peer: completed/s, {what}", "tasks/s", hu, note="info"),
        Row(case, "huey peer: accepted POSTs/s meanwhile", "req/s",
            Stats.of([r.submitted_per_second for r in runs["huey"]]), note="info"),
        Row(case, "huey peer: backlog at the end", "tasks",
            Stats.of([float(r.backlog) for r in runs["huey"]]), note="info"),
        ratio_row(case, "Taskdesk ÷ huey completed/s", td, hu, Target(">=", 2.0, "≥ 2×")),
    ]


# -- 5: reads at scale --------------------------------------------------------------------------


def _db_label(plan: Plan) -> str:
    label = f"{_n(plan.big_rows)} tasks"
    return label + " (quick: smaller db)" if plan.quick else label


def case_5(plan: Plan) -> list[Row]:
    db = plan.big.path("mixed", plan.big_rows)
    queries = ("/tasks", "/tasks?status=failed")
    folder = plan.scratch("reads")
    case = "5 reads"
    rows: list[Row] = []
    with Server.taskdesk(db, folder / "taskdesk.log") as server:
        def measure(path: str, rep: int) -> LoadResult:
            load = run_load(server.port, path, connections=16, duration=plan.http_seconds,
                            expect=200, use_wrk=plan.use_wrk)
            say(f"case 5 rep {rep + 1}: GET {path} {load.per_second:,.0f} req/s "
                f"p99 {load.p99_ms:.1f} ms, {load.errors} errors")
            return load

        runs = alternate(queries, plan.reps, measure)
    for path in queries:
        what = f"GET {path} ({'newest 100' if path == '/tasks' else 'newest 100 failed'}), " \
               f"{_db_label(plan)}, 16 conn"
        rows += [
            Row(case, f"{what}: req/s", "req/s", Stats.of([r.per_second for r in runs[path]]),
                Target(">=", 1000, "≥ 1,000 req/s")),
            Row(case, f"GET {path}: p99", "ms", Stats.of([r.p99_ms for r in runs[path]]),
                Target("<=", 50, "≤ 50 ms")),
            Row(case, f"GET {path}: errors", "errors",
                Stats.of([float(r.errors) for r in runs[path]]), note="info"),
        ]
    paints: list[float] = []
    for rep in range(plan.reps):
        result = run_json(python_module("benchmarks.window_probe", "first-paint", "--db", str(db)),
                          PROBE_TIMEOUT, folder / f"first-paint-{rep}.log")
        paints.append(float(result["seconds"]) * 1000)
        say(f"case 5 rep {rep + 1}: window first page painted after {result['seconds']:.3f} s "
            f"({result['rows_loaded']} rows loaded)")
    rows.append(Row(case, f"window open → first page painted, {_db_label(plan)}", "ms",
                    Stats.of(paints), Target("<=", 1500, "≤ 1.5 s")))
    return rows


# -- 6: the window under load -------------------------------------------------------------------


def case_6(plan: Plan) -> list[Row]:
    results = []
    for rep in range(plan.reps):
        folder = plan.scratch("window")
        result = run_json(
            python_module("benchmarks.window_probe", "under-load", "--db",
                          str(folder / "tasks.db"), "--duration", str(plan.window_seconds),
                          "--rate", str(plan.window_rate)),
            PROBE_TIMEOUT + plan.window_seconds, folder / "window.log")
        say(f"case 6 rep {rep + 1}: stall p99 {result['stall_p99_ms']:.1f} ms, max "
            f"{result['stall_max_ms']:.1f} ms; submitted {result['submitted_per_second']:,.0f}/s, "
            f"completed {result['completed_per_second']:,.0f}/s, backlog "
            f"{result['backlog_at_end']:,}")
        results.append(result)

    def stats(key: str) -> Stats:
        return Stats.of([float(r[key]) for r in results])

    case = "6 window"
    what = f"{plan.window_rate:,.0f} POST/s offered for {plan.window_seconds:g} s, work-delay 0"
    return [
        Row(case, f"GUI stall p99 (5 ms timer), {what}", "ms", stats("stall_p99_ms"),
            Target("<=", 16, "≤ 16 ms")),
        Row(case, "GUI stall max", "ms", stats("stall_max_ms"), Target("<=", 100, "≤ 100 ms")),
        Row(case, "accepted POSTs/s meanwhile", "req/s", stats("submitted_per_second"),
            note="info"),
        Row(case, "completed/s meanwhile", "tasks/s", stats("completed_per_second"),
            note="info"),
        Row(case, "backlog (queued + running) at the end", "tasks", stats("backlog_at_end"),
            note="info"),
    ]


# -- 7: memory ----------------------------------------------------------------------------------


def case_7(plan: Plan) -> list[Row]:
    db = plan.big.path("queued", plan.big_rows)
    rss: list[float] = []
    peak: list[float] = []
    for rep in range(plan.reps):
        folder = plan.scratch("memory")
        # The workers sleep an hour in their first task, so a graceful stop would wait for
        # them in vain: the server is killed at once instead.
        server = Server.taskdesk(db, folder / "taskdesk.log", "--work-delay", MEMORY_WORK_DELAY,
                                 stop_timeout=0)
        with server:
            memory = settled_rss(server.pid, MEMORY_SETTLE_TIMEOUT)
        say(f"case 7 rep {rep + 1}: VmRSS {memory.rss_mb:.1f} MB (peak {memory.peak_mb:.1f} "
            f"MB), settled after {memory.settle_seconds:.1f} s")
        rss.append(memory.rss_mb)
        peak.append(memory.peak_mb)
    case = "7 memory"
    what = f"headless, {_db_label(plan)} queued, workers busy"
    return [
        Row(case, f"VmRSS after start-up settles, {what}", "MB", Stats.of(rss),
            Target("<=", 200, "≤ 200 MB")),
        Row(case, "VmHWM (peak RSS) at that moment", "MB", Stats.of(peak), note="info"),
    ]


# PostgreSQL (benchmarks/pg_cases.py): a server named by the PG* variables.
def case_8(plan: Plan) -> list[Row]:
    from benchmarks import pg_cases

    return pg_cases.case_8(plan, alternate, say)


def case_9(plan: Plan) -> list[Row]:
    from benchmarks import pg_cases

    return pg_cases.case_9(plan, alternate, say)


def case_10(plan: Plan) -> list[Row]:
    from benchmarks import pg_cases

    return pg_cases.case_10(plan, alternate, say)


# -- 11: submissions while retention purges a backlog ------------------------------------------


def _count_tasks(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT sum(n) FROM task_counts").fetchone()[0] or 0)
    finally:
        conn.close()


def case_11(plan: Plan) -> list[Row]:
    """POST /tasks at 16 connections on a database whose finished tasks are all past their
    retention: once with retention on (it purges in batches meanwhile), once with it off
    (0 days: kept forever), alternating. The p99 must not move."""
    source = plan.big.path("old", plan.big_rows)
    sides = ("purging", "kept")

    def measure(side: str, rep: int) -> tuple[LoadResult, int]:
        folder = plan.scratch(f"purge-{side}")
        db = folder / "tasks.db"
        shutil.copyfile(source, db)  # Taskdesk deletes from it: a copy for each run
        before = _count_tasks(db)
        keep = ("30", "90") if side == "purging" else ("0", "0")
        with Server.taskdesk(db, folder / "taskdesk.log", "--keep-completed", keep[0],
                             "--keep-failed", keep[1]) as server:
            load = run_load(server.port, "/tasks", connections=16,
                            duration=plan.http_seconds, body=BODY, expect=202,
                            use_wrk=plan.use_wrk)
        deleted = before + load.ok - _count_tasks(db)
        say(f"case 11 rep {rep + 1}: {side}: POST p99 {load.p99_ms:.1f} ms, "
            f"{load.per_second:,.0f} req/s, {deleted:,} old tasks deleted meanwhile")
        return load, deleted

    runs = alternate(sides, plan.reps, measure)
    case = "11 purge"
    what = f"POST /tasks, 16 conn, {_db_label(plan)} past retention"
    p99 = {side: Stats.of([load.p99_ms for load, _ in runs[side]]) for side in sides}
    return [
        Row(case, f"{what}, purging: p99", "ms", p99["purging"], note="info"),
        Row(case, f"{what}, retention off: p99", "ms", p99["kept"], note="info (baseline)"),
        ratio_row(case, "p99 purging ÷ p99 retention off", p99["purging"], p99["kept"],
                  Target("<=", 1.25, "≤ 1.25×")),
        Row(case, f"{what}, purging: req/s", "req/s",
            Stats.of([load.per_second for load, _ in runs["purging"]]), note="info"),
        Row(case, f"{what}, retention off: req/s", "req/s",
            Stats.of([load.per_second for load, _ in runs["kept"]]), note="info"),
        Row(case, "old tasks deleted during the load", "tasks",
            Stats.of([float(deleted) for _, deleted in runs["purging"]]), note="info"),
        Row(case, "errors (both sides)", "errors",
            Stats.of([float(load.errors) for side in sides for load, _ in runs[side]]),
            Target("<=", 0, "0")),
    ]


# The command line (benchmarks/cli_case.py): `taskdesk list` beside task-spooler's `tsp -l`.
def case_12(plan: Plan) -> list[Row]:
    from benchmarks import cli_case

    return cli_case.case_12(plan, say)


CASE_NAMES = {
    1: "1 in-process", 2: "2 tutorial", 3: "3 HTTP submit", 4: "4 HTTP pipeline",
    5: "5 reads", 6: "6 window", 7: "7 memory", 8: "8 nodes", 9: "9 vs procrastinate",
    10: "10 POST on PostgreSQL", 11: "11 purge", 12: "12 command line",
}
CASES: dict[int, Callable[[Plan], list[Row]]] = {
    1: case_1, 2: case_2, 3: case_3, 4: case_4, 5: case_5, 6: case_6, 7: case_7,
    8: case_8, 9: case_9, 10: case_10, 11: case_11, 12: case_12,
}
