"""Nodes: each instance on the database registers a row (host, pid, API address, started,
heartbeat, lease) and beats on the database's clock, so that clocks of different machines
never need to agree.

A node whose heartbeat is older than its lease is dead. The *rescue* (any node may run it; an
advisory lock makes it one at a time) removes dead nodes and hands back their running tasks:
queued again with the interrupted attempt counted, or failed when it was the last one (or
cancelled when that was asked). It also hands back running tasks whose node is gone for any
other reason, so that no task can stay ``running`` for good.

A node that finds its own row gone (it was paused or cut off past its lease, and rescued) has
lost its tasks to others: whatever it still finishes under the old id is refused by the
fence (``node = id``). Its claims stop at once (they require its row), it says so, and it
registers again under a new id, so that a laptop waking up rejoins by itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import psycopg

from storage.models import NodeInfo, Task
from storage.postgres.migrations import RESCUE_LOCK
from storage.postgres.sql import task_columns, tasks_from_rows

log = logging.getLogger("taskdesk.storage")

Conn = psycopg.Connection[Any]

# How long a notice that this node was found dead stays on /health.
EVICTED_NOTICE_SECONDS = 60.0


class NodeRegistry:
    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = ""  # as text: the NOTIFY payload and NodeInfo carry it so
        self.api_url: str | None = None
        self._lock = threading.Lock()
        self.evicted: tuple[str, float] | None = None  # (message, monotonic time)

    @property
    def number(self) -> int:
        return int(self.id)

    def describe(self) -> str:
        return f"node {self.id} ({self.host}, pid {self.pid})"

    def register(self, conn: Conn) -> None:
        row = conn.execute(
            "INSERT INTO nodes (host, pid, api_url, lease_seconds) VALUES (%s, %s, %s, %s) "
            "RETURNING id", (self.host, self.pid, self.api_url, self.lease)).fetchone()
        assert row is not None
        with self._lock:
            self.id = str(row[0])

    def leave(self, conn: Conn) -> None:
        conn.execute("DELETE FROM nodes WHERE id = %s", (self.number,))

    def heartbeat(self, conn: Conn) -> bool:
        """Beat; False when this node's row is gone (it was found dead), after registering
        again."""
        old = self.id
        row = conn.execute(
            "UPDATE nodes SET heartbeat_at = now(), api_url = %s WHERE id = %s RETURNING id",
            (self.api_url, self.number)).fetchone()
        if row is not None:
            return True
        message = (f"node {old} ({self.host}, pid {self.pid}) was found dead by another node "
                   f"(no heartbeat for over {self.lease:g} s: paused, or cut off from the "
                   "database); its running tasks were handed to other nodes and their "
                   "outcomes here are dropped")
        self.register(conn)
        message += f"; it joined again as node {self.id}"
        log.warning("%s", message)
        self.evicted = (message, time.monotonic())
        return False

    def notice(self) -> str | None:
        """Why /health should worry about this node, if it was found dead recently."""
        evicted = self.evicted
        if evicted is None or time.monotonic() - evicted[1] > EVICTED_NOTICE_SECONDS:
            return None
        return evicted[0]

    def list(self, conn: Conn) -> list[NodeInfo]:
        rows = conn.execute(
            "SELECT n.id, n.host, n.pid, n.api_url, extract(epoch FROM n.started_at)::float8, "
            "extract(epoch FROM n.heartbeat_at)::float8, "
            "n.heartbeat_at >= now() - make_interval(secs => n.lease_seconds), "
            "coalesce((SELECT array_agg(t.id ORDER BY t.seq) FROM tasks t "
            "WHERE t.status = 'running' AND t.node = n.id), '{}') "
            "FROM nodes n ORDER BY n.id").fetchall()
        return [NodeInfo(str(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6]),
                         str(r[0]) == self.id, tuple(r[7])) for r in rows]


def _handed_back(now: float, who: str) -> str:
    """SET clause of a rescue: queued again (attempt counted), failed when it was the last,
    cancelled when that was asked. *who*: SQL text naming the node in the error."""
    return (
        "status = CASE WHEN cancel_requested THEN 'cancelled' "
        "WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
        "error_json = CASE WHEN cancel_requested THEN to_json('cancelled while running'::text)"
        f"::text ELSE to_json('interrupted: ' || {who} || ' stopped while this task was "
        "running'::text)::text END, "
        f"processed_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN {now!r} "
        f"END, run_after = {now!r}, node = NULL"
    )


def rescue(conn: Conn, now: float, wait: bool, own_node: int | None = None
           ) -> tuple[list[Task], list[str]] | None:
    """Remove dead nodes and hand back the running tasks of nodes that are gone (and, with
    *own_node*, this node's own: at start-up it runs nothing yet). None when another node is
    rescuing right now (unless *wait*); else (tasks handed back, nodes removed)."""
    if wait:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (RESCUE_LOCK,))
    else:
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (RESCUE_LOCK,)).fetchone()
        if not row or not row[0]:
            return None
    dead = conn.execute(
        "DELETE FROM nodes WHERE heartbeat_at < now() - make_interval(secs => lease_seconds) "
        "RETURNING id, host, pid").fetchall()
    for node_id, host, pid in dead:
        log.warning("node %s (%s, pid %s) sent no heartbeat within its lease: removed, its "
                    "running tasks handed back", node_id, host, pid)
    who = ("CASE WHEN node IS NULL THEN 'an unknown node' ELSE 'node ' || node END")
    rows = conn.execute(
        f"UPDATE tasks SET {_handed_back(now, who)} WHERE status = 'running' AND "
        "(node IS NULL OR node = %s OR NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.id = "
        f"tasks.node)) RETURNING {task_columns()}", (own_node if own_node is not None else -1,)
    ).fetchall()
    return tasks_from_rows(rows), [str(d[0]) for d in dead]


def fold_counts(conn: Conn) -> None:
    """Fold the counts' deltas into task_counts (one node at a time; the others skip)."""
    from storage.postgres.migrations import FOLD_LOCK

    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (FOLD_LOCK,)).fetchone()
    if not row or not row[0]:
        return
    conn.execute(
        "WITH d AS (DELETE FROM task_count_deltas RETURNING status, n), "
        "s AS (SELECT status, sum(n) AS n FROM d GROUP BY status) "
        "UPDATE task_counts c SET n = c.n + s.n FROM s WHERE c.status = s.status")
