"""2,000 POSTs from 16 keep-alive clients against a server whose workers run as tasks arrive:
every accepted task is stored once, runs once and completes with its own result."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.events import TaskEvent
from service.task_service import TaskService
from storage import TaskQuery, TaskStatus, TaskStore
from tests.conftest import Client, count_rows

# Nothing here depends on SQLite: the test runs on both backends.
pytestmark = pytest.mark.backends

CLIENTS = 16
PER_CLIENT = 125
TOTAL = CLIENTS * PER_CLIENT  # 2,000


def post_many(base_url: str, client_no: int) -> list[tuple[str, int]]:
    """POST PER_CLIENT tasks over one keep-alive connection; return (id, expected sum) pairs.

    http.client reopens the connection by itself if the server answers ``Connection: close``;
    any other failure raises, and nothing is retried (a retry could store a task twice)."""
    url = urllib.parse.urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    accepted: list[tuple[str, int]] = []
    try:
        for i in range(PER_CLIENT):
            numbers = [client_no * 1000, i]
            body = json.dumps({"action": "sum", "data": {"numbers": numbers}})
            conn.request("POST", "/tasks", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            assert resp.status == 202, (resp.status, payload)
            answer = json.loads(payload)
            assert answer["status"] == "queued"
            accepted.append((answer["id"], sum(numbers)))
    finally:
        conn.close()
    return accepted


def test_2000_posts_from_16_threads_each_run_exactly_once(
    api_factory: Callable[..., Client], service: TaskService, store: TaskStore,
    pool_factory: Callable[..., Any], qtbot: Any,
) -> None:
    events: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    def record(event: TaskEvent) -> None:
        with lock:
            events[(event.kind, event.task.id if event.task else "")] += 1

    unsubscribe = service.subscribe(record)
    client = api_factory()
    pool_factory(workers=2, work_delay=0)

    with ThreadPoolExecutor(max_workers=CLIENTS) as executor:
        batches = list(executor.map(lambda n: post_many(client.base_url, n), range(CLIENTS)))
    expected = {task_id: total for batch in batches for task_id, total in batch}
    assert sum(len(batch) for batch in batches) == TOTAL
    assert len(expected) == TOTAL  # all ids distinct

    qtbot.waitUntil(lambda: store.counts()[TaskStatus.COMPLETED] == TOTAL, timeout=60_000)
    unsubscribe()

    # Exactly the accepted rows, counted by SQL itself rather than the trigger-kept counts.
    assert count_rows(store) == (TOTAL, TOTAL)

    tasks = store.page(TaskQuery(), TOTAL + 1)
    assert {t.id for t in tasks} == set(expected)
    for task in tasks:
        assert (task.status, task.attempts, task.error) == ("completed", 1, None), task
        assert task.result == {"output": expected[task.id]}, task
    assert store.counts() == {"queued": 0, "running": 0, "completed": TOTAL, "failed": 0,
                              "cancelled": 0}

    # Each task was submitted and completed exactly once, and nothing else happened but, on a
    # busy machine, a batch handed back by a worker whose task ran slow (released, without
    # counting an attempt, and started again).
    for kind in ("submitted", "started", "completed"):
        assert {tid for (k, tid) in events if k == kind} == set(expected), kind
    for task_id in expected:
        assert events[("submitted", task_id)] == events[("completed", task_id)] == 1
        assert events[("started", task_id)] == 1 + events[("released", task_id)]
    assert {k for (k, _) in events} <= {"submitted", "started", "completed", "released"}

    # The API agrees, page by page.
    seen: list[str] = []
    for offset in (0, 1000):
        page = client.get(f"/tasks?status=completed&limit=1000&offset={offset}").json()
        assert (page["count"], page["total"]) == (1000, TOTAL)
        seen += [t["id"] for t in page["tasks"]]
    assert sorted(seen) == sorted(expected)
    stats = client.get("/stats").json()
    assert (stats["counts"]["completed"], stats["queue_depth"]) == (TOTAL, 0)
