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
from benchmarks.procs import BenchmarkError, Server, cpu_seconds, python_module, run_json
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


def _queue_run(impl: str, n: int, delay: float) -> dict[str, float]:
    result = run_json(python_module("benchmarks.queue_runs", impl, str(n), str(delay)),
                      QUEUE_RUN_TIMEOUT)
    return {"per_second": float(result["per_second"]),
            "submit_per_second": n / float(result["submit_seconds"])}


def case_1(plan: Plan) -> list[Row]:
    n = plan.queue_tasks
    impls = ("taskdesk", "taskdesk-normal", "huey", "huey-normal")

    def measure(impl: str, rep: int) -> float:
        rate = _queue_run(impl, n, 0)["per_second"]
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
        ratio_row(case, "Taskdesk default (FULL) ÷ huey default", runs["taskdesk"],
                  runs["huey"], Target(">=", 2.0, "≥ 2×")),
        ratio_row(case, "Taskdesk NORMAL ÷ huey NORMAL (like for like)",
                  runs["taskdesk-normal"], runs["huey-normal"], Target(">=", 1.5, "≥ 1.5×")),
        ratio_row(case, "Taskdesk default ÷ huey NORMAL", runs["taskdesk"], runs["huey-normal"],
                  note="info"),
    ]


def case_1b(plan: Plan) -> list[Row]:
    """Batch submission in process: TaskService.submit_many, 100 copies per call (FULL),
    against huey NORMAL enqueueing one task at a time; both timed as in case 1."""
    n = plan.queue_tasks
    impls = ("taskdesk-batch", "huey-normal")

    def measure(impl: str, rep: int) -> dict[str, float]:
        result = _queue_run(impl, n, 0)
        say(f"case 1b rep {rep + 1}: {impl} {result['per_second']:,.0f} tasks/s, submitted "
            f"at {result['submit_per_second']:,.0f}/s")
        return result

    runs = alternate(impls, plan.reps, measure)

    def stats(impl: str, key: str = "per_second") -> Stats:
        return Stats.of([r[key] for r in runs[impl]])

    case = "1b batch submit"
    what = f"{_n(n)} no-op tasks, 2 workers, submit → all completed"
    return [
        Row(case, f"Taskdesk `submit_many` × 100 (FULL), {what}", "tasks/s",
            stats("taskdesk-batch")),
        Row(case, f"huey `synchronous=NORMAL`, one at a time, {what}", "tasks/s",
            stats("huey-normal")),
        ratio_row(case, "Taskdesk batch (FULL) ÷ huey NORMAL", stats("taskdesk-batch"),
                  stats("huey-normal"), Target(">=", 5.0, "≥ 5×")),
        Row(case, "Taskdesk `submit_many`: submitting loop alone", "tasks/s",
            stats("taskdesk-batch", "submit_per_second"), note="info"),
        Row(case, "huey NORMAL: enqueueing loop alone", "tasks/s",
            stats("huey-normal", "submit_per_second"), note="info"),
        ratio_row(case, "submitting loops, Taskdesk batch ÷ huey NORMAL",
                  stats("taskdesk-batch", "submit_per_second"),
                  stats("huey-normal", "submit_per_second"), note="info"),
    ]


def case_2(plan: Plan) -> list[Row]:
    n = plan.tutorial_tasks
    ideal = WORKERS / TUTORIAL_DELAY

    def measure(impl: str, rep: int) -> float:
        share = _queue_run(impl, n, TUTORIAL_DELAY)["per_second"] / ideal * 100
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

# The sides of case 3: Taskdesk (the real program) and the bare app (benchmarks/bare_app.py,
# the practical limit of the architecture), each at a durability.
TASKDESK_FULL, TASKDESK_NORMAL = "taskdesk-full", "taskdesk-normal"
BARE_NORMAL, BARE_FULL = "bare-normal", "bare-full"


@dataclass(frozen=True)
class SubmitRun:
    load: LoadResult
    missing: int  # accepted tasks not found in the database afterwards
    cpu_seconds: float  # the server process's user + system CPU time over the load

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.load.requests * 1e6 if self.load.requests else 0.0


