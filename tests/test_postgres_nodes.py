"""Several real Taskdesk processes on one PostgreSQL database (``--lease 3``: a heartbeat a
second, a dead node rescued within about four): they share the work, a killed node's tasks
finish on the other, a node paused past its lease changes nothing when it comes back, and a
restart of PostgreSQL loses nothing. Every wait is a bounded condition wait."""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.postgres_server import PgServer
from tests.proc_helpers import Api, StartTaskdesk, TaskdeskProcess

WAIT_MS = 60_000
LEASE = "3"


def node(start: StartTaskdesk, url: str, *extra: str) -> tuple[TaskdeskProcess, Api]:
    proc = start("--headless", "--db", url, "--port", "0", "--lease", LEASE, *extra)
    proc.wait_listening()
    return proc, proc.api()


def ids_logged(log: str, message: str) -> list[str]:
    return re.findall(rf"{message} id=([0-9a-f-]{{36}})", log)


def rows(server: PgServer, url: str) -> dict[str, dict[str, Any]]:
    found = server.query(url, "SELECT id, status, attempts, result, processed_at, node "
                              "FROM tasks")
    return {r[0]: {"status": r[1], "attempts": r[2], "result": r[3], "processed_at": r[4],
                   "node": r[5]} for r in found}


def counts_match_the_rows(api: Api, server: PgServer, url: str) -> None:
    by_status = dict(server.query(url, "SELECT status, count(*) FROM tasks GROUP BY status"))
    assert {k: v for k, v in api.counts().items() if v} == by_status


def running_on(api: Api, own: bool) -> list[str]:
    nodes = api.get("/nodes").body["nodes"]
    return [t for n in nodes if n["current"] == own for t in n["running"]]


def test_two_nodes_drain_tasks_posted_to_both_each_exactly_once(
    start_taskdesk: StartTaskdesk, pg_url: str, pg_server: PgServer, qtbot: Any
) -> None:
    a, api_a = node(start_taskdesk, pg_url, "--work-delay", "0")
    b, api_b = node(start_taskdesk, pg_url, "--work-delay", "0")
    accepted = {**api_a.submit_uppercase(1000), **api_b.submit_uppercase(1000)}
    assert len(accepted) == 2000
    qtbot.waitUntil(lambda: api_a.counts()["completed"] == 2000, timeout=WAIT_MS)
    stored = rows(pg_server, pg_url)
    assert set(stored) == set(accepted)
    assert all(r["status"] == "completed" and r["attempts"] == 1 for r in stored.values())
    assert all(stored[i]["result"] == f'{{"output":"{t.upper()}"}}' for i, t in accepted.items())
    done_a = ids_logged(a.log, "task completed")
    done_b = ids_logged(b.log, "task completed")
    assert Counter(done_a + done_b) == Counter(list(accepted))  # each completed once, by one node
    assert done_a and done_b  # both did some
    counts_match_the_rows(api_b, pg_server, pg_url)
    assert api_a.get("/nodes").body["alive"] == 2


def test_a_killed_nodes_tasks_finish_on_the_other_after_its_lease(
    start_taskdesk: StartTaskdesk, pg_url: str, pg_server: PgServer, qtbot: Any
) -> None:
    options = ("--work-delay", "1.5", "--workers", "2", "--prefetch", "2")
    victim, api_v = node(start_taskdesk, pg_url, *options)
    survivor, api_s = node(start_taskdesk, pg_url, *options)
    accepted = api_v.submit_uppercase(12)
    qtbot.waitUntil(lambda: len(running_on(api_v, own=True)) == 2, timeout=WAIT_MS)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    lost = set(ids_logged(victim.log, "processing task")) - set(
        ids_logged(victim.log, "task completed"))
    assert lost  # it was running tasks when killed
    qtbot.waitUntil(lambda: api_s.counts()["completed"] == 12, timeout=WAIT_MS)
    stored = rows(pg_server, pg_url)
    assert all(r["status"] == "completed" for r in stored.values())
    started = Counter(ids_logged(victim.log, "processing task")
                      + ids_logged(survivor.log, "processing task"))
    twice = {task_id for task_id, n in started.items() if n > 1}
    assert twice <= lost  # none ran twice but those the killed node was running
    assert all(stored[t]["attempts"] == 2 for t in lost)
    assert set(stored) == set(accepted)
    nodes = api_s.get("/nodes").body["nodes"]
    assert [n["current"] for n in nodes] == [True]  # the dead node was removed
    counts_match_the_rows(api_s, pg_server, pg_url)


