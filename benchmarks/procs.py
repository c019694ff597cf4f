"""Child processes of the benchmarks: one-shot runs that print a JSON line, and HTTP servers.

Every child gets a timeout, and every server is stopped (SIGTERM, then SIGKILL) when its
``with`` block ends, however it ends. Servers are started through tests/launcher.py, the
launcher the tests and the soak use too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.launcher import (
    REPO_ROOT,
    LaunchError,
    ServedProcess,
    child_env,
    headless,
    main_command,
)

__all__ = ["REPO_ROOT", "BenchmarkError", "Server", "child_env", "cpu_seconds",
           "last_json_line", "python_module", "run_json"]

STOP_TIMEOUT = 15.0


class BenchmarkError(Exception):
    """A benchmark step failed; the message says which and why."""


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    raise BenchmarkError("no JSON result line in the output")


def run_json(
    args: Sequence[str], timeout: float, stderr_path: Path | None = None
) -> dict[str, Any]:
    """Run a child to completion (killed after *timeout* s); return its last JSON line."""
    stderr_file = open(stderr_path, "wb") if stderr_path else None  # noqa: SIM115
    try:
        done = subprocess.run(
            list(args), cwd=REPO_ROOT, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr_file or subprocess.PIPE, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{_name(args)} did not finish within {timeout:.0f} s") from None
    finally:
        if stderr_file is not None:
            stderr_file.close()
    stdout = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        err = stderr_path.read_text(errors="replace") if stderr_path else done.stderr.decode(
            errors="replace")
        raise BenchmarkError(f"{_name(args)} exited with {done.returncode}: {_tail(err)}")
    try:
        return last_json_line(stdout)
    except (BenchmarkError, ValueError) as exc:
        raise BenchmarkError(f"{_name(args)}: {exc}: {_tail(stdout)}") from None


def _name(args: Sequence[str]) -> str:
    return " ".join(Path(a).name if "/" in a else a for a in args[:4])


def _tail(text: str, lines: int = 5) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])


class Server(ServedProcess):
    """A child serving HTTP for a benchmark (started by tests/launcher.py); its log goes to a
    file, so the benchmark spends no CPU reading it and a chatty log never blocks it."""

    def __init__(self, args: Sequence[str], log_path: Path, stop_timeout: float = STOP_TIMEOUT,
                 name: str = "server") -> None:
        super().__init__(args, log_path=log_path, name=name, stop_timeout=stop_timeout)

    @classmethod
    def taskdesk(cls, db: Path, log_path: Path, *options: str,
                 stop_timeout: float = STOP_TIMEOUT) -> Server:
        """``python main.py --headless --db DB --port 0 OPTIONS`` (defaults otherwise)."""
        return cls(main_command(*headless(db, *options)), log_path, stop_timeout, "taskdesk")

    def __enter__(self) -> Server:
        try:
            super().__enter__()
        except LaunchError as exc:
            raise BenchmarkError(str(exc)) from None
        return self


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process *pid* (all its threads), from
    ``/proc/PID/stat`` (utime and stime, fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")
