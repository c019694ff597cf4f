"""Child processes of the benchmarks: one-shot runs that print a JSON line, and HTTP servers.

Every child gets a timeout, and every server is stopped (SIGTERM, then SIGKILL) when its
``with`` block ends, however it ends. A server's stderr goes to a file, not a pipe, so the
benchmark process spends no CPU reading it and a chatty log can never block the server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIN = REPO_ROOT / "main.py"
LISTENING = re.compile(r"API listening on http://(?P<host>[^\s/]+):(?P<port>\d+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class BenchmarkError(Exception):
    """A benchmark step failed; the message says which and why."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without TASKDESK_ settings, with Qt offscreen and unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDESK_")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


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


class Server:
    """A child serving HTTP that logs ``API listening on http://HOST:PORT`` to stderr."""

    def __init__(self, args: Sequence[str], log_path: Path, stop_timeout: float = STOP_TIMEOUT,
                 name: str = "server") -> None:
        self.args = list(args)
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @classmethod
    def taskdesk(cls, db: Path, log_path: Path, *options: str,
                 stop_timeout: float = STOP_TIMEOUT) -> Server:
        """``python main.py --headless --db DB --port 0 OPTIONS`` (defaults otherwise)."""
        args = [sys.executable, str(MAIN), "--headless", "--db", str(db), "--port", "0", *options]
        return cls(args, log_path, stop_timeout, "taskdesk")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, env=child_env(),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            match = LISTENING.search(self.log())
            if match:
                self.host, self.port = match["host"], int(match["port"])
                return
            if self.proc.poll() is not None:
                raise BenchmarkError(f"{self.name} exited with {self.proc.returncode} before "
                                     f"listening: {_tail(self.log())}")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{self.name} was not listening after {timeout:.0f} s")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout`` s for a graceful exit, then SIGKILL."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if self.stop_timeout > 0:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(STOP_TIMEOUT)
