"""A bounded soak of the real program: steady load from several processes, a restart halfway.

    .venv/bin/python scripts/soak.py [--minutes 10] [--clients 4] [--rate 25] [--db DIR]

It starts ``main.py --headless`` on a new database with ``--port 0`` (2 workers, 5 ms of
simulated work per task), then for ``--minutes``:

- ``--clients`` client *processes*, each sending ``--rate`` requests a second over one
  keep-alive connection: half ``POST /tasks`` (``uppercase``, ``sum`` and an action with no
  handler of its own, all with valid data; half of them with a priority from -100 to 100, a
  fifth with a delay of up to 2 s), the rest ``GET /tasks`` (newest, by status, scheduled by
  priority), ``GET /tasks/<id>`` of a task it submitted, and ``GET /health``. Every id
  answered 202 is *accepted*; a POST that was sent but got no answer is *unknown* (it may or
  may not be stored) and is never retried; a request that could not even connect was not
  sent, so it is only counted as *refused*;
- a schedule firing every 2 s (``[schedules.soak-tick]`` in the actions file it passes with
  ``--actions``), whose tasks run beside the clients' across the restart;
- a probe process asking ``GET /health`` every 100 ms, recording when each answer arrived;
- this process reading the server's VmRSS and open file descriptors from /proc every few
  seconds.

Halfway it restarts the program: SIGTERM, exit code 0 expected, then a new start on the same
database and the same port (on a new one, told to the clients, if that port was taken).
At the end it stops the load, waits (bounded) until the queue is empty, stops the program
with SIGTERM and checks, from the database file opened read-only and both runs' logs:

- every accepted task is stored, ``completed`` with the right result, ``attempts`` 1, claimed
  once ("processing task" logged once, plus once more only for a task given back unstarted
  by the graceful stop, "task released") and completed once ("task completed" logged once);
- no delayed task started before its time;
- the schedule fired once for each due time, 2 s apart (the times missed during the restart
  made one catch-up firing), and each of its tasks completed once;
- the database holds no task beyond the accepted ones, the schedule's, and at most one per
  unknown POST;
- no request failed or got an unexpected status outside the restart;
- the longest wait between two /health answers outside the restart is at most 1 s;
- memory and file descriptors are flat in each run: the median of the last third of the
  samples (after a warm-up) against the median of the first third, within a tolerance;
- both stops exited 0 and the logs hold no ERROR line and no traceback.

It prints a markdown summary to stdout (progress goes to stderr) and exits 1 if a check
fails, 2 if the soak itself could not run. Every child process has a deadline and is killed
at the end whatever happens; all load goes to 127.0.0.1. With ``--db DIR`` the database and
logs are kept in DIR; otherwise they live in a temporary folder, removed if every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import multiprocessing
import os
import random
import re
import select
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the shared launcher is in tests/
    sys.path.insert(0, str(ROOT))

from tests.launcher import LaunchError, ServedProcess, taskdesk  # noqa: E402

HOST = "127.0.0.1"

WORKERS = 2
WORK_DELAY = 0.005

START_TIMEOUT = 60.0  # for the program to log "API listening"
STOP_TIMEOUT = 30.0  # for a SIGTERM-ed program to exit (it allows its workers 10 s)
REQUEST_TIMEOUT = 10.0  # one HTTP request, connection included
PROBE_INTERVAL = 0.1
MAX_GAP = 1.0  # seconds without a /health answer outside the restart
CHILD_GRACE = REQUEST_TIMEOUT + 10.0  # after the stop request, before a child is killed
DRAIN_TIMEOUT_MIN = 60.0  # waiting for the queue to empty: at least this long
WARM_UP_SHARE = 0.2  # of each run's samples, ignored for the trend
RSS_TOLERANCE_MIB = 8.0  # flat: last-third median <= first-third median + max(this,
RSS_TOLERANCE_SHARE = 0.10  # this share of the first-third median)
FD_TOLERANCE = 4  # open file descriptors
MAX_RECORDED_ERRORS = 200  # per client; all are counted
PRIME_STEADY_REQUESTS = 256  # warm-up reads in a row that opened no fd (4 per API thread)
PRIME_MAX_REQUESTS = 4000

LOOSE_ACTIONS = ("thumbnail", "send-report")
# A schedule beside the clients' load: one task every SCHEDULE_EVERY seconds.
SCHEDULE_NAME = "soak-tick"
SCHEDULE_EVERY = 2
ACTIONS_TOML = f"""\
[schedules.{SCHEDULE_NAME}]
action = "uppercase"
data = {{ text = "tick" }}
every = {SCHEDULE_EVERY}
"""
MAX_DELAY = 2.0


def say(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


# -- HTTP ----------------------------------------------------------------------------------------


class NotSentError(Exception):
    """The connection could not be made: the request never left this process."""


class NoAnswerError(Exception):
    """The request was (maybe) sent, but no complete answer came back."""


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to the program, following its port if it changes."""

    def __init__(self, port: Synchronized[int]) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None
        self._conn_port = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _dropped(self) -> bool:
        """Whether the server has closed the idle connection (readable means EOF or junk)."""
        sock = None if self._conn is None else self._conn.sock
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _connected(self) -> http.client.HTTPConnection:
        port = int(self._port.value)
        if self._conn is not None and (self._conn_port != port or self._dropped()):
            # Checked before sending, so that a connection the old server closed does not
            # turn a POST that could never have reached anyone into an "unknown".
            self.close()
        if self._conn is None:
            conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                raise NotSentError(type(exc).__name__) from exc
            self._conn, self._conn_port = conn, port
        return self._conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = self._connected()
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise NoAnswerError(type(exc).__name__) from exc
        if resp.will_close:
            self.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, None


