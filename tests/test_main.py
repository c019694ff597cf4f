"""The wiring (program.py, run by main.py): every option reaches the part it is for, in process
(test_settings.py checks how options are read, test_process.py how the program behaves as a
whole)."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from program import Engine, open_engine
from service.settings import parse_settings
from storage.sqlite import SqliteTaskStore

OpenEngine = Callable[..., Engine]


@pytest.fixture
def engine_with(tmp_path: Path) -> Iterator[OpenEngine]:
    """Opens engines as main.py does, from command-line options (the environment left out),
    on a database in tmp_path; stops them all at teardown."""
    opened: list[Engine] = []

    def open_with(*args: str) -> Engine:
        settings = parse_settings(
            ["--headless", "--db", str(tmp_path / "tasks.db"), "--port", "0", *args], environ={})
        engine = open_engine(settings)
        opened.append(engine)
        return engine

    yield open_with
    for engine in opened:
        engine.stop()


@pytest.mark.parametrize(("synchronous", "level"), [("full", 2), ("normal", 1)])
def test_every_option_reaches_its_part(
    engine_with: OpenEngine, synchronous: str, level: int
) -> None:
    engine = engine_with("--synchronous", synchronous, "--max-attempts", "7",
                         "--retry-backoff", "2.5", "--workers", "3", "--prefetch", "12",
                         "--work-delay", "0.25", "--task-timeout", "9")
    store = engine.store
    assert isinstance(store, SqliteTaskStore)
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == level
    service = engine.service
    assert service.submit("x").max_attempts == 7
    assert [service.backoff(n) for n in (1, 2)] == [2.5, 5.0]
    pool = engine.pool
    assert (pool.workers, pool.worker.max_batch, pool.work_delay) == (3, 4, 0.25)
    assert pool.watchdog.task_timeout == 9  # what ends an action that runs too long


def request(engine: Engine, host: str, token: str | None = None) -> int:
    """The status of GET /tasks sent to *engine*'s API with this Host header (and token)."""
    assert engine.api is not None
    url = urllib.parse.urlsplit(engine.api.url)
    conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=30)
    try:
        conn.putrequest("GET", "/tasks", skip_host=True)
        conn.putheader("Host", host)
        if token is not None:
            conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_on_loopback_the_api_answers_loopback_host_names_only(engine_with: OpenEngine) -> None:
    engine = engine_with()
    engine.start_api()
    assert request(engine, "127.0.0.1") == request(engine, "localhost:8080") == 200
    assert request(engine, "evil.example") == 403  # a rebound DNS name


def test_beyond_loopback_the_api_takes_any_host_but_wants_the_token(
    engine_with: OpenEngine,
) -> None:
    engine = engine_with("--host", "0.0.0.0", "--token", "s3cret")
    engine.start_api()
    assert request(engine, "taskdesk.example", "s3cret") == 200
    assert request(engine, "taskdesk.example") == request(engine, "127.0.0.1", "wrong") == 401


def test_a_stop_waits_for_running_commands_through_their_kill_grace(
    engine_with: OpenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopping asks a running command to stop: SIGTERM, SIGKILL after --kill-grace. Giving
    # up on the workers before that ends the process with the task still `running`, so the
    # next start counts its attempt as interrupted (failed, if it was the last) instead of
    # queueing it again.
    engine = engine_with("--kill-grace", "30")
    engine.pool.start()
    original = engine.pool.stop
    waited: list[float] = []

    def stop(timeout: float = 10.0) -> bool:
        waited.append(timeout)
        return original(timeout)

    monkeypatch.setattr(engine.pool, "stop", stop)
    engine.stop()
    assert waited and waited[0] > 30
