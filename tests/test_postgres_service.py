"""The service, the API and the window over PostgreSQL, where other instances change the
same queue: their changes arrive as events (the window refreshes, idle workers wake, a
running task learns it was asked to stop), and a database that cannot be reached is a 503
naming it, on /health with this node, until it is back and work resumes by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from gui.main_window import AppInfo, MainWindow
from service.api import ApiConfig, create_app
from service.api_server import ApiServer
from service.events import EventKind, TaskEvent
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import StorageUnavailableError, TaskStatus
from storage.postgres import PostgresTaskStore
from tests.conftest import Client, claim_task
from tests.postgres_server import PgServer

WAIT_MS = 15_000


@pytest.fixture
def nodes(pg_url: str) -> Iterator[Callable[..., TaskService]]:
    """Services on stores of their own (each a node) on one database."""
    opened: list[PostgresTaskStore] = []

    def start(**options: Any) -> TaskService:
        store = PostgresTaskStore(pg_url, max_connections=6, **options)
        opened.append(store)
        return TaskService(store, max_attempts=3, backoff_base=0.01)

    yield start
    for store in opened:
        store.close()


class Recorder:
    def __init__(self, service: TaskService) -> None:
        self.events: list[TaskEvent] = []
        self._lock = threading.Lock()
        service.subscribe(self.record)

    def record(self, event: TaskEvent) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self, task_id: str | None = None) -> list[EventKind]:
        with self._lock:
            return [e.kind for e in self.events
                    if task_id is None or (e.task is not None and e.task.id == task_id)]


def test_other_nodes_changes_reach_this_service_as_events(
    nodes: Callable[..., TaskService], qtbot: QtBot
) -> None:
    there, here = nodes(), nodes()
    heard = Recorder(here)
    assert here.store.listener.connected.wait(10)  # type: ignore[attr-defined]
    task = there.submit("uppercase", {"text": "a"})
    qtbot.waitUntil(lambda: EventKind.CHANGED_ELSEWHERE in heard.kinds(task.id),
                    timeout=WAIT_MS)
    there.set_paused(True)
    qtbot.waitUntil(lambda: EventKind.PAUSED in heard.kinds(), timeout=WAIT_MS)
    there.set_paused(False)
    qtbot.waitUntil(lambda: EventKind.RESUMED in heard.kinds(), timeout=WAIT_MS)
    # Running here, cancelled there: whoever runs it here is told.
    assert claim_task(here, task.id) is not None
    there.cancel(task.id)
    qtbot.waitUntil(lambda: EventKind.CANCEL_REQUESTED in heard.kinds(task.id),
                    timeout=WAIT_MS)
    # Deleted there: nothing left to re-read, so one resync.
    other = there.submit("x")
    there.cancel(other.id)
    there.delete(other.id)
    qtbot.waitUntil(lambda: EventKind.RESYNC in heard.kinds(), timeout=WAIT_MS)
    # Nothing this node did came back to it as another's change.
    mine = here.submit("y")
    there_heard = Recorder(there)
    qtbot.waitUntil(lambda: EventKind.CHANGED_ELSEWHERE in there_heard.kinds(mine.id),
                    timeout=WAIT_MS)
    assert EventKind.CHANGED_ELSEWHERE not in heard.kinds(mine.id)


def test_an_idle_worker_here_runs_what_another_node_submits(
    nodes: Callable[..., TaskService], qtbot: QtBot, qapp: Any
) -> None:
    there, here = nodes(), nodes()
    pool = WorkerPool(here, workers=1, prefetch=2, work_delay=0)
    pool.start()
    try:
        task = there.submit("uppercase", {"text": "from afar"})
        qtbot.waitUntil(lambda: here.get(task.id).status == TaskStatus.COMPLETED,
                        timeout=WAIT_MS)
        assert here.get(task.id).result == {"output": "FROM AFAR"}
    finally:
        pool.stop()


def test_an_unreachable_database_is_503_naming_it_and_work_resumes_by_itself(
    nodes: Callable[..., TaskService], pg_server: PgServer, pg_url: str, qtbot: QtBot,
    qapp: Any
) -> None:
    service = nodes(timeout=1.0)
    store = service.store
    pool = WorkerPool(service, workers=1, prefetch=2, work_delay=0)
    pool.start()
    server = ApiServer(create_app(service, ApiConfig(problems=lambda: [
        p for p in (store.problem,) if p])), "127.0.0.1", 0)
    server.start()
    client = Client(server.url)
    name = pg_url.rsplit("/", 1)[1]
    try:
        assert client.post("/tasks", {"action": "uppercase", "data": {"text": "a"}}).status \
            == 202
        pg_server.admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        pg_server.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = %s", (name,))
        refused = client.post("/tasks", {"action": "uppercase", "data": {"text": "b"}})
        assert refused.status == 503
        assert store.location in refused.json()["error"]
        # Once a wait has run out, the next reads fail fast (the window reads on its GUI
        # thread): well within the 1 s this store waits for a connection.
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            service.counts()
        assert time.monotonic() - started < 0.9
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["node"] == store.identity
        assert any(store.location in p for p in health["problems"])
        pg_server.admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

        def accepted() -> bool:
            return client.post("/tasks", {"action": "uppercase", "data": {"text": "c"}}
                               ).status == 202

        qtbot.waitUntil(accepted, timeout=30_000)
        qtbot.waitUntil(lambda: service.counts()[TaskStatus.COMPLETED] >= 2
                        and service.counts()[TaskStatus.QUEUED] == 0, timeout=30_000)
        qtbot.waitUntil(lambda: client.get("/health").json()["status"] == "ok",
                        timeout=30_000)
    finally:
        pg_server.admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        server.stop()
        pool.stop()


def test_the_window_shows_the_nodes_and_re_reads_after_a_resync(
    nodes: Callable[..., TaskService], qtbot: QtBot, tmp_path: Path
) -> None:
    there, here = nodes(), nodes()
    task = there.submit("x")
    assert claim_task(there, task.id) is not None
    settings = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
    window = MainWindow(here, None, AppInfo("9", here.store.location, None, None, None),
                        settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    try:
        assert window.nodes is not None
        window.nodes.refresh()
        assert window.nodes.button.text() == "2 nodes alive"
        window.nodes.button.click()
        tree = window.nodes.tree
        assert tree.topLevelItemCount() == 2
        first = tree.topLevelItem(0)
        assert first is not None and first.childCount() == 1
        child = first.child(0)
        assert child is not None and child.toolTip(0) == task.id and child.text(1) == "x"
        # Changed elsewhere beyond what could be named: the window re-reads its rows.
        there.store.cancel_many([task.id], there.now())
        window.feed._resync[0] = True
        window.feed.flush()
        row = window.model.row_of(task.id)
        assert row is not None
        shown = window.model.task_at(row)
        assert shown is not None and shown.cancel_requested
    finally:
        window.shutdown()


def test_a_task_running_here_stops_when_cancelled_there_among_too_many_to_name(
    nodes: Callable[..., TaskService], qtbot: QtBot
) -> None:
    # Another node cancels 300 tasks at once (the window's select-all and Delete): too many
    # ids for one NOTIFY, so this node hears "re-read everything" (as it does after its
    # listener lost the connection). The tasks it runs that were asked to stop must stop.
    there, here = nodes(), nodes()
    assert here.store.listener.connected.wait(10)  # type: ignore[attr-defined]
    ids = there.submit_many("x", {}, 300)
    running, claimed = here.settle([], 2).claimed  # the second not started yet
    assert [running.id, claimed.id] == ids[:2]
    ctx = here.start_attempt(running)
    heard = Recorder(here)
    assert len(there.cancel_many(ids)) == 300
    qtbot.waitUntil(lambda: EventKind.RESYNC in heard.kinds(), timeout=WAIT_MS)
    qtbot.waitUntil(ctx.cancelled.is_set, timeout=WAIT_MS)
    assert not ctx.stopping
    assert here.start_attempt(claimed).cancelled.is_set()
