"""Property-based fuzzing of the HTTP API with schemathesis, against the app's own OpenAPI
document.

schemathesis is given the document the app serves at ``GET /openapi.json`` (the first test
checks they are the same), generates requests from it, valid and invalid (wrong types, missing
or extra fields, values out of range or empty, undeclared methods, a missing Content-Type),
sends them over real HTTP to a cheroot server on port 0 whose workers run what is accepted,
and checks every answer:

* no 5xx;
* status, Content-Type and body as documented for the route and status (the body also against
  the closed schemas of test_openapi, so an undocumented field fails too);
* a request the document calls valid is accepted and one it calls invalid is refused with a
  4xx (schemathesis' positive and negative data checks): the document is exact, not merely
  loose, so "matches the schema" means something;
* the database holds exactly the tasks answered 2xx to ``POST /tasks``, each as submitted, and
  (once the workers are done) each completed with its action's result.

A stateful run follows the document's links (``POST /tasks`` → get, cancel, retry the new
task, cancel → delete it; ``GET /schedules`` → run, pause, resume the first schedule), so
those are fuzzed on tasks and schedules that exist, not only on unknown ones. The servers have
two schedules; ``POST /queue/pause`` is fuzzed too, so the last check resumes the queue
before it waits for the workers.

Bounded for the normal suite: ``TASKDESK_FUZZ_EXAMPLES`` (default 30) examples per operation,
about 10 s. ``make fuzz`` runs the same tests with 2,000 (about three minutes, and a summary of the
routes and statuses reached).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from pytestqt.qtbot import QtBot

from service.api import ApiConfig, create_app
from service.api_server import ApiServer
from service.export import CSV_COLUMNS
from service.openapi import openapi_document
from service.schedules import Schedule, Scheduler
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import TaskQuery, TaskStatus, TaskStore
from tests.conftest import open_backend_store
from tests.test_openapi import response_validator

# Nothing here depends on SQLite: every test runs on both backends.
pytestmark = pytest.mark.backends

Case = schemathesis.Case[Any]

EXAMPLES = int(os.environ.get("TASKDESK_FUZZ_EXAMPLES", "30"))
VERSION = "fuzz"
TIMEOUT = 30  # seconds, for every request
WAIT_MS = 60_000

# The document the app serves (test_served_document_is_the_fuzzed_one checks it byte for byte).
DOCUMENT = openapi_document(VERSION)
# GET /events answers a stream that never ends on its own: not something a request-and-answer
# fuzzer can check (tests/test_events_api.py does).
STREAMS = "/events"
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path=STREAMS)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a real server; time is not the property
    database=None,  # no saved examples: each run draws afresh (and stores none)
    # Generation from a schema can be slow or filter a lot; neither is a failure of the API.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@schema.hook
def filter_body(context: schemathesis.HookContext, body: Any) -> bool:
    """Leave out the valid-looking submissions that JSON Schema cannot describe: a `sum` whose
    total is too large for a float, `after` naming tasks that do not exist, a `run_at` in the
    past. The API refuses them with a 400 (test_api and test_scheduling cover those), which the
    positive data check would report as a valid request refused. Delayed tasks are left out
    too: the fuzzed server's workers must finish every task it accepted."""
    if not isinstance(body, dict):
        return True
    if body.get("after") or body.get("run_at") is not None or body.get("delay"):
        return False
    if body.get("action") != "sum":
        return True
    data = body.get("data")
    numbers = data.get("numbers") if isinstance(data, dict) else None
    if not isinstance(numbers, list) or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
    ):
        return True
    return _representable_total(numbers) is not None


def _representable_total(numbers: list[int | float]) -> int | float | None:
    """The `sum` action's total (exact for integers, fsum with any float); None if too large."""
    try:
        total = math.fsum(numbers) if any(isinstance(n, float) for n in numbers) else sum(numbers)
    except OverflowError:
        return None
    if isinstance(total, float) and not math.isfinite(total):
        return None
    return total


