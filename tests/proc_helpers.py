"""Run ``main.py`` as a real child process and talk to it over HTTP.

Used by test_process.py. A background thread reads the child's stderr into a list, so the pipe
never fills and the log can be searched at any time; waiting for a log line is a condition wait
on that list (woken by each new line or by end of file), never a sleep.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import TaskStatus

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIN = REPO_ROOT / "main.py"

# Every wait in these tests is bounded by this many seconds.
TIMEOUT = 60.0

LISTENING = re.compile(r"API listening on http://(?P<host>[^\s/]+):(?P<port>\d+)")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: this one without any TASKDESK_ variable, Qt offscreen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDESK_")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_taskdesk(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run main.py to completion (for runs expected to exit on their own)."""
    return subprocess.run(
        [sys.executable, str(MAIN), *args],
        cwd=REPO_ROOT,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TaskdeskProcess:
    """One running ``main.py``; always call ``kill()`` (or ``terminate``) in a teardown."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            [sys.executable, str(MAIN), *self.args],
            cwd=REPO_ROOT,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, name="stderr-reader",
                                        daemon=True)
        self._reader.start()
        self.host: str | None = None
        self.port: int | None = None
        self._clients: list[Api] = []

    # -- log --------------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = TIMEOUT
    ) -> re.Match[str]:
        """Wait until a stderr line matches *pattern*; fail if the process ends or time runs out."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        found: list[re.Match[str]] = []

        def matched() -> bool:
            for line in self._lines:
                m = regex.search(line)
                if m is not None:
                    found.append(m)
                    return True
            return self._eof

        with self._changed:
            ok = self._changed.wait_for(matched, timeout)
        if not found:
            state = "timed out" if not ok else f"process ended (exit {self.proc.poll()})"
            raise AssertionError(
                f"no log line matching {regex.pattern!r} ({state}); log so far:\n{self.log}"
            )
        return found[0]

    def wait_listening(self, timeout: float = TIMEOUT) -> int:
        m = self.wait_for_log(LISTENING, timeout)
        self.host, self.port = m["host"], int(m["port"])
        return self.port

    # -- lifecycle ----------------------------------------------------------------------------

    def send_signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit and for its stderr to be read to the end."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL the process if it still runs and reap it (safe to call more than once)."""
        for client in self._clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    # -- HTTP ---------------------------------------------------------------------------------

    def api(self, token: str | None = None) -> Api:
        assert self.port is not None, "call wait_listening() first"
        client = Api("127.0.0.1", self.port, token)
        self._clients.append(client)
        return client


@dataclass
class Reply:
    status: int
    body: Any


class Api:
    """A keep-alive HTTP/1.1 client for one Taskdesk process (reconnects if needed)."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port, self.token = host, port, token
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        hdrs = dict(headers or {})
        if self.token is not None:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
            try:
                self._conn.request(method, path, body=data, headers=hdrs)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (ConnectionError, http.client.HTTPException):
                # The server may close an idle keep-alive connection; retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
                continue
            return Reply(resp.status, json.loads(raw) if raw else None)
        raise AssertionError("unreachable")

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def counts(self) -> dict[str, int]:
        reply = self.get("/stats")
        assert reply.status == 200, reply
        counts: dict[str, int] = reply.body["counts"]
        return counts

    def submit_uppercase(self, n: int) -> dict[str, str]:
        """Submit ``uppercase`` tasks with texts t0..t<n-1>; return {task id: text}."""
        accepted: dict[str, str] = {}
        for i in range(n):
            text = f"t{i}"
            reply = self.post("/tasks", {"action": "uppercase", "data": {"text": text}})
            assert reply.status == 202, reply
            assert reply.body["status"] == "queued", reply
            accepted[reply.body["id"]] = text
        return accepted

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


StartTaskdesk = Callable[..., TaskdeskProcess]


def headless(db: Path, *extra: str) -> tuple[str, ...]:
    return ("--headless", "--db", str(db), "--port", "0", *extra)


def completed(api: Api) -> int:
    return api.counts()[TaskStatus.COMPLETED]


def read_only(db: Path) -> sqlite3.Connection:
    """A connection that cannot change the file (for checks on a file that must stay as is)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def read_rows(db: Path, *, only_read: bool = False) -> dict[str, dict[str, Any]]:
    """Every task row of a Taskdesk database, read straight from the file, by id;
    *only_read*: through a read-only connection."""
    conn = read_only(db) if only_read else sqlite3.connect(db)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM tasks").fetchall()
    finally:
        conn.close()
    return {row["id"]: dict(row) for row in rows}
