"""The one way tests, benchmarks and the soak start Taskdesk (or a peer) as a child process.

``ServedProcess`` runs a command that logs ``API listening on http://HOST:PORT`` to stderr
once it serves; ``taskdesk(...)`` builds one for ``main.py``. The child's stderr (its log) goes
either to a pipe read by a thread (tests: waiting for a line is a condition wait, woken by each
new line) or, with *log_path*, to a file (benchmarks and the soak: the parent spends no CPU
reading a chatty log, and a full pipe can never block the child). Stopping is SIGTERM, a
bounded wait, then SIGKILL; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIN = REPO_ROOT / "main.py"
LISTENING = re.compile(r"API listening on http://(?P<host>[^\s/]+):(?P<port>\d+)")
TIMEOUT = 60.0  # the longest any wait here lasts
FILE_POLL_SECONDS = 0.02  # how often a log written to a file is read again


class LaunchError(Exception):
    """The child did not start serving; the message says why and quotes its log."""

    def __init__(self, message: str, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any TASKDESK_ setting, with Qt offscreen, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDESK_")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def main_command(*args: str) -> list[str]:
    return [sys.executable, str(MAIN), *args]


def headless(db: Path, *extra: str) -> tuple[str, ...]:
    """Arguments for a headless Taskdesk on *db* with a free port."""
    return ("--headless", "--db", str(db), "--port", "0", *extra)


def run_taskdesk(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run main.py to completion (for runs expected to exit on their own)."""
    return subprocess.run(
        main_command(*args), cwd=REPO_ROOT, env=child_env(env), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


class ServedProcess:
    """One child serving HTTP; always stop() or kill() it (it is a context manager)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        name: str = "taskdesk",
        stop_timeout: float = 15.0,
    ) -> None:
        self.command = list(command)
        self.name = name
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.host = "127.0.0.1"
        self.port = 0  # known once wait_listening() has seen the log line
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self._log_file: IO[bytes] | None = None
        if log_path is not None:
            self._log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command, cwd=REPO_ROOT, env=child_env(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file if self._log_file is not None else subprocess.PIPE,
        )
        if self._log_file is None:
            self._reader = threading.Thread(target=self._read_stderr, name="stderr-reader",
                                            daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServedProcess:
        try:
            self.wait_listening()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the log ---------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", errors="replace")
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def log(self) -> str:
        if self.log_path is not None:
            try:
                return self.log_path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""
        with self._changed:
            return "".join(self._lines)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = TIMEOUT
    ) -> re.Match[str]:
        """Wait until a log line matches *pattern*; LaunchError if the process ends first or
        the time runs out."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        if self.log_path is not None:
            found = self._poll_file(regex, timeout)
        else:
            found = self._wait_pipe(regex, timeout)
        if found is None:
            code = self.proc.poll()
            state = "timed out" if code is None else f"process ended (exit {code})"
            log = self.log
            raise LaunchError(
                f"{self.name}: no log line matching {regex.pattern!r} ({state}); "
                f"log so far:\n{log[-4000:]}",
                port_in_use="already in use" in log and "by another Taskdesk" not in log,
            )
        return found

    def _wait_pipe(self, regex: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        found: list[re.Match[str]] = []

        def matched() -> bool:
            for line in self._lines:
                m = regex.search(line)
                if m is not None:
                    found.append(m)
                    return True
            return self._eof

        with self._changed:
            self._changed.wait_for(matched, timeout)
        return found[0] if found else None

    def _poll_file(self, regex: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        # A file gives no wake-up on a new line: look again every FILE_POLL_SECONDS.
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.log)
            if m is not None or self.proc.poll() is not None:
                return m if m is not None else regex.search(self.log)
            if time.monotonic() > deadline:
                return None
            time.sleep(FILE_POLL_SECONDS)

    def wait_listening(self, timeout: float = TIMEOUT) -> int:
        m = self.wait_for_log(LISTENING, timeout)
        self.host, self.port = m["host"], int(m["port"])
        return self.port

    # -- lifecycle -------------------------------------------------------------------------

    def send_signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit and for its log to be read to the end."""
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to *timeout* (default stop_timeout) s for a graceful exit, then
        SIGKILL; the exit code, or None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = self.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                code = None
        else:
            code = self.proc.returncode
        self.kill()
        return code

    def kill(self) -> None:
        """SIGKILL the process if it still runs and reap it (safe to call more than once)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        if self._reader is not None:
            self._reader.join(TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self._log_file is not None:
            self._log_file.close()


def taskdesk(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    stop_timeout: float = 15.0,
) -> ServedProcess:
    """``python main.py ARGS`` as a ServedProcess."""
    return ServedProcess(main_command(*args), env=env, log_path=log_path, name="taskdesk",
                         stop_timeout=stop_timeout)