def _ids_in_db(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}
    finally:
        conn.close()


def _server_threads() -> int:
    """Taskdesk's API server threads, which the bare app uses too."""
    from service.api_server import THREADS

    return THREADS


def bare_server(db: Path, log: Path, synchronous: str = "normal", workers: int = 0) -> Server:
    """The bare bottle + cheroot app: same server, thread count and listen backlog as
    Taskdesk's API; an INSERT (one commit) per POST."""
    return Server(python_module("benchmarks.bare_app", "--db", str(db), "--synchronous",
                                synchronous, "--threads", str(_server_threads()),
                                "--workers", str(workers)), log, name="bare app")


def _submit_run(plan: Plan, side: str, connections: int) -> SubmitRun:
    folder = plan.scratch(f"submit-{side}-{connections}")
    db, ids = folder / "tasks.db", folder / "accepted.txt"
    impl, sync = side.split("-")
    if impl == "taskdesk":
        server = Server.taskdesk(db, folder / "taskdesk.log", "--synchronous", sync)
    else:
        server = bare_server(db, folder / "bare.log", sync)
    with server:
        cpu_before = cpu_seconds(server.pid)
        load = run_load(server.port, "/tasks", connections=connections,
                        duration=plan.http_seconds, body=BODY, expect=202, ids_path=ids,
                        use_wrk=plan.use_wrk)
        cpu = cpu_seconds(server.pid) - cpu_before
    accepted = set(ids.read_text().split())
    if len(accepted) != load.ok:
        raise BenchmarkError(f"{load.ok} tasks accepted but {len(accepted)} ids recorded")
    return SubmitRun(load, len(accepted - _ids_in_db(db)), cpu)


def case_3(plan: Plan) -> list[Row]:
    cells = [f"{side}/{c}" for c in (16, 64)
             for side in (TASKDESK_FULL, BARE_NORMAL, TASKDESK_NORMAL)]
    cells.append(f"{BARE_FULL}/16")

    def measure(cell: str, rep: int) -> SubmitRun:
        side, connections = cell.split("/")
        run = _submit_run(plan, side, int(connections))
        say(f"case 3 rep {rep + 1}: {side} {connections} conn: {run.load.per_second:,.0f} "
            f"req/s p99 {run.load.p99_ms:.1f} ms, {run.cpu_us_per_request:.0f} µs CPU/req, "
            f"{run.load.errors} errors, {run.missing} missing")
        return run

    runs = alternate(cells, plan.reps, measure)
    case = "3 HTTP submit"
    secs = f"{plan.http_seconds:g} s"

    def stats(cell: str, key: str) -> Stats:
        if key == "cpu":
            return Stats.of([r.cpu_us_per_request for r in runs[cell]])
        return Stats.of([float(getattr(r.load, key)) for r in runs[cell]])

    rows: list[Row] = []
    for sync in ("full", "normal"):
        rows += _submit_rows(case, sync, runs[f"taskdesk-{sync}/16"], runs[f"taskdesk-{sync}/64"],
                             secs)
    for c in (16, 64):
        td, bare = f"{TASKDESK_FULL}/{c}", f"{BARE_NORMAL}/{c}"
        rows += [
            Row(case, f"bare app (NORMAL, {_server_threads()} threads like Taskdesk), {c} conn, "
                f"{secs}: req/s", "req/s", stats(bare, "per_second"),
                note="info (the reference)"),
            Row(case, f"bare app (NORMAL), {c} conn: p99", "ms", stats(bare, "p99_ms"),
                note="info"),
            ratio_row(case, f"Taskdesk FULL ÷ bare app NORMAL, {c} conn, req/s",
                      stats(td, "per_second"), stats(bare, "per_second"),
                      Target(">=", 0.9, "≥ 0.90×")),
            Row(case, f"Taskdesk FULL, {c} conn: CPU per request (user + system)", "µs",
                stats(td, "cpu"), note="info"),
            Row(case, f"bare app NORMAL, {c} conn: CPU per request (user + system)", "µs",
                stats(bare, "cpu"), note="info"),
            ratio_row(case, f"CPU per request, Taskdesk FULL ÷ bare app, {c} conn",
                      stats(td, "cpu"), stats(bare, "cpu"), note="info"),
        ]
    rows += [
        Row(case, "Taskdesk NORMAL, 16 conn: CPU per request", "µs",
            stats(f"{TASKDESK_NORMAL}/16", "cpu"), note="info"),
        Row(case, f"bare app FULL (an fsync per POST), 16 conn, {secs}: req/s", "req/s",
            stats(f"{BARE_FULL}/16", "per_second"), note="info"),
        Row(case, "bare app FULL, 16 conn: CPU per request", "µs",
            stats(f"{BARE_FULL}/16", "cpu"), note="info"),
    ]
    # "Zero errors" must hold in every repetition, not only in the median one.
    for c in (16, 64):
        worst = max(float(r.load.errors) for r in runs[f"{TASKDESK_FULL}/{c}"])
        rows.append(Row(case, f"Taskdesk FULL, {c} conn: errors in the worst rep", "errors",
                        Stats.of([worst]), Target("<=", 0, "0")))
    missing = sum(r.missing for rs in runs.values() for r in rs)
    rows.append(Row(case, "accepted (202) tasks missing from the database, all runs (both "
                    "apps)", "tasks", Stats.of([float(missing)]), Target("<=", 0, "0")))
    return rows