# -- client processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientPlan:
    index: int
    rate: float  # requests per second
    seed: int
    deadline: float  # time.monotonic() after which the client stops whatever happens
    out: str  # JSON results file


def _new_task(rng: random.Random, n: int) -> tuple[dict[str, Any], Any]:
    """A valid POST /tasks body and the output its task must produce."""
    body, expected = _new_action(rng, n)
    if rng.random() < 0.5:
        body["priority"] = rng.randint(-100, 100)
    if rng.random() < 0.2:
        body["delay"] = round(rng.uniform(0.01, MAX_DELAY), 3)
    return body, expected


def _new_action(rng: random.Random, n: int) -> tuple[dict[str, Any], Any]:
    pick = rng.random()
    if pick < 0.4:
        letters = (rng.choice("abcdefghij xyz") for _ in range(rng.randint(1, 40)))
        text = f"soak {n} " + "".join(letters)
        return {"action": "uppercase", "data": {"text": text}}, text.upper()
    if pick < 0.8:
        numbers = [rng.randint(-1000, 1000) for _ in range(rng.randint(0, 8))]
        return {"action": "sum", "data": {"numbers": numbers}}, sum(numbers)
    return {"action": rng.choice(LOOSE_ACTIONS), "data": {"n": n}}, "processed"


def client_main(plan: ClientPlan, port: Synchronized[int], stop: Event) -> None:
    """Steady, rate-limited requests until *stop* is set; results go to *plan.out* as JSON."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    rng = random.Random(plan.seed)
    http_ = KeepAlive(port)
    accepted: dict[str, Any] = {}  # id -> expected output
    mine: list[str] = []
    outcomes: Counter[str] = Counter()  # "<endpoint>|<outcome>"
    errors: list[tuple[float, str]] = []  # (monotonic time, description), capped
    error_times: list[float] = []  # every failure, for the restart-window split
    latencies: list[float] = []
    interval = 1.0 / plan.rate
    next_at = time.monotonic()
    n = 0
    try:
        while not stop.is_set() and time.monotonic() < plan.deadline:
            now = time.monotonic()
            if now < next_at:
                stop.wait(next_at - now)
                continue
            # A steady schedule that does not burst to catch up after a stall or the restart.
            next_at = max(next_at + interval, now - 1.0)
            pick = rng.random()
            body: dict[str, Any] | None = None
            expected: Any = None
            if pick < 0.5:
                endpoint, method, path = "POST /tasks", "POST", "/tasks"
                body, expected = _new_task(rng, n)
                n += 1
            elif pick < 0.65:
                endpoint, method = "GET /tasks", "GET"
                path = rng.choice(["/tasks?limit=20", "/tasks?status=completed&limit=20",
                                   "/tasks?status=queued&limit=20",
                                   "/tasks?scheduled=true&sort=priority&limit=20"])
            elif pick < 0.9 and mine:
                endpoint, method = "GET /tasks/<id>", "GET"
                path = f"/tasks/{rng.choice(mine[-500:])}"
            else:
                endpoint, method, path = "GET /health", "GET", "/health"
            started = time.monotonic()
            try:
                status, reply = http_.request(method, path, body)
            except NotSentError as exc:
                outcomes[f"{endpoint}|refused"] += 1
                error_times.append(time.monotonic())
                if len(errors) < MAX_RECORDED_ERRORS:
                    errors.append((time.monotonic(), f"{endpoint}: not sent ({exc})"))
                continue
            except NoAnswerError as exc:
                kind = "unknown" if method == "POST" else "no answer"
                outcomes[f"{endpoint}|{kind}"] += 1
                error_times.append(time.monotonic())
                if len(errors) < MAX_RECORDED_ERRORS:
                    errors.append((time.monotonic(), f"{endpoint}: {kind} ({exc})"))
                continue
            latencies.append(time.monotonic() - started)
            ok_status = 202 if method == "POST" else 200
            if status == ok_status:
                outcomes[f"{endpoint}|{status}"] += 1
                if method == "POST" and isinstance(reply, dict) and "id" in reply:
                    accepted[str(reply["id"])] = expected
                    mine.append(str(reply["id"]))
            else:
                outcomes[f"{endpoint}|HTTP {status}"] += 1
                error_times.append(time.monotonic())
                if len(errors) < MAX_RECORDED_ERRORS:
                    errors.append((time.monotonic(), f"{method} {path}: HTTP {status} {reply}"))
    finally:
        http_.close()
        latencies.sort()
        result = {
            "accepted": accepted,
            "outcomes": dict(outcomes),
            "errors": errors,
            "error_times": error_times,
            "latency": {
                "count": len(latencies),
                "p50": _quantile(latencies, 0.5),
                "p99": _quantile(latencies, 0.99),
                "max": latencies[-1] if latencies else 0.0,
            },
        }
        Path(plan.out).write_text(json.dumps(result))


def probe_main(port: Synchronized[int], stop: Event, deadline: float, out: str) -> None:
    """GET /health every PROBE_INTERVAL seconds; record when each answer 200 arrived."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    http_ = KeepAlive(port)
    answers: list[float] = []
    failures = 0
    started = time.monotonic()
    next_at = started
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            if now < next_at:
                stop.wait(next_at - now)
                continue
            next_at = max(next_at + PROBE_INTERVAL, now)
            try:
                status, _ = http_.request("GET", "/health")
            except (NotSentError, NoAnswerError):
                failures += 1
                continue
            if status == 200:
                answers.append(time.monotonic())
            else:
                failures += 1
    finally:
        http_.close()
        ended = time.monotonic()
        Path(out).write_text(json.dumps(
            {"started": started, "ended": ended, "answers": answers, "failures": failures}
        ))


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the program under test ----------------------------------------------------------------------


