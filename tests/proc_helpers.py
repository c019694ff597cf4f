"""Real Taskdesk processes for the tests, started through tests/launcher.py, and a client.

A background thread reads the child's stderr into a list, so the pipe never fills and the log
can be searched at any time; waiting for a log line is a condition wait on that list (woken by
each new line or by end of file), never a sleep.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.launcher import (
    LISTENING,
    MAIN,
    REPO_ROOT,
    TIMEOUT,
    ServedProcess,
    child_env,
    headless,
    main_command,
    run_taskdesk,
)

__all__ = ["LISTENING", "MAIN", "REPO_ROOT", "TIMEOUT", "Api", "Reply", "StartTaskdesk",
           "TaskdeskProcess", "child_env", "completed", "headless", "read_only", "read_rows",
           "run_taskdesk"]


class TaskdeskProcess(ServedProcess):
    """One running ``main.py``; always call ``kill()`` (or ``stop``) in a teardown."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        super().__init__(main_command(*self.args), env=env)
        self._clients: list[Api] = []

    def kill(self) -> None:
        for client in self._clients:
            client.close()
        super().kill()

    def api(self, token: str | None = None) -> Api:
        assert self.port, "call wait_listening() first"
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


def completed(api: Api) -> int:
    return api.counts()["completed"]


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