def _submit_rows(case: str, sync: str, r16: list[SubmitRun], r64: list[SubmitRun],
                 secs: str) -> list[Row]:
    """Rows for one synchronous mode; targets apply to the default (FULL) only."""
    judged = sync == "full"
    label = "Taskdesk FULL (default)" if judged else "Taskdesk NORMAL"
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


def _bare_counts(db: Path) -> tuple[int, int]:
    """(completed, still queued) rows of the bare app's table."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        counts = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status")
                      .fetchall())
    except sqlite3.OperationalError:  # the table is created when the app starts
        counts = {}
    finally:
        conn.close()
    return counts.get("completed", 0), counts.get("queued", 0)


def _pipeline_run(plan: Plan, impl: str) -> PipelineRun:
    folder = plan.scratch(f"pipeline-{impl}")
    log = folder / f"{impl}.log"
    if impl == "taskdesk":
        db = folder / "tasks.db"
        server = Server.taskdesk(db, log, "--work-delay", "0")
        counts = _taskdesk_counts
    elif impl == "bare":
        db = folder / "bare.db"
        server = bare_server(db, log, "normal", workers=WORKERS)
        counts = _bare_counts
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

    runs = alternate(("taskdesk", "bare", "huey"), plan.reps, measure)

    def stats(impl: str, key: str) -> Stats:
        return Stats.of([float(getattr(r, key)) for r in runs[impl]])

    td = stats("taskdesk", "completed_per_second")
    hu = stats("huey", "completed_per_second")
    bare_posts = stats("bare", "submitted_per_second")
    case = "4 HTTP pipeline"
    what = f"POST at 16 conn for {plan.http_seconds:g} s, 2 workers, work-delay 0"
    bound = td.median * 1.0
    return [
        Row(case, f"Taskdesk: completed/s, {what}", "tasks/s", td,
            Target(">=", 1500, "≥ 1,500/s")),
        Row(case, "Taskdesk: accepted POSTs/s meanwhile", "req/s",
            stats("taskdesk", "submitted_per_second"), note="info"),
        Row(case, "Taskdesk: backlog (queued + running) at the end", "tasks",
            stats("taskdesk", "backlog"),
            Target("<=", bound, f"bounded: ≤ 1 s of completions ({bound:,.0f})")),
        Row(case, f"bare app (NORMAL, 2 worker threads): accepted POSTs/s, {what}", "req/s",
            bare_posts, note="info (the reference)"),
        Row(case, "bare app: completed/s meanwhile", "tasks/s",
            stats("bare", "completed_per_second"), note="info"),
        Row(case, "bare app: backlog at the end", "tasks", stats("bare", "backlog"),
            note="info"),
        ratio_row(case, "Taskdesk completed/s ÷ bare app accepted POSTs/s", td, bare_posts,
                  Target(">=", 0.85, "≥ 0.85×")),
        Row(case, f"huey peer: completed/s, {what}", "tasks/s", hu, note="info"),
        Row(case, "huey peer: accepted POSTs/s meanwhile", "req/s",
            stats("huey", "submitted_per_second"), note="info"),
        Row(case, "huey peer: backlog at the end", "tasks", stats("huey", "backlog"),
            note="info"),
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


WINDOW_ROWS = 100_000  # the database already present in case 6's second side


def case_6(plan: Plan) -> list[Row]:
    """The window under load on a fresh database and on one with 100,000 finished tasks
    (a copy of big_db's ``mixed`` kind for each run), alternating."""
    sides = ("empty", "rows")

    def measure(side: str, rep: int) -> dict[str, float]:
        folder = plan.scratch(f"window-{side}")
        db = folder / "tasks.db"
        if side == "rows":
            shutil.copyfile(plan.big.path("mixed", WINDOW_ROWS), db)
        result = run_json(
            python_module("benchmarks.window_probe", "under-load", "--db", str(db),
                          "--duration", str(plan.window_seconds), "--rate",
                          str(plan.window_rate)),
            PROBE_TIMEOUT + plan.window_seconds, folder / "window.log")
        say(f"case 6 rep {rep + 1}: {side}: stall p99 {result['stall_p99_ms']:.1f} ms, max "
            f"{result['stall_max_ms']:.1f} ms; submitted {result['submitted_per_second']:,.0f}"
            f"/s, completed {result['completed_per_second']:,.0f}/s, backlog "
            f"{result['backlog_at_end']:,}")
        return {k: float(v) for k, v in result.items() if isinstance(v, int | float)}

    runs = alternate(sides, plan.reps, measure)

    def stats(side: str, key: str) -> Stats:
        return Stats.of([r[key] for r in runs[side]])

    case = "6 window"
    what = f"{plan.window_rate:,.0f} POST/s offered for {plan.window_seconds:g} s, work-delay 0"
    rows: list[Row] = []
    for side, label in (("empty", "fresh database"),
                        ("rows", f"{_n(WINDOW_ROWS)} tasks already in the database")):
        rows += [
            Row(case, f"GUI stall p99 (5 ms timer), {what}, {label}", "ms",
                stats(side, "stall_p99_ms"), Target("<=", 16, "≤ 16 ms")),
            Row(case, f"GUI stall max, {label}", "ms", stats(side, "stall_max_ms"),
                Target("<=", 50, "≤ 50 ms")),
            Row(case, f"accepted POSTs/s meanwhile, {label}", "req/s",
                stats(side, "submitted_per_second"), note="info"),
            Row(case, f"completed/s meanwhile, {label}", "tasks/s",
                stats(side, "completed_per_second"), note="info"),
            Row(case, f"backlog (queued + running) at the end, {label}", "tasks",
                stats(side, "backlog_at_end"), note="info"),
        ]
    return rows


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


# Actions of one's own (benchmarks/action_cases.py): commands against task-spooler, and
# progress reports against silence.
def case_13(plan: Plan) -> list[Row]:
    from benchmarks import action_cases

    return action_cases.case_13(plan, alternate, say)


def case_14(plan: Plan) -> list[Row]:
    from benchmarks import action_cases

    return action_cases.case_14(plan, alternate, say)


# Cases by name, in the order they run: --cases 1,1b,13 selects some.
CASE_NAMES = {
    "1": "1 in-process", "1b": "1b batch submit", "2": "2 tutorial", "3": "3 HTTP submit",
    "4": "4 HTTP pipeline", "5": "5 reads", "6": "6 window", "7": "7 memory", "8": "8 nodes",
    "9": "9 vs procrastinate", "10": "10 POST on PostgreSQL", "11": "11 purge",
    "12": "12 command line", "13": "13 commands", "14": "14 progress",
}
CASES: dict[str, Callable[[Plan], list[Row]]] = {
    "1": case_1, "1b": case_1b, "2": case_2, "3": case_3, "4": case_4, "5": case_5,
    "6": case_6, "7": case_7, "8": case_8, "9": case_9, "10": case_10, "11": case_11,
    "12": case_12, "13": case_13, "14": case_14,
}