def test_a_node_paused_past_its_lease_changes_nothing_when_it_comes_back(
    start_taskdesk: StartTaskdesk, pg_url: str, pg_server: PgServer, qtbot: Any
) -> None:
    sleeper, api_z = node(start_taskdesk, pg_url, "--work-delay", "2", "--workers", "2",
                          "--prefetch", "2")
    accepted = api_z.submit_uppercase(2)
    qtbot.waitUntil(lambda: len(running_on(api_z, own=True)) == 2, timeout=WAIT_MS)
    sleeper.send_signal(signal.SIGSTOP)
    try:
        _, api_o = node(start_taskdesk, pg_url, "--work-delay", "0")
        qtbot.waitUntil(lambda: api_o.counts()["completed"] == 2, timeout=WAIT_MS)
        after_rescue = rows(pg_server, pg_url)
    finally:
        sleeper.send_signal(signal.SIGCONT)
    # Back: its simulated work ends, its outcomes are refused, it notices and rejoins.
    sleeper.wait_for_log(r"joined again as node", timeout=30)
    for task_id in accepted:
        sleeper.wait_for_log(rf"task {task_id} was no longer running", timeout=30)
    assert rows(pg_server, pg_url) == after_rescue
    assert all(r["status"] == "completed" and r["attempts"] == 2
               for r in after_rescue.values())
    assert not ids_logged(sleeper.log, "task completed")
    qtbot.waitUntil(lambda: api_z.get("/nodes").body["alive"] == 2, timeout=WAIT_MS)


def test_a_postgresql_restart_mid_run_loses_nothing(
    start_taskdesk: StartTaskdesk, pg_url: str, pg_server: PgServer, qtbot: Any,
    request: pytest.FixtureRequest
) -> None:
    if pg_server.restart_command() is None:
        pytest.skip("the test server cannot be restarted from here (run under pg_virtualenv, "
                    "or set TASKDESK_TEST_PG_RESTART to a command that restarts it)")
    _, api = node(start_taskdesk, pg_url, "--work-delay", "0.02")
    accepted = api.submit_uppercase(150)
    pg_server.restart()
    # While it comes back some POSTs may be refused (503, naming the database); every one
    # accepted must complete.
    later: dict[str, str] = {}
    refused = 0
    for i in range(150):
        reply = api.post("/tasks", {"action": "uppercase", "data": {"text": f"u{i}"}})
        if reply.status == 202:
            later[reply.body["id"]] = f"u{i}"
        else:
            assert reply.status == 503 and "database" in reply.body["error"], reply
            refused += 1
    accepted.update(later)
    qtbot.waitUntil(lambda: _completed(api) == len(accepted), timeout=WAIT_MS)
    stored = rows(pg_server, pg_url)
    assert set(stored) == set(accepted)
    assert all(r["status"] == "completed" for r in stored.values())
    health: Callable[[], Any] = lambda: api.get("/health").body  # noqa: E731
    qtbot.waitUntil(lambda: health()["status"] == "ok", timeout=WAIT_MS)
    assert "node" in health()["node"]
    counts_match_the_rows(api, pg_server, pg_url)


def _completed(api: Api) -> int:
    reply = api.get("/stats")
    return int(reply.body["counts"]["completed"]) if reply.status == 200 else -1
