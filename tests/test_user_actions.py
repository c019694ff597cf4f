"""The user's own actions end to end: through the real worker pool and the real HTTP API.

Python actions report progress (coalesced), write to their log (read over HTTP by offset,
invalid UTF-8 replaced) and are stopped when cancelled while running, cooperatively or, when
they ignore it, by giving up on them after the kill grace. Command actions from an actions
file complete, fail with their exit code or signal, time out, and stop with their whole process
group when cancelled. With an action of the user's own registered, the API wants the token.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from service.actions import Action, RunContext, default_registry, load_config_file
from service.api import ApiConfig, create_app
from service.api_server import ApiServer
from service.progress import ProgressBoard
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import Progress, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.conftest import Client

WAIT_MS = 20_000
JSON = {"Content-Type": "application/json"}


def python_action(name: str, run: Callable[[dict[str, Any], RunContext], Any],
                  schema: dict[str, Any] | None = None) -> Action:
    return Action(name=name, description=f"test action {name}",
                  schema=schema or {"type": "object"}, kind="python", run=run,
                  source="test")


@pytest.fixture
def env(store: SqliteTaskStore, qapp: Any, api_factory: Callable[..., Client]
        ) -> Iterator[tuple[TaskService, Client, Callable[..., WorkerPool]]]:
    """A service with a fresh registry, a kill grace of 1 s, and a factory for its pool."""
    service = TaskService(store, default_registry(), max_attempts=1, backoff_base=0,
                          kill_grace=1.0)
    pools: list[WorkerPool] = []
    server = ApiServer(create_app(service, ApiConfig()), "127.0.0.1", 0)
    server.start()

    def start(workers: int = 1, **options: Any) -> WorkerPool:
        pool = WorkerPool(service, workers, 4, 0.0, **options)
        pool.start()
        pools.append(pool)
        return pool

    try:
        yield service, Client(server.url), start
    finally:
        for pool in pools:
            pool.stop()
        server.stop()


def wait_status(qtbot: QtBot, service: TaskService, task_id: str, status: TaskStatus) -> None:
    qtbot.waitUntil(lambda: service.get(task_id).status == status, timeout=WAIT_MS)


# -- Python actions ----------------------------------------------------------------------------


def test_a_python_action_reports_progress_and_logs_what_it_writes(
    qtbot: QtBot, env: tuple[TaskService, Client, Callable[..., WorkerPool]]
) -> None:
    service, client, start = env
    halfway, finish = threading.Event(), threading.Event()

    def work(data: dict[str, Any], ctx: RunContext) -> Any:
        ctx.log("starting\n")
        ctx.log(b"bytes as they are: \xff\xfe \xe2\x82")  # invalid UTF-8, a cut euro sign
        ctx.log(b"\xac\n")  # ... completed here
        for i in range(1, 501):
            ctx.progress(i / 1000, f"step {i}")
        halfway.set()
        finish.wait(WAIT_MS / 1000)
        ctx.progress(1.0, "done")
        return {"steps": 1000}

    service.registry.register(python_action("work", work))
    task = service.submit("work")
    start()
    assert halfway.wait(WAIT_MS / 1000)
    qtbot.waitUntil(lambda: service.get(task.id).progress == 0.5, timeout=WAIT_MS)
    running = client.get(f"/tasks/{task.id}").json()
    assert (running["status"], running["progress"], running["progress_message"]) == (
        "running", 0.5, "step 500")
    log = client.get(f"/tasks/{task.id}/log")
    assert log.headers["content-type"] == "text/plain; charset=utf-8"
    assert log.body.decode() == "starting\nbytes as they are: \ufffd\ufffd €\n"
    assert int(log.headers["x-next-offset"]) == len(
        b"starting\nbytes as they are: \xff\xfe \xe2\x82\xac\n")
    more = client.get(f"/tasks/{task.id}/log?offset={log.headers['x-next-offset']}")
    assert (more.status, more.body, more.headers["x-next-offset"]) == (
        200, b"", log.headers["x-next-offset"])
    tail = client.get(f"/tasks/{task.id}/log?offset=9")
    assert tail.body.decode().startswith("bytes as they are")
    finish.set()
    wait_status(qtbot, service, task.id, TaskStatus.COMPLETED)
    done = service.get(task.id)
    assert (done.result, done.progress, done.progress_message) == ({"steps": 1000}, 1.0, "done")


def test_a_log_cut_inside_a_character_is_read_whole(
    env: tuple[TaskService, Client, Callable[..., WorkerPool]]
) -> None:
    service, client, _ = env
    task = service.submit("uppercase")
    claimed = service.settle([], 1).claimed[0]  # running: more may follow
    service.store.append_log(task.id, "a€".encode()[:3])  # "a" and 2 of the euro's 3 bytes
    first = client.get(f"/tasks/{task.id}/log")
    assert (first.body, first.headers["x-next-offset"]) == (b"a", "1")
    service.store.append_log(task.id, "€".encode()[2:])
    second = client.get(f"/tasks/{task.id}/log?offset=1")
    assert (second.body.decode(), second.headers["x-next-offset"]) == ("€", "4")
    assert claimed.id == task.id
    assert client.get("/tasks/no-such-task/log").status == 404
    quiet = service.submit("uppercase")
    empty = client.get(f"/tasks/{quiet.id}/log")
    assert (empty.status, empty.body, empty.headers["x-next-offset"]) == (200, b"", "0")


def test_progress_is_written_a_few_times_a_second_however_often_it_is_reported(
    service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = service.submit("uppercase")
    running = service.settle([], 1).claimed[0]
    writes: list[int] = []
    original = service.set_progress

    def counting(reports: Any) -> Any:
        writes.append(len(reports))
        return original(reports)

    monkeypatch.setattr(service, "set_progress", counting)
    board = ProgressBoard(service, interval=0.05)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 0.5:  # as fast as a loop can report, for 0.5 s
        board.report(task.id, running.attempts, (n % 1000) / 1000, None)
        n += 1
    board.stop()
    assert n > 1000
    # About one write per interval (0.05 s) of the 0.5 s, never one per report.
    assert 1 <= len(writes) <= 0.5 / 0.05 + 3
    assert service.get(task.id).progress == ((n - 1) % 1000) / 1000  # the last one stored
    with pytest.raises(ValueError):
        board.report(task.id, running.attempts, 1.5, None)
    assert Progress(task.id, running.attempts, 0.0, None).task_id == task.id


def test_a_running_python_action_that_checks_cancelled_ends_cancelled(
    qtbot: QtBot, env: tuple[TaskService, Client, Callable[..., WorkerPool]]
) -> None:
    service, client, start = env
    began = threading.Event()

    def patient(data: dict[str, Any], ctx: RunContext) -> Any:
        began.set()
        if ctx.cancelled.wait(WAIT_MS / 1000):
            raise RuntimeError("stopped as asked")
        return "never cancelled"

    service.registry.register(python_action("patient", patient))
    task = service.submit("patient")
    after = service.submit("uppercase", {"text": "next"})
    start()
    assert began.wait(WAIT_MS / 1000)
    asked = client.post(f"/tasks/{task.id}/cancel", headers=JSON)
    assert asked.status == 202 and asked.json()["cancel_requested"] is True
    wait_status(qtbot, service, task.id, TaskStatus.CANCELLED)
    stopped = service.get(task.id)
    assert stopped.result is None and stopped.error is not None
    assert stopped.error.startswith("cancelled while running")
    wait_status(qtbot, service, after.id, TaskStatus.COMPLETED)  # the worker went on


def test_a_python_action_ignoring_cancel_is_given_up_on_after_the_grace(
    qtbot: QtBot, env: tuple[TaskService, Client, Callable[..., WorkerPool]]
) -> None:
    service, client, start = env
    began, release = threading.Event(), threading.Event()

    def stubborn(data: dict[str, Any], ctx: RunContext) -> Any:
        began.set()
        release.wait(WAIT_MS / 1000)  # ignores ctx.cancelled
        return "late"

    service.registry.register(python_action("stubborn", stubborn))
    task = service.submit("stubborn")
    pool = start()
    assert began.wait(WAIT_MS / 1000)
    assert client.post(f"/tasks/{task.id}/cancel", headers=JSON).status == 202
    asked_at = time.monotonic()
    wait_status(qtbot, service, task.id, TaskStatus.CANCELLED)
    assert time.monotonic() - asked_at >= service.kill_grace  # it had its grace
    # Another worker took over: new tasks run while the stubborn action still blocks.
    after = service.submit("uppercase", {"text": "x"})
    wait_status(qtbot, service, after.id, TaskStatus.COMPLETED)
    assert any("did not stop" in p or "stuck" in p for p in pool.problems())
    release.set()  # its late result is dropped
    qtbot.waitUntil(lambda: pool.problems() == [], timeout=WAIT_MS)
    assert service.get(task.id).status == TaskStatus.CANCELLED


# -- command actions ---------------------------------------------------------------------------


# Literal TOML strings ('…'): the shell scripts hold double quotes. {{…}} are placeholders.
ACTIONS_TOML = """
[actions.echo]
argv = ['sh', '-c', 'echo hello "$1"; echo ::progress 40 almost; echo bye', 'sh', '{{name}}']
[actions.echo.schema]
type = "object"
required = ["name"]
properties.name = {{ type = "string" }}