def _start_server(db: Path, port: int, log: Path) -> ServedProcess:
    """``main.py --headless`` through the shared launcher, its log in *log*, with the soak's
    schedule; LaunchError (with ``port_in_use``) when it does not come up."""
    actions = db.with_name("actions.toml")
    actions.write_text(ACTIONS_TOML, encoding="utf-8")
    server = taskdesk(
        ["--headless", "--db", str(db), "--host", HOST, "--port", str(port), "--workers",
         str(WORKERS), "--work-delay", str(WORK_DELAY), "--log-level", "INFO",
         "--actions", str(actions)],
        log_path=log, stop_timeout=STOP_TIMEOUT,
    )
    try:
        server.wait_listening(START_TIMEOUT)
    except BaseException:
        server.kill()
        raise
    return server


def health_ok(port: int, timeout: float = 2.0) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status} {raw[:200]!r}")
        return json.loads(raw)
    finally:
        conn.close()


def prime(pid: int, port: int) -> tuple[int, int, int]:
    """Warm the program up until its open fds stop rising; (fds before, after, requests).

    The program gives each API thread (cheroot: 64) its own SQLite connection, opened on the
    thread's first database read and kept for the thread's life: two fds (database and WAL)
    and some memory each. cheroot hands requests to its idle threads in turn, so a few
    hundred reads reach them all. That one-off growth is warm-up, not a leak; without this
    the first minute of a run would look like one.
    """
    before = len(os.listdir(f"/proc/{pid}/fd"))
    highest, steady, n = before, 0, 0
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        while n < PRIME_MAX_REQUESTS and steady < PRIME_STEADY_REQUESTS:
            for _ in range(16):
                conn.request("GET", "/tasks?limit=1")
                conn.getresponse().read()
            n += 16
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            steady = 0 if fds > highest else steady + 16
            highest = max(highest, fds)
    finally:
        conn.close()
    return before, len(os.listdir(f"/proc/{pid}/fd")), n


@dataclass
class Sample:
    t: float
    rss_kib: int
    fds: int


def sample(pid: int) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
    return Sample(time.monotonic(), int(m[1]) if m else 0, fds)


# -- the soak ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    minutes: float
    clients: int
    rate: float
    db_dir: Path | None
    seed: int
    port: int = 0

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def sample_interval(self) -> float:
        return min(2.0, max(0.25, self.seconds / 150.0))