@functools.cache
def closed_validator(path: str, method: str, status: int) -> Draft202012Validator:
    """test_openapi's strict check: the documented schema with every object closed, so a field
    the document does not describe fails as surely as a missing one."""
    return response_validator(DOCUMENT, path, method.lower(), status)


# -- the server under test and what it accepted -------------------------------------------------


# The fuzzed servers' schedules: what POST /schedules/{name}/run submits.
SCHEDULES = [Schedule("hourly", "uppercase", {"text": "tick"}, None, 3600.0),
             Schedule("nightly", "sum", {"numbers": [1, 2]}, "30 2 * * *", None)]


@dataclass
class Fuzzed:
    url: str
    store: TaskStore
    session: requests.Session
    service: TaskService
    # Every task answered 2xx to POST /tasks or POST /schedules/{name}/run and not deleted
    # since: id → (action, data) as sent.
    accepted: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)  # "METHOD /path STATUS" → count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, case: Case, response: schemathesis.Response) -> None:
        """Check one exchange beyond the documented schemas, and remember what was stored."""
        status = response.status_code
        label = f"{case.method.upper()} {case.path} {status}"
        with self.lock:
            self.statuses[label] = self.statuses.get(label, 0) + 1
        assert status < 500, (label, response.content[:500])
        content_type = response.headers.get("content-type", [""])[0]
        if label == "GET /tasks 200" and content_type.startswith("text/csv"):
            # An export as CSV (format=csv): a header row, then whole rows.
            rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))
            assert rows and rows[0] == list(CSV_COLUMNS), rows[:1]
            assert all(len(row) == len(CSV_COLUMNS) for row in rows), label
        elif case.method.upper() != "HEAD":
            assert content_type.split(";")[0] == "application/json", (label, content_type)
            body = json.loads(response.content)
            if case.operation.method.upper() == case.method.upper():  # a documented operation
                closed_validator(case.operation.path, case.operation.method, status).validate(
                    body)
            if status >= 400:
                assert isinstance(body, dict) and isinstance(body.get("error"), str), body
        operation = (case.operation.method.upper(), case.operation.path)
        if case.method.upper() == "POST" and case.path == "/tasks" and 200 <= status < 300:
            self._accepted(case, response)
        elif operation == ("POST", "/schedules/{name}/run") and status == 202:
            self._fired(case, response)
        elif operation == ("DELETE", "/tasks/{task_id}") and status == 200:
            with self.lock:
                deleted = self.accepted.pop(response.json()["id"], None)
            assert deleted is not None and response.json()["status"] in (
                "completed", "failed", "cancelled"), response.json()
        # Nothing but a 2xx POST /tasks or a run of a schedule adds a row, and nothing but a
        # DELETE of a finished task removes one.
        assert self.store.count(TaskQuery()) == len(self.accepted), label

    def wipe(self) -> None:
        """Back to an empty database with the queue and every schedule running, through the
        store's own writer (either backend's: the same SQL works on both)."""
        statements = ("DELETE FROM tasks", "DELETE FROM task_deps", "DELETE FROM schedules",
                      "UPDATE queue_state SET paused = false")

        def write(conn: Any, *_notes: Any) -> None:
            for sql in statements:
                conn.execute(sql)

        with self.lock:
            self.store._write(write)  # type: ignore[attr-defined]  # not in the contract
            self.accepted.clear()

    def _fired(self, case: Case, response: schemathesis.Response) -> None:
        name = (case.path_parameters or {}).get("name")
        [schedule] = [s for s in SCHEDULES if s.name == name]
        task_id = response.json()["id"]
        with self.lock:
            assert task_id not in self.accepted
            self.accepted[task_id] = (schedule.action, schedule.data)

    def _accepted(self, case: Case, response: schemathesis.Response) -> None:
        task_id = response.json()["id"]
        sent = case.body
        assert isinstance(sent, dict), sent
        action, data = sent["action"], sent.get("data") or {}
        assert isinstance(action, str) and isinstance(data, dict), sent
        with self.lock:
            if response.status_code == 200:  # a repeated Idempotency-Key: nothing new
                assert task_id in self.accepted
                return
            assert task_id not in self.accepted
            self.accepted[task_id] = (action, data)
        stored = self.store.get(task_id)
        assert stored is not None, task_id
        assert (stored.action, stored.data) == (action, data)


