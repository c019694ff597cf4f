"""Case 12: how long ``taskdesk list`` takes from start to exit, beside task-spooler's ``tsp -l``.

The command line is used in shell loops, so its wall time is what counts: Python's start-up,
the imports, one request, the table. Both sides list 100 finished jobs: Taskdesk headless on a
fresh database with 100 completed tasks (the newest page, what ``taskdesk list`` shows), and
a task-spooler server of its own (``TS_SOCKET`` in the scratch folder) that ran 100 ``true``.
``python -c pass`` is measured too: the floor no Python program goes under. The three are
measured one after the other in each repetition (hyperfine runs all of one, then the next).

``taskdesk`` is run as pip installs it: a script that imports ``main`` and calls it (here one
pointed at this checkout), with the output going nowhere. Bytecode caches are written and
used, as in a normal installation (``PYTHONDONTWRITEBYTECODE`` is removed for these
commands); the user folders are empty ones in the scratch folder, so no actions file or token
file of the user's is read. With hyperfine (Debian package ``hyperfine``): ``--shell=none``,
3 warm-up runs, then RUNS runs; without it, the same with a loop of ``subprocess.run``. Each
repetition gives a median per command.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.procs import BenchmarkError, Server, child_env
from benchmarks.report import Row, Stats, Target, ratio_row
from tests.launcher import REPO_ROOT

JOBS = 100
RUNS, QUICK_RUNS = 40, 20
WARMUP = 3
SETTLE_TIMEOUT = 60.0
COMMAND_TIMEOUT = 600.0
TAKEN_FOR_HYPERFINE = "hyperfine"


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url + "/tasks", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def _completed(url: str) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=30) as answer:
        return int(json.loads(answer.read())["counts"]["completed"])


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"case 12: {what} within {SETTLE_TIMEOUT:.0f} s")
        time.sleep(0.05)


@contextmanager
def task_spooler(folder: Path) -> Iterator[dict[str, str]]:
    """A task-spooler server of our own that has run JOBS jobs; the environment to reach it."""
    if shutil.which("tsp") is None:
        raise BenchmarkError("task-spooler is not installed (Debian package task-spooler)")
    env = {**os.environ, "TS_SOCKET": str(folder / "tsp.socket"), "TMPDIR": str(folder),
           "TS_MAXFINISHED": str(JOBS * 2)}
    try:
        for _ in range(JOBS):
            subprocess.run(["tsp", "true"], env=env, check=True, timeout=30,
                           stdout=subprocess.DEVNULL)
        subprocess.run(["tsp", "-w"], env=env, check=False, timeout=SETTLE_TIMEOUT,
                       stdout=subprocess.DEVNULL)
        yield env
    finally:
        subprocess.run(["tsp", "-K"], env=env, check=False, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _taskdesk_script(folder: Path) -> Path:
    """What pip's ``taskdesk`` console script does, for this checkout."""
    script = folder / "taskdesk"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
                      "from main import main\nsys.exit(main())\n", encoding="utf-8")
    script.chmod(0o755)
    return script


def measure_commands(commands: dict[str, list[str]], env: dict[str, str], runs: int,
                     folder: Path) -> dict[str, float]:
    """The median wall time of each command, in ms: hyperfine where installed, else a loop."""
    if shutil.which(TAKEN_FOR_HYPERFINE):
        out = folder / "hyperfine.json"
        names = list(commands)
        args = ["hyperfine", "--shell=none", "--warmup", str(WARMUP), "--runs", str(runs),
                "--style", "none", "--export-json", str(out)]
        for name in names:
            args += ["--command-name", name, shlex.join(commands[name])]
        subprocess.run(args, env=env, check=True, timeout=COMMAND_TIMEOUT,
                       stdout=subprocess.DEVNULL)
        results = json.loads(out.read_text())["results"]
        return {name: float(r["median"]) * 1000 for name, r in zip(names, results, strict=True)}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(WARMUP + runs):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, timeout=COMMAND_TIMEOUT,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            if i >= WARMUP:
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def case_12(plan: Any, say: Callable[[str], None]) -> list[Row]:
    folder: Path = plan.scratch("cli")
    runs = QUICK_RUNS if plan.quick else RUNS
    actions = folder / "actions.toml"  # none of the user's actions or plugins: no token
    actions.write_text("", encoding="utf-8")
    with Server.taskdesk(folder / "tasks.db", folder / "taskdesk.log", "--work-delay", "0",
                         "--actions", str(actions), "--no-plugins") as server, \
            task_spooler(folder) as spooler_env:
        url = server.base_url
        for i in range(JOBS):
            _post(url, {"action": "uppercase", "data": {"text": f"job {i}"}})
        _wait(lambda: _completed(url) >= JOBS, f"the {JOBS} tasks did not complete")
        users = folder / "home"
        env = {k: v for k, v in child_env(spooler_env).items()
               if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"XDG_DATA_HOME": str(users / "data"), "XDG_CONFIG_HOME": str(users / "config"),
                    "XDG_STATE_HOME": str(users / "state")})
        commands = {
            "taskdesk list": [str(_taskdesk_script(folder)), "list", "--url", url],
            "tsp -l": ["tsp", "-l"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        for name, command in commands.items():  # each lists what it should, and works
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                                  timeout=COMMAND_TIMEOUT)
            lines = len(done.stdout.splitlines())
            if done.returncode != 0 or (name != "python -c pass" and lines < JOBS):
                raise BenchmarkError(f"case 12: {name} exited {done.returncode} with {lines} "
                                     f"lines: {done.stderr.strip()[-300:]}")

        results: list[dict[str, float]] = []
        for rep in range(plan.reps):
            results.append(measure_commands(commands, env, runs, folder))
            say(f"case 12 rep {rep + 1}: " + ", ".join(
                f"{name} {ms:.1f} ms" for name, ms in results[-1].items()))
    tool = "hyperfine" if shutil.which(TAKEN_FOR_HYPERFINE) else "a subprocess loop"
    case = "12 command line"

    def stats(name: str) -> Stats:
        return Stats.of([r[name] for r in results])

    listing, spooler = stats("taskdesk list"), stats("tsp -l")
    what = f"{JOBS} finished, median of {runs} runs ({tool})"
    return [
        Row(case, f"`taskdesk list` wall time, {what}", "ms", listing,
            Target("<=", 150, "≤ 150 ms")),
        Row(case, f"`tsp -l` (task-spooler) wall time, {what}", "ms", spooler, note="info"),
        ratio_row(case, "`taskdesk list` ÷ `tsp -l`", listing, spooler, note="info"),
        Row(case, "`python -c pass` wall time (the interpreter's start-up)", "ms",
            stats("python -c pass"), note="info"),
    ]