@dataclass
class Run:
    """What happened in one run of the program."""

    name: str
    pid: int
    port: int
    load_started: float
    load_ended: float = 0.0
    exit_code: int | None = None
    samples: list[Sample] = field(default_factory=list)
    primed: tuple[int, int, int] = (0, 0, 0)  # fds before, fds after, requests


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Soak:
    options: Options
    workdir: Path
    runs: list[Run] = field(default_factory=list)
    restart: tuple[float, float] = (0.0, 0.0)  # SIGTERM sent .. new program answering
    same_port: bool = True
    drain_seconds: float = 0.0
    drained: bool = False
    drained_at: float = 0.0  # wall clock: a schedule's later firings may still be queued
    restart_wall: tuple[float, float] = (0.0, 0.0)  # the restart, in wall-clock time
    started: float = 0.0
    ended: float = 0.0
    aborted: str | None = None


def _sample_until(run: Run, until: float, interval: float, proc: ServedProcess) -> None:
    next_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= until:
            return
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{run.name} exited unexpectedly with {proc.proc.returncode}:\n"
                               f"{proc.log[-2000:]}")
        if now >= next_at:
            s = sample(run.pid)
            if s is not None:
                run.samples.append(s)
            next_at += interval
        time.sleep(max(0.0, min(next_at, until) - time.monotonic()))


def run_soak(opts: Options, workdir: Path) -> tuple[Soak, dict[str, Any]]:
    """Run the load; return what happened and the children's raw results."""
    ctx = multiprocessing.get_context("spawn")
    db = workdir / "soak.db"
    soak = Soak(opts, workdir)
    servers: list[ServedProcess] = []
    children: list[SpawnProcess] = []
    stop = ctx.Event()
    half = opts.seconds / 2
    # Every child stops by itself past this point, even if this process is gone.
    hard_deadline = time.monotonic() + opts.seconds + START_TIMEOUT * 2 + STOP_TIMEOUT + 120.0
    results: dict[str, Any] = {"clients": [], "probe": None}
    try:
        say(f"starting the program on {db}")
        first = _start_server(db, opts.port, workdir / "run1.log")
        servers.append(first)
        port = ctx.Value("i", first.port)
        say(f"run 1: pid {first.pid}, port {first.port}")
        run1 = Run("run 1", first.pid, first.port, 0.0)
        soak.runs.append(run1)
        run1.primed = prime(first.pid, first.port)

        for i in range(opts.clients):
            plan = ClientPlan(i, opts.rate, opts.seed * 1000 + i, hard_deadline,
                              str(workdir / f"client{i}.json"))
            children.append(ctx.Process(target=client_main, args=(plan, port, stop),
                                        name=f"soak-client-{i}", daemon=True))
        children.append(ctx.Process(
            target=probe_main, args=(port, stop, hard_deadline, str(workdir / "probe.json")),
            name="soak-probe", daemon=True))
        for child in children:
            child.start()
        soak.started = run1.load_started = time.monotonic()

        _sample_until(run1, soak.started + half, opts.sample_interval, first)
        run1.load_ended = time.monotonic()

        say("restarting: SIGTERM")
        restart_began = time.monotonic()
        restart_wall_began = time.time()
        run1.exit_code = first.stop()
        say(f"run 1 exited with {run1.exit_code}; starting run 2 on port {first.port}")
        try:
            second = _start_server(db, first.port, workdir / "run2.log")
        except LaunchError as exc:
            if not exc.port_in_use:
                raise
            # Expected after a run on --port 0: cheroot sets SO_REUSEADDR only on a fixed port,
            # so the first run's closed connections (TIME_WAIT) hold the port for a minute.
            say(f"port {first.port} cannot be bound yet; starting run 2 on a new port")
            soak.same_port = False
            second = _start_server(db, 0, workdir / "run2-newport.log")
        servers.append(second)
        port.value = second.port
        restart_deadline = time.monotonic() + START_TIMEOUT
        while not health_ok(second.port):
            if time.monotonic() > restart_deadline:
                raise RuntimeError("run 2 never answered /health")
            time.sleep(0.02)
        soak.restart = (restart_began, time.monotonic())
        soak.restart_wall = (restart_wall_began, time.time())
        say(f"run 2: pid {second.pid}, port {second.port}, back after "
            f"{soak.restart[1] - soak.restart[0]:.2f} s")
        run2 = Run("run 2", second.pid, second.port, soak.restart[1])
        soak.runs.append(run2)
        run2.primed = prime(second.pid, second.port)
        _sample_until(run2, soak.restart[1] + half, opts.sample_interval, second)
        run2.load_ended = time.monotonic()

        say("stopping the load")
        stop.set()
        for child in children:
            child.join(CHILD_GRACE)
        soak.ended = time.monotonic()

        say("waiting for the queue to empty")
        drain_began = time.monotonic()
        drain_deadline = drain_began + DRAIN_TIMEOUT_MIN
        while time.monotonic() < drain_deadline:
            counts = get_json(second.port, "/stats")["counts"]
            if counts["queued"] == 0 and counts["running"] == 0:
                soak.drained = True
                soak.drained_at = time.time()
                break
            time.sleep(0.2)
        soak.drain_seconds = time.monotonic() - drain_began

        say("stopping the program: SIGTERM")
        run2.exit_code = second.stop()
    except Exception as exc:  # reported as a failed soak, after everything is stopped
        soak.aborted = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()
        for child in children:
            child.join(1.0 if soak.aborted else CHILD_GRACE)
            if child.is_alive():
                child.kill()
                child.join(5.0)
        for server in servers:
            server.kill()
    with (workdir / "samples.csv").open("w") as out:
        out.write("run,seconds,rss_kib,fds\n")
        for run in soak.runs:
            for smp in run.samples:
                out.write(f"{run.name},{smp.t - soak.started:.2f},{smp.rss_kib},{smp.fds}\n")
    for i in range(opts.clients):
        path = workdir / f"client{i}.json"
        if path.exists():
            results["clients"].append(json.loads(path.read_text()))
        elif soak.aborted is None:
            soak.aborted = f"client {i} left no results"
    probe = workdir / "probe.json"
    if probe.exists():
        results["probe"] = json.loads(probe.read_text())
    elif soak.aborted is None:
        soak.aborted = "the probe left no results"
    return soak, results