@contextlib.contextmanager
def serve(directory: Path, workers: int, backend: str = "sqlite",
          request: pytest.FixtureRequest | None = None) -> Iterator[Fuzzed]:
    server = request.getfixturevalue("pg_server") if backend == "postgres" and request else None
    store = open_backend_store(backend, directory, server, slot=f"fuzz_{directory.name}")
    service = TaskService(store, max_attempts=3, backoff_base=0.01)
    pool = WorkerPool(service, workers=workers, prefetch=5, work_delay=0) if workers else None
    if pool is not None:
        pool.start()
    config = ApiConfig(version=VERSION, worker_stats=lambda: {
        "busy": pool.busy if pool else 0, "total": pool.workers if pool else 0},
        schedules=Scheduler(service, SCHEDULES))
    server = ApiServer(create_app(service, config), "127.0.0.1", 0)
    server.start()
    session = requests.Session()
    try:
        yield Fuzzed(server.url, store, session, service)
    finally:
        session.close()
        server.stop()
        if pool is not None:
            pool.stop()
        store.close()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, qapp: Any, backend: str,
           request: pytest.FixtureRequest) -> Iterator[Fuzzed]:
    """A server whose two workers run what it accepts, on its own database."""
    with serve(tmp_path_factory.mktemp("fuzz"), 2, backend, request) as env:
        yield env


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, backend: str,
         request: pytest.FixtureRequest) -> Iterator[Fuzzed]:
    """A server without workers, so the tasks it accepts stay queued: cancel and retry then
    find tasks they can change (with workers, a new task is running before it can be
    cancelled)."""
    with serve(tmp_path_factory.mktemp("idle"), 0, backend, request) as env:
        yield env


# -- the tests --------------------------------------------------------------------------------


