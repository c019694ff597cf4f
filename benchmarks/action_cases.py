"""Cases 13 and 14: actions of the user's own, drained from a backlog.

Both start from a backlog stored while the queue is paused, so that only the running of the
tasks is timed: a headless Taskdesk (``main.py --headless --port 0`` plus the case's options)
is started, ``POST /queue/pause``, N ``POST /tasks`` (one keep-alive connection, with the
token that actions of one's own require), then ``POST /queue/resume``; the time runs from just
before the resume is sent until the database's ``task_counts`` (read every 5 ms by another
connection) say all N are completed. The server process's user + system CPU time over that
span, from ``/proc/PID/stat``, is reported per task.

13 commands: N tasks of a command action ``true`` (``argv = ["true"]`` in an actions file),
2 workers, against task-spooler (``tsp``, Debian package ``task-spooler``) with 2 slots, a
server of the case's own (``TS_SOCKET`` and ``TMPDIR`` in the scratch folder). task-spooler
has no pause, so its backlog waits behind two jobs that hold both slots (each ``cat`` of a
FIFO of its own, blocked until the harness opens and closes the FIFO's other end); N ``tsp
true`` are queued behind them, and the time runs from the release of the two until ``tsp -w``
has seen the last two jobs finish.

14 progress: a Python action (a plugin file) that sleeps 10 ms STEPS times and, after each
sleep, reports ``ctx.progress`` (so about 100 reports a second while it runs), against the
same action without the reports; 8 workers, so 800 reports a second reach the queue. The two
sides alternate, each a fresh Taskdesk and database.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.procs import BenchmarkError, Server, cpu_seconds
from benchmarks.report import Row, Stats, Target, ratio_row

# Not the 1,000: a job tsp holds queued is a client process with a connection to its
# server, which takes at most about 1,000 (a thousandth `tsp true` behind two held slots
# blocks until one ends, whatever TS_MAXCONN and the open-file limit say).
COMMANDS, QUICK_COMMANDS = 900, 200
COMMAND_WORKERS = 2
PROGRESS_TASKS, QUICK_PROGRESS_TASKS = 400, 80
PROGRESS_WORKERS = 8
STEPS = 20  # 10 ms sleeps per progress task: 0.2 s of work
DRAIN_TIMEOUT = 300.0
POLL_SECONDS = 0.005
TSP_TIMEOUT = 30.0

ACTIONS_TOML = """\
[actions.true]
description = "Run true (benchmark case 13)"
argv = ["true"]
"""

PLUGIN = f'''\
"""Benchmark case 14: the same work with and without progress reports."""
import time

STEPS = {STEPS}


def with_progress(data, ctx):
    for i in range(STEPS):
        time.sleep(0.01)
        ctx.progress((i + 1) / STEPS, f"step {{i + 1}} of {{STEPS}}")
    return {{"steps": STEPS}}


def silent(data, ctx):
    for i in range(STEPS):
        time.sleep(0.01)
    return {{"steps": STEPS}}


TASKDESK_ACTIONS = [
    {{"name": "tick-progress", "description": "reports progress every 10 ms",
      "run": with_progress}},
    {{"name": "tick-silent", "description": "the same, silent", "run": silent}},
]
'''


@dataclass(frozen=True)
class Drain:
    seconds: float  # from the release of the backlog until its last task finished
    submit_seconds: float  # storing (or queueing) the backlog
    cpu_seconds: float | None = None  # the server's CPU time over the drain (Taskdesk only)

    def per_second(self, n: int) -> float:
        return n / self.seconds


class _Api:
    """A keep-alive HTTP/1.1 connection to a Taskdesk on 127.0.0.1, with its token."""

    def __init__(self, port: int, token: str | None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: dict[str, Any] | None, expect: int) -> None:
        self.conn.request("POST", path, json.dumps(body) if body is not None else "",
                          self.headers)
        answer = self.conn.getresponse()
        text = answer.read()
        if answer.status != expect:
            raise BenchmarkError(f"POST {path}: {answer.status} {text[:300]!r}")

    def close(self) -> None:
        self.conn.close()


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, n FROM task_counts").fetchall())


def taskdesk_drain(folder: Path, options: list[str], action: str, n: int) -> Drain:
    """Store *n* tasks of *action* with the queue paused, resume it, time until all are
    completed (see the module's docstring)."""
    db = folder / "tasks.db"
    with Server.taskdesk(db, folder / "taskdesk.log", *options) as server:
        token_file = Path(f"{db}.token")
        token = token_file.read_text().strip() if token_file.exists() else None
        api = _Api(server.port, token)
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            api.post("/queue/pause", None, 200)
            started = time.perf_counter()
            for _ in range(n):
                api.post("/tasks", {"action": action, "data": {}}, 202)
            submitted = time.perf_counter() - started
            queued = _counts(reader).get("queued", 0)
            if queued != n:
                raise BenchmarkError(f"{queued} tasks queued before the resume, not {n}")
            cpu_before = cpu_seconds(server.pid)
            released = time.perf_counter()
            api.post("/queue/resume", None, 200)
            deadline = released + DRAIN_TIMEOUT
            while True:
                counts = _counts(reader)
                if counts.get("completed", 0) >= n:
                    break
                if counts.get("failed", 0) or counts.get("cancelled", 0):
                    raise BenchmarkError(f"tasks of {action} did not complete: {counts}")
                if time.perf_counter() > deadline:
                    raise BenchmarkError(f"{n} tasks of {action} not done within "
                                         f"{DRAIN_TIMEOUT:.0f} s: {counts}")
                time.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - released
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            reader.close()
            api.close()
    return Drain(seconds, submitted, cpu)


# -- 13: commands against task-spooler ----------------------------------------------------------


def _tsp(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["tsp", *args], env=env, capture_output=True, text=True,
                          timeout=TSP_TIMEOUT, check=False)
    if done.returncode != 0 and args[:1] != ("-w",):
        raise BenchmarkError(f"tsp {' '.join(args)} exited {done.returncode}: "
                             f"{done.stderr.strip()[-300:]}")
    return done.stdout.strip()


@contextmanager
def _spooler(folder: Path, n: int) -> Iterator[dict[str, str]]:
    if shutil.which("tsp") is None:
        raise BenchmarkError("task-spooler is not installed (Debian package task-spooler)")
    env = {**os.environ, "TS_SOCKET": str(folder / "tsp.socket"), "TMPDIR": str(folder),
           "TS_MAXFINISHED": str(n + 10)}
    try:
        yield env
    finally:
        subprocess.run(["tsp", "-K"], env=env, check=False, timeout=TSP_TIMEOUT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _open_writer(fifo: Path, deadline: float) -> int:
    """Open *fifo* for writing once its reader (a blocked job) has it open."""
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            if time.monotonic() > deadline:
                raise BenchmarkError(f"task-spooler's job never opened {fifo.name}") from None
            time.sleep(0.01)


def tsp_drain(folder: Path, n: int, slots: int) -> Drain:
    with _spooler(folder, n) as env:
        _tsp(env, "-S", str(slots))
        fifos = [folder / f"hold-{i}.fifo" for i in range(slots)]
        for fifo in fifos:  # one blocked job per slot holds the backlog
            os.mkfifo(fifo)
            _tsp(env, "cat", str(fifo))
        started = time.perf_counter()
        ids = [_tsp(env, "true") for _ in range(n)]
        submitted = time.perf_counter() - started
        deadline = time.monotonic() + TSP_TIMEOUT
        writers = [_open_writer(fifo, deadline) for fifo in fifos]
        last = subprocess.Popen(["tsp", "-w", ids[-1]], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.2)  # tsp -w has connected and waits
            released = time.perf_counter()
            for fd in writers:
                os.close(fd)  # end of file: the holding jobs end, the backlog runs
            last.wait(DRAIN_TIMEOUT)
            for job in ids[-slots:-1]:  # the others still running when the last finished
                _tsp(env, "-w", job)
            seconds = time.perf_counter() - released
        finally:
            if last.poll() is None:
                last.kill()
                last.wait(10)
        states = _tsp(env, "-l").splitlines()[1:]
        finished = sum(1 for line in states if " finished " in line)
        if finished != n + slots:
            raise BenchmarkError(f"task-spooler finished {finished} of {n + slots} jobs")
    return Drain(seconds, submitted)


def case_13(plan: Any, alternate: Callable[..., dict[str, list[Drain]]],
            say: Callable[[str], None]) -> list[Row]:
    n = QUICK_COMMANDS if plan.quick else COMMANDS

    def measure(side: str, rep: int) -> Drain:
        folder: Path = plan.scratch(f"commands-{side}")
        if side == "taskdesk":
            actions = folder / "actions.toml"
            actions.write_text(ACTIONS_TOML, encoding="utf-8")
            drain = taskdesk_drain(folder, ["--actions", str(actions), "--no-plugins",
                                            "--workers", str(COMMAND_WORKERS)], "true", n)
        else:
            drain = tsp_drain(folder, n, COMMAND_WORKERS)
        say(f"case 13 rep {rep + 1}: {side}: {n} `true` in {drain.seconds:.2f} s "
            f"({drain.per_second(n):,.0f}/s), queued in {drain.submit_seconds:.2f} s")
        return drain

    runs = alternate(("taskdesk", "tsp"), plan.reps, measure)

    def rate(side: str) -> Stats:
        return Stats.of([d.per_second(n) for d in runs[side]])

    case = "13 commands"
    what = f"{n:,} `true` from a backlog, {COMMAND_WORKERS} at a time"
    td, ts = rate("taskdesk"), rate("tsp")
    return [
        Row(case, f"Taskdesk command action, {COMMAND_WORKERS} workers, {what}", "tasks/s", td),
        Row(case, f"task-spooler `tsp -S {COMMAND_WORKERS}`, {what}", "tasks/s", ts),
        ratio_row(case, "Taskdesk ÷ task-spooler completed/s", td, ts,
                  Target(">=", 1.5, "≥ 1.5×")),
        Row(case, "Taskdesk: CPU per command, whole process (user + system)", "µs",
            Stats.of([(d.cpu_seconds or 0) / n * 1e6 for d in runs["taskdesk"]]), note="info"),
        Row(case, f"Taskdesk: storing the backlog, {n:,} POSTs on one connection", "s",
            Stats.of([d.submit_seconds for d in runs["taskdesk"]]), note="info"),
        Row(case, f"task-spooler: queueing the backlog, {n:,} `tsp true`", "s",
            Stats.of([d.submit_seconds for d in runs["tsp"]]), note="info"),
    ]


# -- 14: progress reports -----------------------------------------------------------------------


def case_14(plan: Any, alternate: Callable[..., dict[str, list[Drain]]],
            say: Callable[[str], None]) -> list[Row]:
    n = QUICK_PROGRESS_TASKS if plan.quick else PROGRESS_TASKS
    actions = {"progress": "tick-progress", "silent": "tick-silent"}

    def measure(side: str, rep: int) -> Drain:
        folder: Path = plan.scratch(f"progress-{side}")
        plugins = folder / "plugins"
        plugins.mkdir()
        (plugins / "ticks.py").write_text(PLUGIN, encoding="utf-8")
        empty = folder / "actions.toml"
        empty.write_text("", encoding="utf-8")
        drain = taskdesk_drain(folder, ["--actions", str(empty), "--plugins", str(plugins),
                                        "--workers", str(PROGRESS_WORKERS)], actions[side], n)
        say(f"case 14 rep {rep + 1}: {side}: {n} tasks in {drain.seconds:.2f} s "
            f"({drain.per_second(n):,.1f}/s), CPU {drain.cpu_seconds or 0:.2f} s")
        return drain

    runs = alternate(("progress", "silent"), plan.reps, measure)
    ideal = PROGRESS_WORKERS / (STEPS * 0.01)

    def rate(side: str) -> Stats:
        return Stats.of([d.per_second(n) for d in runs[side]])

    def cpu(side: str) -> Stats:
        return Stats.of([(d.cpu_seconds or 0) / n * 1000 for d in runs[side]])

    case = "14 progress"
    what = (f"{n:,} Python tasks of {STEPS} × 10 ms, {PROGRESS_WORKERS} workers "
            f"(ideal {ideal:.0f}/s)")
    return [
        Row(case, f"reporting progress after every 10 ms (~100/s each), {what}", "tasks/s",
            rate("progress")),
        Row(case, f"silent, {what}", "tasks/s", rate("silent")),
        ratio_row(case, "throughput, reporting ÷ silent", rate("progress"), rate("silent"),
                  Target(">=", 0.95, "≥ 0.95× (within 5 %)")),
        Row(case, "CPU per task, reporting (whole process, user + system)", "ms",
            cpu("progress"), note="info"),
        Row(case, "CPU per task, silent", "ms", cpu("silent"), note="info"),
    ]