# -- the checks ----------------------------------------------------------------------------------


def _ids(log: str, message: str) -> Counter[str]:
    return Counter(re.findall(re.escape(message) + r" id=([0-9a-f-]+)", log))


def _examples(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" … ({len(items)} in all)" if len(items) > n else "")


def read_tasks(db: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, status, attempts, result, error, created_at, "
                            "started_at, run_after, idempotency_key FROM tasks").fetchall()
    finally:
        conn.close()
    return {row["id"]: dict(row) for row in rows}


def longest_gap(answers: Sequence[float], start: float, end: float,
                excluded: tuple[float, float]) -> float:
    """The longest time without an answer in [start, end], not counting the *excluded* span."""
    points = [start, *sorted(answers), end]
    worst = 0.0
    lo, hi = excluded
    for a, b in itertools.pairwise(points):
        # A gap that overlaps the restart counts only for its parts before and after it.
        inside = b > lo and a < hi
        worst = max(worst, lo - a, b - hi) if inside else max(worst, b - a)
    return worst


@dataclass
class Trend:
    ok: bool
    first: float
    last: float
    allowed: float
    samples: int


def trend(values: Sequence[float], tolerance: float, share: float = 0.0) -> Trend | None:
    """Median of the last third against the first third, after the warm-up share."""
    kept = list(values)[int(len(values) * WARM_UP_SHARE):]
    third = len(kept) // 3
    if third < 2:
        return None
    first = statistics.median(kept[:third])
    last = statistics.median(kept[-third:])
    allowed = max(tolerance, share * first)
    return Trend(last - first <= allowed, first, last, allowed, len(kept))