def test_served_document_is_the_fuzzed_one(fuzzed: Fuzzed) -> None:
    resp = fuzzed.session.get(fuzzed.url + "/openapi.json", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.json() == DOCUMENT
    # Round-trips exactly: nothing in the document is lost in JSON (the action pattern holds
    # characters from every plane).
    assert json.loads(json.dumps(DOCUMENT)) == DOCUMENT


@schema.parametrize()
@SETTINGS
def test_every_operation_answers_as_documented(fuzzed: Fuzzed, case: Case) -> None:
    response = case.call_and_validate(base_url=fuzzed.url, session=fuzzed.session,
                                      timeout=TIMEOUT)
    fuzzed.record(case, response)


def test_stateful_sequences_follow_the_links(idle: Fuzzed) -> None:
    """Submit, then get, cancel and retry the new task, in generated orders."""

    # Only the document's links: schemathesis would also infer some, e.g. from GET /tasks to
    # the ids it lists, which on a server whose database outlives each scenario answer
    # differently each time a scenario is replayed (hypothesis calls that flaky and stops).
    linked = schemathesis.openapi.from_dict(DOCUMENT).exclude(path=STREAMS)
    linked.config.phases.stateful.inference.algorithms = []
    linked.hook(filter_body)

    @linked.hook
    def map_headers(context: schemathesis.HookContext, headers: Any) -> Any:
        # A key seen in an earlier scenario answers 200 with that scenario's task instead of
        # 202 with a new one: on a database that outlives each scenario, replays would differ
        # (hypothesis calls that flaky). Idempotency keys are fuzzed by the stateless test.
        if isinstance(headers, dict):
            headers.pop("Idempotency-Key", None)
        return headers

    class Sequences(linked.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each scenario on an empty database, queue and schedules running: a replay of a
            # scenario then answers as it did the first time (a repeated Idempotency-Key, a
            # paused queue or a deleted task would otherwise change the answers, and so the
            # links that can be followed, which hypothesis reports as flaky).
            idle.wipe()

        def teardown(self) -> None:
            check_idle_database(idle)  # each scenario, before the next one wipes it
            super().teardown()

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": idle.url, "session": idle.session, "timeout": TIMEOUT}

        def after_call(self, response: schemathesis.Response, case: Case) -> None:
            super().after_call(response, case)
            idle.record(case, response)

    # The links must be followed to tasks and schedules that exist: read, cancelled,
    # retried, run. Runs are random; a few more (at most nine) make sure short ones reached
    # them all. Random even under CI=true, whose Hypothesis profile derandomizes: every round
    # then drew the same sequences, and a document whose shape led them elsewhere (a retry
    # is three links deep) failed every time.
    wanted = {"GET /tasks/{task_id} 200", "POST /tasks/{task_id}/cancel 200",
              "POST /tasks/{task_id}/retry 202", "POST /schedules/{name}/run 202"}
    for _ in range(10):
        Sequences.run(settings=settings(SETTINGS, max_examples=max(10, EXAMPLES // 2),
                                        stateful_step_count=8, derandomize=False))
        if wanted <= set(idle.statuses):
            break
    assert wanted <= set(idle.statuses), sorted(idle.statuses)


def test_without_workers_the_database_holds_exactly_the_accepted_tasks(idle: Fuzzed) -> None:
    if not idle.accepted:
        pytest.skip("runs after the stateful test of this module, on what it stored")
    check_idle_database(idle)


def check_idle_database(idle: Fuzzed) -> None:
    """The database without workers holds exactly the tasks accepted (and not deleted), each
    as sent, none run."""
    tasks = {t.id: t for t in idle.store.page(TaskQuery(), len(idle.accepted) + 1)}
    assert set(tasks) == set(idle.accepted)
    for task_id, (action, data) in idle.accepted.items():
        task = tasks[task_id]
        assert (task.action, task.data) == (action, data)
        assert task.status in ("queued", "cancelled"), task
        assert (task.result, task.error, task.attempts) == (None, None, 0), task


def test_database_holds_exactly_the_accepted_tasks_each_run_to_its_result(
    fuzzed: Fuzzed, qtbot: QtBot
) -> None:
    """After the fuzzing above: every row was answered 2xx, as sent, and every task that was
    not cancelled has run to completion with its action's result (no worker stuck, no task
    left queued or running, none failed: everything accepted is something the actions can
    do)."""
    # What the fuzzing reached, per route and status (`make fuzz` shows it: pytest -rP).
    print(json.dumps(dict(sorted(fuzzed.statuses.items())), indent=1))
    if not fuzzed.accepted:
        pytest.skip("runs after the fuzz tests of this module, on what they stored")
    store = fuzzed.store
    fuzzed.service.set_paused(False)  # POST /queue/pause may have been the last call

    def settled() -> bool:
        counts = store.counts()
        return counts[TaskStatus.QUEUED] == counts[TaskStatus.RUNNING] == 0

    qtbot.waitUntil(settled, timeout=WAIT_MS)
    tasks = {t.id: t for t in store.page(TaskQuery(), len(fuzzed.accepted) + 1)}
    assert set(tasks) == set(fuzzed.accepted)
    for task_id, (action, data) in fuzzed.accepted.items():
        task = tasks[task_id]
        assert (task.action, task.data) == (action, data)
        if task.status == "cancelled":
            continue
        assert (task.status, task.error) == ("completed", None), task
        assert task.result == expected_result(action, data), task


def expected_result(action: str, data: dict[str, Any]) -> Any:
    results: dict[str, Callable[[], Any]] = {
        "uppercase": lambda: {"output": data.get("text", "").upper()},
        "sum": lambda: {"output": _representable_total(data.get("numbers", []))},
    }
    return results.get(action, lambda: {"output": "processed"})()