[actions.fail]
argv = ["sh", "-c", "echo about to fail; exit 3"]

[actions.signal]
argv = ["sh", "-c", "kill -9 $$"]

[actions.slow]
argv = ['sh', '-c',
        'sleep 30 & echo $! > "$1/grandchild"; echo $$ > "$1/shell"; wait', 'sh', '{{pids}}']
timeout = {timeout}
[actions.slow.schema]
type = "object"
properties.pids = {{ type = "string" }}
"""


@pytest.fixture
def commands(env: tuple[TaskService, Client, Callable[..., WorkerPool]], tmp_path: Path
             ) -> tuple[TaskService, Client, Callable[..., WorkerPool], Path]:
    service, client, start = env
    path = tmp_path / "actions.toml"
    path.write_text(ACTIONS_TOML.format(timeout=20), encoding="utf-8")
    for action in load_config_file(path, default_timeout=60, kill_grace=1.0).actions:
        service.registry.register(action)
    pids = tmp_path / "pids"
    pids.mkdir()
    return service, client, start, pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")  # this container's init does not reap orphans


def test_commands_complete_fail_and_report_progress(
    qtbot: QtBot, commands: tuple[TaskService, Client, Callable[..., WorkerPool], Path]
) -> None:
    service, client, start, _ = commands
    ok = service.submit("echo", {"name": "a b; rm -rf /"})  # one argument: no shell parses it
    failed = service.submit("fail")
    killed = service.submit("signal")
    start()
    for task, status in ((ok, TaskStatus.COMPLETED), (failed, TaskStatus.FAILED),
                         (killed, TaskStatus.FAILED)):
        wait_status(qtbot, service, task.id, status)
    done = service.get(ok.id)
    assert done.result == {"exit_code": 0,
                           "output": "hello a b; rm -rf /\n::progress 40 almost\nbye\n"}
    assert (done.progress, done.progress_message) == (0.4, "almost")
    log = client.get(f"/tasks/{ok.id}/log").body.decode()
    assert log == "hello a b; rm -rf /\n::progress 40 almost\nbye\n"
    error = service.get(failed.id).error
    assert error is not None and "exit code 3" in error and "about to fail" in error
    signalled = service.get(killed.id).error
    assert signalled is not None and "killed by signal SIGKILL" in signalled


def test_cancelling_a_running_command_ends_its_whole_process_group(
    qtbot: QtBot, commands: tuple[TaskService, Client, Callable[..., WorkerPool], Path]
) -> None:
    service, client, start, pids = commands
    task = service.submit("slow", {"pids": str(pids)})
    start()
    qtbot.waitUntil(lambda: (pids / "grandchild").exists() and (pids / "shell").exists()
                    and (pids / "grandchild").read_text().strip() != "", timeout=WAIT_MS)
    shell = int((pids / "shell").read_text())
    grandchild = int((pids / "grandchild").read_text())
    assert alive(shell) and alive(grandchild)
    assert client.post(f"/tasks/{task.id}/cancel", headers=JSON).status == 202
    wait_status(qtbot, service, task.id, TaskStatus.CANCELLED)
    assert not alive(shell) and not alive(grandchild)


def test_a_command_past_its_timeout_is_stopped_and_its_attempt_failed(
    qtbot: QtBot, env: tuple[TaskService, Client, Callable[..., WorkerPool]], tmp_path: Path
) -> None:
    service, _, start = env
    path = tmp_path / "actions.toml"
    path.write_text(ACTIONS_TOML.format(timeout=0.5), encoding="utf-8")
    for action in load_config_file(path, default_timeout=60, kill_grace=1.0).actions:
        service.registry.register(action)
    pids = tmp_path / "pids"
    pids.mkdir()
    task = service.submit("slow", {"pids": str(pids)})
    start()
    wait_status(qtbot, service, task.id, TaskStatus.FAILED)
    error = service.get(task.id).error
    assert error is not None and "did not finish within 0.5 s" in error
    assert not alive(int((pids / "grandchild").read_text()))


def test_stopping_the_pool_stops_running_commands_and_queues_them_again(
    qtbot: QtBot, commands: tuple[TaskService, Client, Callable[..., WorkerPool], Path]
) -> None:
    service, _, start, pids = commands
    task = service.submit("slow", {"pids": str(pids)})
    pool = start()
    qtbot.waitUntil(lambda: (pids / "shell").exists(), timeout=WAIT_MS)
    shell = int((pids / "shell").read_text())
    assert pool.stop(10)
    assert not alive(shell)
    again = service.get(task.id)
    assert (again.status, again.attempts) == (TaskStatus.QUEUED, 0)  # handed back, not failed


# -- the registry over HTTP, and the token -----------------------------------------------------


def test_get_actions_lists_the_registry(
    env: tuple[TaskService, Client, Callable[..., WorkerPool]]
) -> None:
    service, client, _ = env
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    service.registry.register(python_action("count", lambda d, c: d["n"], schema))
    listed = {a["name"]: a for a in client.get("/actions").json()["actions"]}
    assert set(listed) == {"uppercase", "sum", "count"}
    assert listed["count"] == {"name": "count", "description": "test action count",
                               "kind": "python", "schema": schema}
    assert listed["sum"]["kind"] == "builtin"
    refused = client.post("/tasks", {"action": "count", "data": {"n": 0}})
    assert refused.status == 400 and refused.json()["error"].startswith("data.n:")
    document = client.get("/openapi.json").json()
    conditions = document["components"]["schemas"]["Submission"]["allOf"]
    assert {"if": {"properties": {"action": {"const": "count"}}, "required": ["action"]},
            "then": {"properties": {"data": {"anyOf": [schema, {"type": "null"}]}}}
            } in conditions


def test_unknown_actions_refused_name_the_known_ones(store: SqliteTaskStore) -> None:
    service = TaskService(store, default_registry("refuse"))
    from service.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown action 'nope'; known actions: sum, "
                                              "uppercase"):
        service.submit("nope")


def test_the_kill_9_orphan_is_gone_after_the_next_start(qtbot: QtBot, tmp_path: Path) -> None:
    """Taskdesk killed -9 while a command runs: the command dies with it (or is killed at the
    next start), and the task runs again after the restart."""
    from tests.proc_helpers import TaskdeskProcess, headless

    db = tmp_path / "tasks.db"
    pids = tmp_path / "pids"
    pids.mkdir()
    actions = tmp_path / "actions.toml"
    actions.write_text(ACTIONS_TOML.format(timeout=60), encoding="utf-8")
    args = headless(db, "--actions", str(actions), "--no-plugins")
    first = TaskdeskProcess(args)
    try:
        first.wait_listening()
        token = (tmp_path / "tasks.db.token").read_text().strip()
        reply = first.api(token).post("/tasks", {"action": "slow", "data": {"pids": str(pids)}})
        assert reply.status == 202, reply
        qtbot.waitUntil(lambda: (pids / "grandchild").exists()
                        and (pids / "grandchild").read_text().strip() != "", timeout=WAIT_MS)
        grandchild = int((pids / "grandchild").read_text())
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    qtbot.waitUntil(lambda: not alive(grandchild), timeout=WAIT_MS)
    second = TaskdeskProcess(args)
    try:
        second.wait_listening()
        task = second.api(token).get(f"/tasks/{reply.body['id']}").body
        assert task["status"] in ("queued", "running") and task["attempts"] >= 1
    finally:
        second.kill()