def evaluate(soak: Soak, results: dict[str, Any]) -> tuple[list[Check], dict[str, Any]]:
    checks: list[Check] = []
    figures: dict[str, Any] = {}
    clients: list[dict[str, Any]] = results["clients"]
    lo, hi = soak.restart

    accepted: dict[str, Any] = {}
    outcomes: Counter[str] = Counter()
    for c in clients:
        accepted.update(c["accepted"])
        outcomes.update(c["outcomes"])
    unknown = sum(n for k, n in outcomes.items() if k.endswith("|unknown"))
    figures["outcomes"] = outcomes
    figures["accepted"] = len(accepted)
    figures["unknown"] = unknown
    error_times = [t for c in clients for t in c["error_times"]]
    outside = [t for t in error_times if not lo <= t <= hi]
    figures["errors_in_restart"] = len(error_times) - len(outside)
    bad_examples = [msg for c in clients for t, msg in c["errors"] if not lo <= t <= hi]
    checks.append(Check(
        "no request failed outside the restart", not outside,
        f"{len(outside)} outside, {len(error_times) - len(outside)} during the restart"
        + (f"; e.g. {_examples(bad_examples, 3)}" if bad_examples else ""),
    ))
    lat = [c["latency"] for c in clients]
    figures["latency"] = {
        "p50": max((x["p50"] for x in lat), default=0.0),
        "p99": max((x["p99"] for x in lat), default=0.0),
        "max": max((x["max"] for x in lat), default=0.0),
    }

    # Availability, from the probe.
    probe = results["probe"]
    if probe is None:
        checks.append(Check(f"/health never silent over {MAX_GAP:.0f} s outside the restart",
                            False, "no probe results"))
    else:
        gap = longest_gap(probe["answers"], probe["started"], probe["ended"], soak.restart)
        figures["gap"] = gap
        figures["probe_answers"] = len(probe["answers"])
        checks.append(Check(
            f"/health never silent over {MAX_GAP:.0f} s outside the restart", gap <= MAX_GAP,
            f"longest gap {gap * 1000:.0f} ms over {len(probe['answers']):,} answers; "
            f"restart took {(hi - lo):.2f} s",
        ))

    # Graceful stops.
    codes = [r.exit_code for r in soak.runs]
    checks.append(Check(
        "both stops exited 0", len(codes) == 2 and all(c == 0 for c in codes),
        ", ".join(f"{r.name}: {r.exit_code if r.exit_code is not None else 'killed'}"
                  for r in soak.runs) + ("" if soak.same_port else " (run 2 on a new port)"),
    ))

    # Exactly once, from the database and the logs.
    db = soak.workdir / "soak.db"
    rows = read_tasks(db) if db.exists() else {}
    logs = "".join(p.read_text(encoding="utf-8", errors="replace")
                   for p in sorted(soak.workdir.glob("run*.log")))
    processing = _ids(logs, "processing task")
    released = _ids(logs, "task released")
    completed = _ids(logs, "task completed")
    figures["rows"] = len(rows)
    figures["completed_rows"] = sum(1 for r in rows.values() if r["status"] == "completed")
    figures["released"] = sum(released.values())
    figures["drain"] = soak.drain_seconds
    checks.append(Check("queue emptied after the load", soak.drained,
                        f"in {soak.drain_seconds:.1f} s (bound {DRAIN_TIMEOUT_MIN:.0f} s)"))

    problems: dict[str, list[str]] = {}

    def note(kind: str, task_id: str) -> None:
        problems.setdefault(kind, []).append(task_id)

    for task_id, expected in accepted.items():
        row = rows.get(task_id)
        if row is None:
            note("missing from the database", task_id)
            continue
        if row["status"] != "completed":
            note(f"status {row['status']}", task_id)
        elif json.loads(row["result"]) != {"output": expected}:
            note("wrong result", task_id)
        if row["attempts"] != 1:
            note(f"attempts {row['attempts']}", task_id)
        if completed[task_id] != 1:
            note(f"completed {completed[task_id]}× in the logs", task_id)
        if processing[task_id] - released[task_id] != 1:
            note(f"claimed {processing[task_id]}× and released {released[task_id]}×", task_id)
    detail = "; ".join(f"{kind}: {_examples(ids)}" for kind, ids in problems.items())
    checks.append(Check(
        "every accepted task completed exactly once", bool(accepted) and not problems,
        detail or f"{len(accepted):,} accepted, all completed once with the right result, "
        f"attempts 1; {sum(released.values())} given back unstarted by a graceful stop",
    ))

    # Delays: no task started before its time (times are stored to 10 µs).
    early = [i for i in accepted if (row := rows.get(i)) is not None and row["started_at"]
             is not None and row["run_after"] and row["started_at"] < row["run_after"] - 1e-4]
    delayed = sum(1 for i in accepted if (row := rows.get(i)) is not None
                  and row["run_after"] and row["run_after"] > row["created_at"])
    figures["delayed"] = delayed
    checks.append(Check("no delayed task started before its time", delayed > 0 and not early,
                        f"{delayed:,} delayed task(s)"
                        + (f"; started early: {_examples(early)}" if early else "")))

    # The schedule: once per due time, each task run once.
    prefix = f"schedule:{SCHEDULE_NAME}:"
    fired = {i: r for i, r in rows.items()
             if (r["idempotency_key"] or "").startswith(prefix)}
    dues = sorted(float(r["idempotency_key"][len(prefix):]) for r in fired.values())
    figures["firings"] = len(dues)
    schedule_bad = []
    for task_id, row in fired.items():
        late = soak.drained_at and row["created_at"] >= soak.drained_at - 1.0
        if row["status"] != "completed" and not late:
            schedule_bad.append(f"{task_id} {row['status']}")
        elif row["status"] == "completed" and (
                json.loads(row["result"]) != {"output": "TICK"} or row["attempts"] != 1
                or completed[task_id] != 1):
            schedule_bad.append(f"{task_id} not run once")
    lo_wall, hi_wall = soak.restart_wall
    odd_gaps = [f"{b - a:g} s at {a:.0f}" for a, b in itertools.pairwise(dues)
                if b - a != SCHEDULE_EVERY and not (a <= hi_wall + SCHEDULE_EVERY
                                                    and b >= lo_wall - SCHEDULE_EVERY)]
    expected_firings = (soak.ended - soak.started) / SCHEDULE_EVERY - 3
    checks.append(Check(
        f"the {SCHEDULE_EVERY}-second schedule fired once per due time, each task run once",
        len(dues) >= expected_firings and not schedule_bad and not odd_gaps,
        f"{len(dues)} firing(s) (at least {max(0.0, expected_firings):.0f} expected)"
        + (f"; {_examples(schedule_bad)}" if schedule_bad else "")
        + (f"; due times not {SCHEDULE_EVERY} s apart outside the restart: "
           f"{_examples(odd_gaps)}" if odd_gaps else ""),
    ))

    extra = {i: r for i, r in rows.items() if i not in accepted and i not in fired}
    extra_bad = [i for i, r in extra.items()
                 if r["status"] != "completed" or r["attempts"] != 1 or completed[i] != 1]
    checks.append(Check(
        "no task beyond the accepted ones and the schedule's (at most one per unknown POST)",
        len(extra) <= unknown and not extra_bad,
        f"{len(extra)} unaccepted row(s) for {unknown} unknown POST(s)"
        + (f"; not completed once: {_examples(extra_bad)}" if extra_bad else ""),
    ))

    bad_lines = [ln for ln in logs.splitlines() if " ERROR " in ln or "Traceback" in ln]
    figures["warnings"] = sum(1 for ln in logs.splitlines() if " WARNING " in ln)
    checks.append(Check("no ERROR or traceback in the logs", not bad_lines,
                        _examples(bad_lines, 2) if bad_lines else
                        f"{figures['warnings']} WARNING line(s)"))

    # Flat memory and file descriptors, per run.
    figures["trends"] = []
    for run in soak.runs:
        rss = trend([s.rss_kib / 1024 for s in run.samples], RSS_TOLERANCE_MIB,
                    RSS_TOLERANCE_SHARE)
        fds = trend([float(s.fds) for s in run.samples], FD_TOLERANCE)
        figures["trends"].append((run, rss, fds))
        for what, t, fmt in (("memory (VmRSS)", rss, "{:.1f} MiB"), ("open fds", fds, "{:.0f}")):
            name = f"{what} flat in {run.name}"
            if t is None:
                checks.append(Check(name, False, f"too few samples ({len(run.samples)})"))
                continue
            first, last, allowed = (fmt.format(x) for x in (t.first, t.last, t.allowed))
            checks.append(Check(name, t.ok, f"{first} → {last} (allowed +{allowed})"))
    return checks, figures


