"""Shared fixtures: real SQLite files in temporary folders (or a real PostgreSQL database),
real workers, real HTTP on port 0.

A module marked ``pytestmark = pytest.mark.backends`` runs every test on both backends: its
``backend`` fixture is "sqlite" and then "postgres", and ``store``, ``service``, ``served``
and the rest follow it. Other modules run on SQLite only."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from service.api import ApiConfig, create_app
from service.api_server import ApiServer
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import Task, TaskQuery, TaskStore, stored_time
from storage.sqlite import SqliteTaskStore, migrate, open_connection
from storage.sqlite.store import TASK_COLUMNS
from tests.postgres_server import PgServer, pg_server, pg_url  # noqa: F401 (fixtures)
from tests.proc_helpers import StartTaskdesk, TaskdeskProcess

BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends: run the module's tests on SQLite and on "
                            "PostgreSQL (the `backend` fixture)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("backends"):
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "sqlite" unless the module is marked ``backends``."""
    return str(getattr(request, "param", "sqlite"))


def open_backend_store(backend: str, folder: Path, server: PgServer | None,
                       slot: str = "test") -> TaskStore:
    """A store on a fresh, migrated database of *backend*."""
    if backend == "postgres":
        from storage.postgres import PostgresTaskStore

        assert server is not None
        return PostgresTaskStore(server.fresh_database(slot))
    return SqliteTaskStore(make_db(folder / "tasks.db"))


@pytest.fixture(autouse=True, scope="session")
def own_user_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing a test runs (in process or as a child) reads or writes the user's own config,
    data or state folders: an actions.toml or plugins folder there would change what runs."""
    home = tmp_path_factory.mktemp("xdg")
    saved = {k: os.environ.get(k) for k in XDG_VARIABLES}
    for name in XDG_VARIABLES:
        os.environ[name] = str(home / name.lower())
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


XDG_VARIABLES = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


def make_db(path: Path) -> Path:
    conn = open_connection(path)
    migrate(conn, path)
    conn.close()
    return path


def claim_next(service: TaskService) -> Task | None:
    """Claim the next due task, as a worker would (None when none is due)."""
    claimed = service.settle([], 1).claimed
    return claimed[0] if claimed else None


def claim_task(service: TaskService, task_id: str) -> Task | None:
    """Claim one particular queued task (workers claim the oldest due; tests sometimes need a
    given one): the claim statement's effect, restricted to that task."""
    store = service.store
    now = stored_time(service.clock())
    if not isinstance(store, SqliteTaskStore):
        from storage.postgres import PostgresTaskStore
        from storage.postgres.sql import TASK_COLUMNS as PG_COLUMNS
        from storage.postgres.sql import tasks_from_rows

        assert isinstance(store, PostgresTaskStore)
        pg_sql = ("UPDATE tasks SET status = 'running', node = %s, started_at = %s, "
                  "processed_at = NULL, attempts = attempts + 1 WHERE id = %s "
                  "AND status = 'queued' RETURNING " + PG_COLUMNS)
        found = store._write(lambda conn, notes: tasks_from_rows(conn.execute(
            pg_sql, (store.node.number, now, task_id)).fetchall()))
        return found[0] if found else None
    sql = ("UPDATE tasks SET status = 'running', started_at = ?, processed_at = NULL, "
           "attempts = attempts + 1 WHERE id = ? AND status = 'queued' RETURNING "
           + TASK_COLUMNS)
    rows = store._write(lambda conn: conn.execute(sql, (now, task_id)).fetchall())
    return Task.from_row(rows[0]) if rows else None


def run_claimed(service: TaskService, task: Task) -> Task | None:
    """Run a claimed task's action and store its outcome, as a worker would; the task as
    stored (None when that attempt was no longer running)."""
    return service.settle([service.run(task)], 0).finished[0]


def count_rows(store: TaskStore) -> tuple[int, int]:
    """(rows, distinct ids) in the tasks table, counted by SQL itself, not the kept counts."""
    # Both backends' stores read with _read(sql): the same SQL on either.
    rows, distinct = store._read("SELECT count(*), count(DISTINCT id) FROM tasks")[0]  # type: ignore[attr-defined]
    return int(rows), int(distinct)


def all_tasks(store: TaskStore) -> list[Task]:
    return store.page(TaskQuery(), 1_000_000)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return make_db(tmp_path / "tasks.db")


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> Iterator[TaskStore]:
    s: TaskStore
    if backend == "postgres":
        server: PgServer = request.getfixturevalue("pg_server")
        s = open_backend_store(backend, Path(), server)
    else:
        s = SqliteTaskStore(request.getfixturevalue("db_path"))
    yield s
    s.close()


@pytest.fixture
def service(store: TaskStore) -> TaskService:
    # A short backoff keeps retry tests quick; the formula is tested on its own.
    return TaskService(store, max_attempts=3, backoff_base=0.01)


@pytest.fixture
def pool_factory(qapp: Any, service: TaskService) -> Iterator[Callable[..., WorkerPool]]:
    """Start worker pools on the fixture service (no simulated work unless asked)."""
    pools: list[WorkerPool] = []

    def start(
        workers: int = 2, prefetch: int = 5, work_delay: float = 0.0, **options: Any
    ) -> WorkerPool:
        pool = WorkerPool(service, workers, prefetch, work_delay, **options)
        pool.start()
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


class Client:
    """A tiny HTTP client over urllib that never raises on 4xx/5xx."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> Response:
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            hdrs.setdefault("Content-Type", "application/json")
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                                resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json_body, **kw)


@pytest.fixture
def api_factory(service: TaskService) -> Iterator[Callable[..., Client]]:
    """Serve create_app(service) on a real cheroot server on 127.0.0.1, port 0."""
    servers: list[ApiServer] = []

    def start(config: ApiConfig | None = None) -> Client:
        server = ApiServer(create_app(service, config), "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return Client(server.url)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client(api_factory: Callable[..., Client]) -> Client:
    return api_factory()


@dataclass
class ApiEnv:
    store: TaskStore
    service: TaskService
    client: Client


@contextlib.contextmanager
def served(folder: Path, backend: str = "sqlite",
           request: pytest.FixtureRequest | None = None) -> Iterator[ApiEnv]:
    """A database in *folder* (or, for "postgres", a database of its own on the test
    server, found through *request*) served over real HTTP on port 0, with no workers."""
    server = None
    if backend == "postgres":
        assert request is not None
        server = request.getfixturevalue("pg_server")
    store = open_backend_store(backend, folder, server, slot=f"served_{folder.name}")
    service = TaskService(store, max_attempts=3, backoff_base=0.01)
    server = ApiServer(create_app(service), "127.0.0.1", 0)
    server.start()
    try:
        yield ApiEnv(store, service, Client(server.url))
    finally:
        server.stop()
        store.close()


def snapshot(store: TaskStore) -> tuple[dict[Any, int], list[dict[str, Any]]]:
    """Everything an API request could have changed: counts and every task as stored."""
    return store.counts(), [t.to_dict() for t in all_tasks(store)]


@contextlib.contextmanager
def unchanged(store: TaskStore) -> Iterator[None]:
    """Assert that the block wrote nothing to the database."""
    before = snapshot(store)
    yield
    assert snapshot(store) == before, "a rejected request changed the database"


@pytest.fixture
def start_taskdesk() -> Iterator[StartTaskdesk]:
    """Start ``main.py`` with the given arguments; every process is killed at teardown."""
    procs: list[TaskdeskProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> TaskdeskProcess:
        proc = TaskdeskProcess(args, env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