def report(soak: Soak, checks: list[Check], figures: dict[str, Any]) -> str:
    o = soak.options
    lines = ["# Taskdesk soak", ""]
    load = soak.ended - soak.started if soak.ended else 0.0
    lines += [
        f"- load: {load:.0f} s, restart included ({o.minutes:g} min asked), "
        f"{o.clients} client processes at "
        f"{o.rate:g} requests/s each, {WORKERS} workers, work delay {WORK_DELAY * 1000:g} ms",
        f"- restart: {soak.restart[1] - soak.restart[0]:.2f} s from SIGTERM to answering again"
        f" ({'same port' if soak.same_port else 'new port'})",
        f"- drain after the load: {figures.get('drain', 0.0):.1f} s; "
        f"{figures.get('released', 0)} task(s) given back unstarted by a graceful stop",
        f"- data: {soak.workdir}"
        + ("" if o.db_dir else " (temporary: removed if every check passes)"),
        "",
        "## Requests",
        "",
        "| endpoint | outcome | count |",
        "|---|---|---|",
    ]
    outcomes: Counter[str] = figures.get("outcomes", Counter())
    for key in sorted(outcomes, key=lambda k: k.partition("|")):
        endpoint, _, outcome = key.partition("|")
        lines.append(f"| {endpoint} | {outcome} | {outcomes[key]:,} |")
    total = sum(outcomes.values())
    lat = figures.get("latency", {})
    lines += [
        "",
        f"{total:,} requests; {figures.get('accepted', 0):,} tasks accepted (202), "
        f"{figures.get('unknown', 0)} POST(s) unknown (sent, no answer), "
        f"{figures.get('errors_in_restart', 0)} failure(s) during the restart. "
        f"Latency (worst client): p50 {lat.get('p50', 0.0) * 1000:.1f} ms, "
        f"p99 {lat.get('p99', 0.0) * 1000:.1f} ms, max {lat.get('max', 0.0) * 1000:.0f} ms.",
        "",
        f"Database: {figures.get('rows', 0):,} tasks, {figures.get('completed_rows', 0):,} "
        f"completed; {figures.get('delayed', 0):,} posted with a delay; "
        f"{figures.get('firings', 0)} firing(s) of the {SCHEDULE_EVERY}-second schedule. "
        f"Longest /health gap outside the restart: "
        f"{figures.get('gap', float('nan')) * 1000:.0f} ms "
        f"({figures.get('probe_answers', 0):,} answers).",
        "",
        "## Memory and file descriptors",
        "",
        f"Sampled every {o.sample_interval:g} s; the first {WARM_UP_SHARE:.0%} of each run is "
        f"warm-up; flat means the median of the last third is at most the median of the "
        f"first third plus max({RSS_TOLERANCE_MIB:g} MiB, {RSS_TOLERANCE_SHARE:.0%}) for "
        f"VmRSS and plus {FD_TOLERANCE} for open fds. Before sampling, each run is warmed up "
        f"with reads until its fd count stops rising (each of the program's API threads opens "
        f"its own SQLite connection on its first read and keeps it).",
        "",
        "| run | warm-up: fds (requests) | samples | VmRSS first → last third (MiB) | "
        "fds first → last third | VmRSS min–max | fds min–max |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, rss, fds in figures.get("trends", []):
        rs = [s.rss_kib / 1024 for s in run.samples] or [0.0]
        fs = [s.fds for s in run.samples] or [0]
        lines.append(
            f"| {run.name} | {run.primed[0]} → {run.primed[1]} ({run.primed[2]}) | "
            f"{len(run.samples)} | "
            + (f"{rss.first:.1f} → {rss.last:.1f}" if rss else "–") + " | "
            + (f"{fds.first:.0f} → {fds.last:.0f}" if fds else "–") + " | "
            + f"{min(rs):.1f}–{max(rs):.1f} | {min(fs)}–{max(fs)} |"
        )
    lines += ["", "## Checks", "", "| check | result | detail |", "|---|---|---|"]
    if soak.aborted:
        lines.append(f"| the soak ran to the end | FAIL | {soak.aborted.splitlines()[0]} |")
    for c in checks:
        lines.append(f"| {c.name} | {'PASS' if c.ok else 'FAIL'} | {c.detail} |")
    failed = sum(1 for c in checks if not c.ok) + (1 if soak.aborted else 0)
    lines += ["", "All checks passed." if not failed else f"{failed} check(s) FAILED."]
    return "\n".join(lines)


# -- entry point ---------------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="length of the load, restart excluded (default 10)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rate", type=float, default=25.0,
                        help="requests per second per client, half of them POST (default 25)")
    parser.add_argument("--db", type=Path, default=None, metavar="DIR",
                        help="keep the database and logs in DIR (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--port", type=int, default=0,
                        help="the program's first port (default 0: it picks a free one)")
    ns = parser.parse_args(argv)
    if ns.minutes <= 0 or ns.clients < 1 or ns.rate <= 0 or not 0 <= ns.port <= 65535:
        parser.error("--minutes and --rate must be positive, --clients at least 1")
    return Options(ns.minutes, ns.clients, ns.rate, ns.db, ns.seed, ns.port)


@contextlib.contextmanager
def workdir_for(opts: Options, passed: list[bool]) -> Iterator[Path]:
    if opts.db_dir is not None:
        opts.db_dir.mkdir(parents=True, exist_ok=True)
        if (opts.db_dir / "soak.db").exists():
            raise SystemExit(f"soak: {opts.db_dir / 'soak.db'} exists; give an empty folder")
        yield opts.db_dir
        return
    path = Path(tempfile.mkdtemp(prefix="taskdesk-soak-"))
    try:
        yield path
    finally:
        if passed and passed[0]:
            shutil.rmtree(path, ignore_errors=True)
        else:
            say(f"kept {path} for inspection")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    signal.signal(signal.SIGTERM, _terminate)  # `timeout` and friends: clean up as for Ctrl-C
    passed: list[bool] = []
    with workdir_for(opts, passed) as workdir:
        try:
            soak, results = run_soak(opts, workdir)
        except KeyboardInterrupt:
            say("interrupted; every child was stopped")
            return 2
        checks, figures = evaluate(soak, results)
        print(report(soak, checks, figures), flush=True)
        ok = soak.aborted is None and all(c.ok for c in checks)
        passed.append(ok)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
